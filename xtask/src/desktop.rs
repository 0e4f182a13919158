//! The desktop app's build steps: the leptos frontend to WebAssembly (cargo + wasm-bindgen),
//! the Tauri shell in release, the GUI end-to-end tests under Xvfb through tauri-driver, and
//! the `.deb` bundle. Tools that cargo installs go to `~/.cache/forexgpt/tools` (outside the
//! clone, so CI reuses them), pinned to the versions the lock file needs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, output_of, run};

/// Must equal the `wasm-bindgen` version in Cargo.lock (the frontend pins it).
const WASM_BINDGEN_VERSION: &str = "0.2.130";
const TAURI_DRIVER_VERSION: &str = "2.1.0";
const TAURI_CLI_VERSION: &str = "2.12.4";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

pub fn workspace_root() -> PathBuf {
    // Cargo's value when it runs xtask first: a binary reused from a build in another
    // checkout (a shared target cache) must not read that checkout's files.
    Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .parent()
    .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

fn tools_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FOREXGPT_TOOLS_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/forexgpt/tools"))
}

/// The path of `bin` from crate `krate` at `version`, installed with cargo when missing or
/// of another version.
fn tool(bin: &str, krate: &str, version: &str, locked: bool) -> Result<PathBuf> {
    let root = tools_dir()?;
    let path = root
        .join("bin")
        .join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    // `cargo install --list` names what is installed as `crate vX.Y.Z:` (tauri-driver has no
    // `--version` to ask).
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root_arg = root.to_string_lossy();
    let listed = output_of(&cargo_bin, &["install", "--list", "--root", &root_arg]);
    let installed = listed.is_some_and(|l| l.contains(&format!("{krate} v{version}:")));
    if !installed || !path.exists() {
        let mut install = cargo();
        install
            .args(["install", "--force", "--root"])
            .arg(&root)
            .args([krate, "--version", &format!("={version}")]);
        // xtask runs the tool by its path; with its folder on PATH cargo does not ask the user
        // to add it there.
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![root.join("bin")];
        dirs.extend(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(dirs) {
            install.env("PATH", joined);
        }
        // wasm-bindgen-cli's lock file names a crate version the registry no longer has.
        if locked {
            install.arg("--locked");
        }
        run(install)?;
    }
    Ok(path)
}

/// Installs the standard library of `target` with rustup unless it is there.
pub fn ensure_target(target: &str) -> Result<()> {
    let installed = output_of("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if !installed.lines().any(|l| l.trim() == target) {
        let mut add = Command::new("rustup");
        add.args(["target", "add", target]);
        run(add)?;
    }
    Ok(())
}

/// Builds `frontend/dist`: the wasm module, its JS glue, and the static files.
pub fn frontend() -> Result<()> {
    ensure_target(WASM_TARGET)?;
    let wasm_bindgen = tool(
        "wasm-bindgen",
        "wasm-bindgen-cli",
        WASM_BINDGEN_VERSION,
        false,
    )?;
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "forexgpt-frontend",
        "--target",
        WASM_TARGET,
    ]);
    run(build)?;
    let root = workspace_root();
    let dist = root.join("frontend/dist");
    // Built in a staging folder, then synced: files whose bytes did not change keep their
    // times, so the app (which embeds `dist`) is not rebuilt for nothing.
    let staging = target_dir().join("frontend-dist");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("clearing {}", staging.display()))?;
    }
    std::fs::create_dir_all(&staging)?;
    let wasm = target_dir()
        .join(WASM_TARGET)
        .join("release/forexgpt-frontend.wasm");
    let mut bindgen = Command::new(wasm_bindgen);
    bindgen
        .args(["--target", "web", "--no-typescript"])
        .args(["--out-name", "forexgpt_frontend", "--out-dir"])
        .arg(&staging)
        .arg(&wasm);
    run(bindgen)?;
    for entry in std::fs::read_dir(root.join("frontend/static"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), staging.join(entry.file_name()))
            .with_context(|| format!("copying {}", entry.path().display()))?;
    }
    sync_dir(&staging, &dist)?;
    eprintln!("xtask: frontend built into {}", dist.display());
    Ok(())
}

