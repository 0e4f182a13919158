//! Helpers shared by the CLI test files.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

/// The CLI bound to a fresh database (and the model directory beside it) in `dir`, whatever
/// the environment says.
pub fn forexgpt(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("forexgpt").unwrap();
    cmd.arg("--db")
        .arg(dir.join("store.sqlite"))
        .env_remove("FOREXGPT_DB")
        .env_remove("FOREXGPT_MODELS_DIR");
    cmd
}

/// Runs `cmd`, which must succeed, and returns its standard output.
#[allow(dead_code)] // not every test file reads plain output
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd --json`, which must succeed, and parses its output.
pub fn json(cmd: &mut Command) -> Value {
    let out = cmd.arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
