//! The `forexgpt` binary on real-world CSV layouts, bad files, the sample data and `--json`.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use common::{forexgpt, json, stdout_of};

use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    // Cargo's value when it runs the test first: a binary reused from a build in another
    // checkout (a shared target cache) must not read that checkout's files.
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../tests/fixtures/csv")
    .join(name)
}

fn stored_symbols(dir: &Path) -> Vec<String> {
    let list = json(forexgpt(dir).arg("data"));
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["symbol"].as_str().unwrap(),
                s["timeframe"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn every_real_world_layout_imports_the_same_bars() {
    let layouts = [
        ("pandas_to_csv.csv", "generic"),
        ("mt4_history_center.csv", "metatrader"),
        ("mt5_export.csv", "metatrader"),
        ("histdata_ascii.csv", "histdata"),
        ("dukascopy.csv", "dukascopy"),
        ("generic_epoch_ms.csv", "generic"),
    ];
    let mut last_bars = Vec::new();
    for (file, format) in layouts {
        let dir = tempfile::tempdir().unwrap();
        let report = json(
            forexgpt(dir.path())
                .args(["import", "--symbol", "eurusd-x", "--timeframe", "H1"])
                .arg(fixture(file)),
        );
        assert_eq!(report["format"], format, "{file}");
        assert_eq!(report["inserted"], 150, "{file}");
        assert_eq!(report["symbol"], "EURUSD-X");
        assert_eq!(
            report["first_ts"], 1_483_308_000,
            "{file}: 2017-01-01 22:00 UTC"
        );
        // One weekend inside the file, reported as normal.
        assert_eq!(report["gaps"]["weekend_gaps"], 1, "{file}");
        assert_eq!(report["gaps"]["session_hole_count"], 0, "{file}");
        let shown = json(forexgpt(dir.path()).args(["data", "show", "--symbol", "EURUSD-X"]));
        assert_eq!(shown["series"]["bars"], 150, "{file}");
        last_bars.push(report["last_ts"].as_i64().unwrap());
    }
    assert!(
        last_bars.windows(2).all(|w| w[0] == w[1]),
        "all layouts end at the same bar"
    );
}

#[test]
fn reimporting_the_same_file_changes_nothing_and_a_conflict_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture("mt5_export.csv");
    let first = json(
        forexgpt(dir.path())
            .args(["import", "--symbol", "GBPUSD", "--timeframe", "1h"])
            .arg(&file),
    );
    assert_eq!(
        (first["inserted"].as_u64(), first["unchanged"].as_u64()),
        (Some(150), Some(0))
    );
    let again = json(
        forexgpt(dir.path())
            .args(["import", "--symbol", "GBPUSD", "--timeframe", "1h"])
            .arg(&file),
    );
    assert_eq!(
        (again["inserted"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(150))
    );

    let changed = dir.path().join("changed.csv");
    let text = std::fs::read_to_string(fixture("pandas_to_csv.csv")).unwrap();
    std::fs::write(&changed, text.replace("1.05227,143.54", "1.05228,143.54")).unwrap();
    forexgpt(dir.path())
        .args(["import", "--symbol", "GBPUSD", "--timeframe", "1h"])
        .arg(&changed)
        .assert()
        .failure()
        .stderr(predicates::str::contains("stored with different values"));
    let shown = json(forexgpt(dir.path()).args(["data", "show", "--symbol", "GBPUSD"]));
    assert_eq!(shown["series"]["bars"], 150);
}

#[test]
fn the_users_own_eurusd_file_replaces_the_sample_on_first_import() {
    // A fresh database holds the sample as EURUSD 1h. The user's hourly EURUSD file is their
    // data: it is imported without --replace, and the output says the sample made way.
    let dir = tempfile::tempdir().unwrap();
    let file = fixture("mt5_export.csv");
    let stdout = stdout_of(
        forexgpt(dir.path())
            .args(["import", "--symbol", "EURUSD", "--timeframe", "1h"])
            .arg(&file),
    );
    assert!(
        stdout.contains("EURUSD 1h held only the built-in sample; your file replaced it"),
        "{stdout}"
    );
    let shown = json(forexgpt(dir.path()).args(["data", "show", "--symbol", "EURUSD"]));
    assert_eq!(shown["series"]["bars"], 150);
    assert!(
        shown["series"]["source"]
            .as_str()
            .unwrap()
            .ends_with("mt5_export.csv"),
        "{shown}"
    );
    // From then on the series is the user's, protected as any other.
    let changed = dir.path().join("changed.csv");
    let text = std::fs::read_to_string(fixture("pandas_to_csv.csv")).unwrap();
    std::fs::write(&changed, text.replace("1.05227,143.54", "1.05228,143.54")).unwrap();
    let refused = forexgpt(dir.path())
        .args([
            "import",
            "--json",
            "--symbol",
            "EURUSD",
            "--timeframe",
            "1h",
        ])
        .arg(&changed)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let reply: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("stored with different values"),
        "{reply}"
    );
}

/// Writes the pandas fixture with line `line` (1-based, header = 1) replaced.
fn with_bad_line(dir: &Path, name: &str, source: &str, line: usize, replacement: &str) -> PathBuf {
    let text = std::fs::read_to_string(fixture(source)).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[line - 1] = replacement;
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn bad_files_name_file_line_and_field_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Line 40 of the pandas file is 2017-01-03 12:00; line 39 is 11:00.
    let cases = [
        (
            "parse.csv",
            "2017-01-03 12:00:00,1.0x,1.05,1.04,1.045,1",
            "field open",
            "'1.0x' is not a number",
        ),
        (
            "nan.csv",
            "2017-01-03 12:00:00,1.04,1.05,1.03,NaN,1",
            "field close",
            "not a finite number",
        ),
        (
            "inf.csv",
            "2017-01-03 12:00:00,1.04,inf,1.03,1.045,1",
            "field high",
            "not a finite number",
        ),
        (
            "negative.csv",
            "2017-01-03 12:00:00,1.04,1.05,-1.03,1.045,1",
            "field low",
            "must be positive",
        ),
        (
            "high.csv",
            "2017-01-03 12:00:00,1.04,1.044,1.03,1.045,1",
            "field high",
            "below max(open, close)",
        ),
        (
            "low.csv",
            "2017-01-03 12:00:00,1.04,1.05,1.042,1.045,1",
            "field low",
            "above min(open, close)",
        ),
        (
            "duplicate.csv",
            "2017-01-03 11:00:00,1.04,1.05,1.03,1.045,1",
            "field time",
            "duplicates line 39",
        ),
        (
            "backwards.csv",
            "2017-01-03 10:00:00,1.04,1.05,1.03,1.045,1",
            "field time",
            "earlier than line 39",
        ),
        (
            "time.csv",
            "2017-01-33 13:00:00,1.04,1.05,1.03,1.045,1",
            "field time",
            "not a recognised timestamp",
        ),
        (
            "short.csv",
            "2017-01-03 12:00:00,1.04,1.05",
            "field row",
            "3 field(s) separated by ',' where line 1 has 6",
        ),
    ];
    for (name, bad, field, message) in cases {
        let path = with_bad_line(dir.path(), name, "pandas_to_csv.csv", 40, bad);
        let out = forexgpt(dir.path())
            .args(["import", "--symbol", "BAD", "--timeframe", "1h"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(name), "{name}: file not named: {stderr}");
        assert!(
            stderr.contains(&format!("line 40, {field}")),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(message), "{name}: {stderr}");
        assert!(stderr.contains("nothing was imported"), "{name}: {stderr}");
    }
    // Platform layouts: a bad MetaTrader 5 row (tab-separated) and a bad HistData row.
    let mt5 = with_bad_line(
        dir.path(),
        "mt5_bad.csv",
        "mt5_export.csv",
        10,
        "2017.01.02\t06:00:00\t1.04\t1.05\t1.045\t1.046\t10\t0\t8",
    );
    forexgpt(dir.path())
        .args(["import", "--symbol", "BAD", "--timeframe", "1h"])
        .arg(&mt5)
        .assert()
        .failure()
        .stderr(predicates::str::contains("line 10, field low"));
    let hd = with_bad_line(
        dir.path(),
        "hd_bad.csv",
        "histdata_ascii.csv",
        7,
        "20170102 040000;1.05;1.06;1.04;0;0",
    );
    forexgpt(dir.path())
        .args(["import", "--symbol", "BAD", "--timeframe", "1h"])
        .arg(&hd)
        .assert()
        .failure()
        .stderr(predicates::str::contains("line 7, field close"));
    // Wrong timeframe for the file's spacing.
    forexgpt(dir.path())
        .args(["import", "--symbol", "BAD", "--timeframe", "4h"])
        .arg(fixture("dukascopy.csv"))
        .assert()
        .failure()
        .stderr(predicates::str::contains("is --timeframe right?"));
    assert_eq!(
        stored_symbols(dir.path()),
        vec!["EURUSD 1h"],
        "nothing but the sample was stored"
    );
}

#[test]
fn json_errors_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let out = forexgpt(dir.path())
        .args([
            "--json",
            "import",
            "--symbol",
            "X",
            "--timeframe",
            "1h",
            "/no/such/file.csv",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["error"].as_str().unwrap().contains("/no/such/file.csv"));
    forexgpt(dir.path())
        .args(["import", "--symbol", "X", "--timeframe", "2h", "/x.csv"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("unknown timeframe '2h'"));
}

#[test]
fn features_and_resampling_on_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let summary = json(forexgpt(dir.path()).arg("features"));
    assert_eq!(summary["bars"], 6225);
    assert_eq!(summary["columns"].as_array().unwrap().len(), 88);
    assert_eq!(summary["horizons"], serde_json::json!([1, 4, 12, 24]));
    let h4 = json(forexgpt(dir.path()).args([
        "features",
        "--timeframe",
        "4h",
        "--horizons",
        "1,6",
        "--window",
        "8",
    ]));
    assert_eq!(h4["columns"].as_array().unwrap().len(), 88 - 8 * 4);
    assert_eq!(h4["horizons"], serde_json::json!([1, 6]));
    // The matrix goes to a file for pandas: CSV and Parquet by the name, the same columns.
    for name in ["f.csv", "f.parquet"] {
        let path = dir.path().join(name);
        let written = json(
            forexgpt(dir.path())
                .args([
                    "features",
                    "--timeframe",
                    "4h",
                    "--horizons",
                    "1,6",
                    "--export",
                ])
                .arg(&path),
        );
        assert_eq!(written["rows"], h4["rows"], "{written}");
        let columns = written["columns"].as_array().unwrap();
        // time and close, the 88 default features, two targets, the split label.
        assert_eq!(columns.len(), 2 + 88 + 2 + 1, "{written}");
        assert_eq!(columns.last().unwrap(), "split");
        assert!(path.is_file());
    }
    let csv = std::fs::read_to_string(dir.path().join("f.csv")).unwrap();
    assert!(
        csv.starts_with("time,close,ln_open_lag0,"),
        "{}",
        &csv[..80]
    );
    assert_eq!(
        &std::fs::read(dir.path().join("f.parquet")).unwrap()[..4],
        b"PAR1"
    );
    forexgpt(dir.path())
        .args(["features", "--export", "f.xlsx"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("name it .csv or .parquet"));
    let report = json(forexgpt(dir.path()).args(["data", "resample", "--to", "1d"]));
    assert_eq!(report["inserted"], 312);
    assert_eq!(stored_symbols(dir.path()), vec!["EURUSD 1h", "EURUSD 1d"]);
    // The stored daily series trains: no hour columns on daily bars, nothing constant.
    let trained = json(forexgpt(dir.path()).args([
        "train",
        "--timeframe",
        "1d",
        "--regressor",
        "ridge,lasso",
        "--device",
        "cpu",
    ]));
    for m in trained["models"].as_array().unwrap() {
        assert_eq!(m["info"]["features"]["hour_of_day"], false, "{m}");
        assert!(m["info"].get("dropped_columns").is_none(), "{m}");
    }
    forexgpt(dir.path())
        .args(["data", "delete", "--timeframe", "1d"])
        .assert()
        .success();
    forexgpt(dir.path())
        .args(["data", "delete", "--timeframe", "1d"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("no 1d series of EURUSD"));
    forexgpt(dir.path())
        .args(["features", "--symbol", "USDJPY"])
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "no 1h bars of USDJPY are stored (stored: EURUSD 1h)",
        ));
}

#[test]
fn human_output_lists_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    forexgpt(dir.path())
        .args(["data", "--gaps"])
        .assert()
        .success()
        .stdout(predicates::str::contains("EURUSD"))
        .stdout(predicates::str::contains(
            "51 weekend, 1 holiday, 0 in-session",
        ));
}

#[test]
fn devices_reports_the_cpu_and_what_auto_picks() {
    let dir = tempfile::tempdir().unwrap();
    // Outside a desktop session (no XDG_RUNTIME_DIR, as over SSH or in CI) probing prints
    // nothing of the Vulkan drivers' own on stderr.
    let headless = forexgpt(dir.path())
        .arg("devices")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .output()
        .unwrap();
    assert!(headless.status.success(), "{headless:?}");
    let stderr = String::from_utf8_lossy(&headless.stderr);
    assert!(
        !stderr.contains("XDG_RUNTIME_DIR"),
        "stray driver output: {stderr}"
    );
    let info = json(forexgpt(dir.path()).arg("devices"));
    assert!(info["cpu_threads"].as_u64().unwrap() >= 1);
    assert!(info["cpu"]["model"].is_string());
    let auto = info["auto"]["backend"].as_str().unwrap();
    assert!(["cpu", "wgpu", "cuda"].contains(&auto));
    if info["cuda_available"] == false {
        assert!(
            info["cuda"]["reason"].as_str().unwrap().len() > 10,
            "a reason is given"
        );
    }
    if auto == "cpu" {
        assert!(
            info["auto"]["notice"]
                .as_str()
                .unwrap()
                .contains("no usable GPU")
        );
    }
    // The self-check runs on every usable device and agrees with the float64 reference.
    let checked = json(
        forexgpt(dir.path())
            .args(["devices", "--check"])
            .env("FOREXGPT_CACHE_DIR", dir.path().join("cache")),
    );
    let checks = checked["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    assert!(checks.iter().all(|c| c["passed"] == true), "{checks:?}");
}

/// `devices --fetch-cuda` refuses what it cannot fetch before any download, by name; the
/// download itself is tested against a local stand-in for PyPI (engine tests, cuda_fetch).
#[test]
fn fetching_the_cuda_runtime_refuses_unknown_and_unsupported_versions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (version, expect) in [
        (Some("12.4"), "CUDA 12.4 is not supported"),
        (Some("thirteen"), "'thirteen' is not MAJOR.MINOR"),
        // This machine's driver decides when no version is named; without one, that is said.
        (None, ""),
    ] {
        let mut cmd = forexgpt(dir.path());
        cmd.args(["devices", "--fetch-cuda"])
            .env("XDG_DATA_HOME", &data)
            .env("HOME", dir.path());
        if let Some(v) = version {
            cmd.args(["--cuda-version", v]);
        }
        let info = json(forexgpt(dir.path()).arg("devices"));
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if version.is_none() && info["cuda"]["driver_version"].is_string() {
            // A machine with an NVIDIA driver would download for real: not here.
            continue;
        }
        assert!(!out.status.success(), "{version:?}: {stderr}");
        let expect = if version.is_none() {
            "the NVIDIA driver's CUDA version is unknown"
        } else {
            expect
        };
        assert!(stderr.contains(expect), "{version:?}: {stderr}");
        assert!(
            !data.join("forexgpt").exists(),
            "nothing was created: {version:?}"
        );
    }
    // The version flag belongs to the fetch.
    let out = forexgpt(dir.path())
        .args(["devices", "--cuda-version", "13.0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn argument_errors_are_json_with_json() {
    let dir = tempfile::tempdir().unwrap();
    for (args, names) in [
        (&["--json", "train", "--bogus"][..], "--bogus"),
        (&["data", "show", "--timeframe", "7x", "--json"][..], "7x"),
        (&["--json", "train", "--regressor", "tree"][..], "tree"),
    ] {
        let out = forexgpt(dir.path()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let reply: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out:?}"));
        let error = reply["error"].as_str().unwrap();
        assert!(error.contains(names), "{args:?}: {error}");
        assert_eq!(reply["kind"], "usage");
    }
    // Without --json, clap's own text on stderr.
    forexgpt(dir.path())
        .args(["train", "--bogus"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicates::str::contains("--bogus"));
}