/// Makes `dist` hold exactly the files of `from`, rewriting only those whose bytes differ.
fn sync_dir(from: &Path, dist: &Path) -> Result<()> {
    std::fs::create_dir_all(dist)?;
    for entry in std::fs::read_dir(dist)? {
        let entry = entry?;
        if !from.join(entry.file_name()).exists() {
            let path = entry.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
    }
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = dist.join(entry.file_name());
        let bytes = std::fs::read(entry.path())?;
        if std::fs::read(&target).ok().as_deref() != Some(bytes.as_slice()) {
            std::fs::write(&target, bytes)
                .with_context(|| format!("writing {}", target.display()))?;
        }
    }
    Ok(())
}

/// Builds the frontend and the release app; returns the app's binary.
pub fn build_app() -> Result<PathBuf> {
    frontend()?;
    let mut build = cargo();
    build.args(["build", "--release", "--locked", "-p", "forexgpt-app"]);
    run(build)?;
    Ok(target_dir().join(format!(
        "release/forexgpt-workbench{}",
        std::env::consts::EXE_SUFFIX
    )))
}

pub fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()))
}

/// Builds and starts the app; returns when its window is closed or the app is stopped by a
/// signal (Ctrl-C, `kill`), which is a normal way to stop it, not an error.
pub fn app() -> Result<()> {
    let binary = build_app()?;
    eprintln!("xtask: starting {}", binary.display());
    let status = Command::new(&binary)
        .status()
        .with_context(|| format!("starting {}", binary.display()))?;
    if status.success() {
        return Ok(());
    }
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        eprintln!("xtask: the app was stopped by signal {signal}");
        return Ok(());
    }
    bail!("{} exited with {status}", binary.display())
}

/// The `gui` test executable that `cargo test --workspace` built (asked of cargo with the same
/// selection, so it is the same build: another selection would resolve other features and
/// compile everything again).
pub(crate) fn gui_test_executable() -> Result<PathBuf> {
    // The test build's features: another set would rebuild the app without them.
    let out = cargo()
        .args([
            "test",
            "--workspace",
            "--locked",
            "--no-run",
            "--message-format=json",
            "--features",
            crate::TEST_FEATURES,
        ])
        .env("CUDARC_CUDA_VERSION", crate::CUDARC_CUDA_VERSION)
        .output()
        .context("asking cargo for the test executables")?;
    if !out.status.success() {
        bail!(
            "cargo test --no-run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // One JSON message per line; the gui test's artifact names its target and executable.
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
        .filter(|l| l.contains(r#""kind":["test"]"#) && l.contains(r#""name":"gui""#))
        .find_map(|l| {
            let start = l.find(r#""executable":""#)? + r#""executable":""#.len();
            let end = start + l[start..].find('"')?;
            Some(PathBuf::from(&l[start..end]))
        })
        .context("cargo built no `gui` test executable")
}

/// tauri-driver, the WebDriver server of the GUI tests (installed with cargo when missing).
pub(crate) fn tauri_driver() -> Result<PathBuf> {
    tool("tauri-driver", "tauri-driver", TAURI_DRIVER_VERSION, true)
}

/// The GUI end-to-end tests: the app under Xvfb, driven by tauri-driver and WebKitWebDriver.
/// They run the test executable and drive the app binary that `cargo test --workspace` built
/// (the dev profile, which optimises dependencies), so nothing is compiled again.
pub fn gui_tests() -> Result<()> {
    if !cfg!(target_os = "linux") {
        eprintln!("xtask: the GUI end-to-end tests run on Linux only (Xvfb + WebKitWebDriver)");
        return Ok(());
    }
    let driver = tauri_driver()?;
    if output_of("which", &["WebKitWebDriver"]).is_none() {
        bail!("WebKitWebDriver is missing (Debian package webkit2gtk-driver; `cargo xtask setup`)");
    }
    let screenshots = target_dir().join("gui-screenshots");
    let executable = gui_test_executable()?;
    let mut test = Command::new("xvfb-run");
    test.args(["-a", "-s", "-screen 0 1280x800x24"])
        .arg(&executable)
        .args(["--ignored", "--nocapture"])
        .current_dir(workspace_root().join("src-tauri"))
        .env("TAURI_DRIVER", &driver)
        .env("FOREXGPT_SCREENSHOTS", &screenshots);
    run(test)?;
    eprintln!("xtask: GUI screenshots in {}", screenshots.display());
    Ok(())
}

/// `cargo tauri build`: the installable package of this platform (`.deb` on Linux, `.dmg` on
/// macOS, `.msi` on Windows) or the formats given, e.g. `--bundles deb`, built in the `dist`
/// profile (fat LTO, one codegen unit: a smaller binary, as fast as `release`). Extra arguments
/// go to `cargo tauri build`, those after `--` to cargo (`-- --profile release` for the faster
/// build of the everyday profile).
pub fn bundle(rest: &[String]) -> Result<()> {
    frontend()?;
    let tauri = tool("cargo-tauri", "tauri-cli", TAURI_CLI_VERSION, true)?;
    let (args, profile) = bundle_args(rest, native_bundle());
    let mut build = Command::new(tauri);
    build
        .arg("build")
        .args(&args)
        .current_dir(workspace_root().join("src-tauri"));
    run(build)?;
    eprintln!(
        "xtask: bundles in {}",
        target_dir().join(profile).join("bundle").display()
    );
    Ok(())
}

fn native_bundle() -> &'static str {
    if cfg!(target_os = "macos") {
        "dmg"
    } else if cfg!(target_os = "windows") {
        "msi"
    } else {
        "deb"
    }
}

/// The arguments of `cargo tauri build` for `cargo xtask bundle REST`, and the profile that
/// builds it (the folder of `target/` the bundles land in).
fn bundle_args(rest: &[String], native: &str) -> (Vec<String>, String) {
    let split = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    let (tauri_args, cargo_args) = (&rest[..split], rest.get(split + 1..).unwrap_or_default());
    let mut args: Vec<String> = tauri_args.to_vec();
    if !tauri_args.iter().any(|a| a == "--bundles" || a == "-b") {
        args.extend(["--bundles".into(), native.into()]);
    }
    // The installed app carries CUDA (loaded at run time: machines without NVIDIA still run,
    // and the Devices tab fetches NVRTC and the headers where a driver exists). No toolkit is
    // needed to build it (.cargo/config.toml tells cudarc the CUDA API version).
    if !tauri_args.iter().any(|a| a == "--features" || a == "-f") {
        args.extend(["--features".into(), "cuda".into()]);
    }
    let debug = tauri_args.iter().any(|a| a == "--debug" || a == "-d");
    let named = cargo_args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--profile=").map(str::to_owned).or_else(|| {
            (a == "--profile")
                .then(|| cargo_args.get(i + 1).cloned())
                .flatten()
        })
    });
    args.push("--".into());
    args.extend(cargo_args.iter().cloned());
    let profile = match (named, debug) {
        (Some(p), _) => p,
        (None, true) => "debug".into(),
        (None, false) => {
            args.extend(["--profile".into(), "dist".into()]);
            "dist".into()
        }
    };
    (args, profile)
}

#[cfg(test)]
mod tests {
    use super::bundle_args;

    fn args(rest: &[&str]) -> (String, String) {
        let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
        let (a, p) = bundle_args(&rest, "deb");
        (a.join(" "), p)
    }

    #[test]
    fn bundles_are_built_in_the_dist_profile_with_cuda() {
        assert_eq!(
            args(&[]),
            (
                "--bundles deb --features cuda -- --profile dist".into(),
                "dist".into()
            )
        );
    }

    #[test]
    fn the_callers_choices_stand() {
        assert_eq!(
            args(&["--bundles", "appimage", "--features", "wgpu"]),
            (
                "--bundles appimage --features wgpu -- --profile dist".into(),
                "dist".into()
            )
        );
        assert_eq!(
            args(&["--", "--profile", "release"]),
            (
                "--bundles deb --features cuda -- --profile release".into(),
                "release".into()
            )
        );
        assert_eq!(
            args(&["-v", "--", "--profile=release", "--locked"]).1,
            "release"
        );
        assert_eq!(
            args(&["--debug"]),
            (
                "--debug --bundles deb --features cuda --".into(),
                "debug".into()
            )
        );
    }
}
