//! Faults a desktop user meets, on the real CLI binary:
//! - a process killed (SIGKILL) at points spread over an import, a training grid's saves and
//!   a benchmark run: the database opens afterwards, holds all or nothing of the interrupted
//!   write, and no model file is partial;
//! - four processes importing, training, benchmarking and reading one database at once: no
//!   "database is locked", no lost rows;
//! - a full disk (a size-limited tmpfs) while saving models or importing: a clear error and
//!   nothing half-written.
//!
//! The figures these print (kill points, operations, faults) are the ones in
//! `docs/reliability.md`. Linux only: SIGKILL and tmpfs.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A 12-model training grid on the sample (the killed and the full-disk saves).
const GRID: [&str; 9] = [
    "train",
    "--encoder",
    "none,pca",
    "--regressor",
    "ridge,lasso,elasticnet",
    "--alpha",
    "1,10",
    "--device",
    "cpu",
];
/// The shortest benchmark run that is stored (the killed run and the concurrent one).
const BENCH: [&str; 7] = [
    "bench",
    "--suite",
    "data",
    "--size",
    "small",
    "--repeats",
    "1",
];

/// The CLI binary on the database `db`, nothing inherited that could point elsewhere.
fn cli(db: &Path) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("forexgpt"));
    cmd.arg("--db")
        .arg(db)
        .env_remove("FOREXGPT_DB")
        .env_remove("FOREXGPT_MODELS_DIR")
        .stdin(Stdio::null());
    cmd
}

fn run_json(cmd: &mut Command) -> Value {
    let out = cmd.arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Hourly bars of a random walk in the generic layout, `n` rows from 2018-01-01.
fn write_csv(path: &Path, n: usize, seed: u64) {
    let mut text = String::from("time,open,high,low,close,volume\n");
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut close = 1.2_f64;
    for i in 0..n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let step = (state % 201) as f64 / 100.0 - 1.0;
        let open = close;
        close = (close * (1.0 + step * 1e-3)).max(0.5);
        let ts = 1_514_764_800 + i as i64 * 3600;
        text.push_str(&format!(
            "{ts},{open:.5},{:.5},{:.5},{close:.5},1\n",
            open.max(close) + 1e-4,
            open.min(close) - 1e-4
        ));
    }
    std::fs::write(path, text).unwrap();
}

/// Runs `cmd` to the end and returns how long it took.
fn time_of(cmd: &mut Command) -> Duration {
    let started = Instant::now();
    let out = cmd.stdout(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// Starts `cmd` and kills it with SIGKILL after `after`; whether it had finished by then.
fn kill_after(mut cmd: Command, after: Duration) -> bool {
    let mut child: Child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
    finished
}

/// `n` kill points spread from `from` to `to` (shares of a run of `full`).
fn kill_points(full: Duration, n: u32, from: f64, to: f64) -> Vec<Duration> {
    (0..n)
        .map(|i| full.mul_f64(from + (to - from) * f64::from(i) / f64::from(n.max(2) - 1)))
        .collect()
}

/// Bars of `symbol` 1h in the database, or 0 when it has no such series.
fn stored_bars(db: &Path, symbol: &str) -> u64 {
    let listed = run_json(cli(db).arg("data"));
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["symbol"] == symbol)
        .map_or(0, |s| s["bars"].as_u64().unwrap())
}

/// Every model file in `dir` loads in full, and none but model files are visible by name.
fn models_are_whole(db: &Path, dir: &Path) -> usize {
    let listed = run_json(cli(db).arg("models"));
    assert_eq!(listed["unreadable"], serde_json::json!([]), "{listed}");
    let models = listed["models"].as_array().unwrap();
    for m in models {
        let id = m["info"]["id"].as_str().unwrap();
        run_json(cli(db).args(["models", "show", id]));
    }
    let files = std::fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "fxm"))
            .count()
    });
    assert_eq!(files, models.len());
    models.len()
}

#[test]
fn a_killed_import_leaves_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("big.csv");
    let rows = 120_000;
    write_csv(&csv, rows, 1);
    let import = |db: &Path| {
        let mut cmd = cli(db);
        cmd.arg("import")
            .arg(&csv)
            .args(["--symbol", "BIGUSD", "--timeframe", "1h"]);
        cmd
    };
    let full = time_of(&mut import(&dir.path().join("timing.sqlite")));
    let mut outcomes = (0, 0);
    for (i, at) in kill_points(full, 8, 0.1, 0.95).into_iter().enumerate() {
        let db = dir.path().join(format!("kill{i}.sqlite"));
        // The database exists (with the sample) before the import is started and killed.
        run_json(cli(&db).arg("data"));
        kill_after(import(&db), at);
        let bars = stored_bars(&db, "BIGUSD");
        assert!(
            bars == 0 || bars == rows as u64,
            "kill at {at:?}: {bars} bars stored"
        );
        assert_eq!(stored_bars(&db, "EURUSD"), 6225, "the sample survives");
        if bars == 0 {
            outcomes.0 += 1
        } else {
            outcomes.1 += 1
        }
    }
    eprintln!(
        "import of {rows} rows ({full:?}) killed at 8 points: {} kept nothing, {} kept all",
        outcomes.0, outcomes.1
    );
}

#[test]
fn a_killed_training_grid_leaves_only_whole_model_files() {
    let dir = tempfile::tempdir().unwrap();
    let train = |db: &Path| {
        let mut cmd = cli(db);
        cmd.args(GRID);
        cmd
    };
    let full = time_of(&mut train(&dir.path().join("timing.sqlite")));
    let (mut none, mut all, mut some) = (0, 0, 0);
    // The saves come last: most kill points fall into the end of the run.
    let points = kill_points(full, 4, 0.2, 0.8)
        .into_iter()
        .chain(kill_points(full, 12, 0.85, 1.1));
    for (i, at) in points.enumerate() {
        let db = dir.path().join(format!("kill{i}.sqlite"));
        kill_after(train(&db), at);
        let n = models_are_whole(&db, &dir.path().join(format!("kill{i}.models")));
        match n {
            0 => none += 1,
            12 => all += 1,
            _ => some += 1,
        }
    }
    eprintln!(
        "a 12-model grid ({full:?}) killed at 16 points: {none} kept none, {all} all, {some} part \
         (every file whole)"
    );
}

#[test]
fn a_killed_benchmark_keeps_no_half_run() {
    let dir = tempfile::tempdir().unwrap();
    let bench = |db: &Path| {
        let mut cmd = cli(db);
        cmd.args(BENCH);
        cmd
    };
    let timing_db = dir.path().join("timing.sqlite");
    let full = time_of(&mut bench(&timing_db));
    let complete = run_json(cli(&timing_db).args(["bench", "list"]));
    let results = complete[0]["results"].as_array().unwrap().len();
    for (i, at) in kill_points(full, 6, 0.3, 1.05).into_iter().enumerate() {
        let db = dir.path().join(format!("kill{i}.sqlite"));
        kill_after(bench(&db), at);
        let runs = run_json(cli(&db).args(["bench", "list"]));
        for run in runs.as_array().unwrap() {
            assert_eq!(run["results"].as_array().unwrap().len(), results, "{run}");
        }
    }
    eprintln!("a data benchmark ({full:?}) killed at 6 points: no run stored in part");
}

/// Runs `script` in a private mount namespace with `dir` as a tmpfs of `size`; `None` when
/// this machine cannot do that (the test then says so).
fn in_small_tmpfs(dir: &Path, size: &str, script: &str) -> Option<Output> {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size={size} tmpfs '{}' || exit 97; {script}",
            dir.display()
        ))
        .output()
        .ok()?;
    (out.status.code() != Some(97)).then_some(out)
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("forexgpt");
    let db = dir.path().join("store.sqlite");
    run_json(cli(&db).arg("data"));
    // Models: a 64 KiB disk holds one linear model file, not a grid of twelve.
    let small = dir.path().join("small");
    let script = format!(
        "'{bin}' --db '{db}' --models-dir '{small}' {grid}; echo \"rc=$?\"; ls -A '{small}'",
        grid = GRID.join(" "),
        bin = bin.display(),
        db = db.display(),
        small = small.display(),
    );
    let Some(out) = in_small_tmpfs(&small, "64k", &script) else {
        eprintln!("SKIPPED: cannot mount a size-limited tmpfs here (unshare -rm)");
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("rc=1"), "{stdout}{stderr}");
    assert!(
        stderr.contains("No space left on device") && stderr.contains("cannot write"),
        "{stderr}"
    );
    let listing: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("rc="))
        .skip(1)
        .collect();
    assert!(listing.is_empty(), "left on the full disk: {listing:?}");

    // Import: the database itself on a disk too small for the file.
    let csv = dir.path().join("big.csv");
    write_csv(&csv, 60_000, 2);
    let tiny = dir.path().join("tiny");
    let tiny_db: PathBuf = tiny.join("store.sqlite");
    let script = format!(
        "'{bin}' --db '{db}' data >/dev/null || exit 96; \
         '{bin}' --db '{db}' import '{csv}' --symbol BIGUSD --timeframe 1h; echo \"rc=$?\"; \
         '{bin}' --db '{db}' --json data",
        bin = bin.display(),
        db = tiny_db.display(),
        csv = csv.display(),
    );
    let out = in_small_tmpfs(&tiny, "1500k", &script).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(96),
        "the sample did not fit: {stderr}"
    );
    assert!(stdout.contains("rc=1"), "{stdout}{stderr}");
    assert!(
        stderr.contains("full") || stderr.contains("space"),
        "{stderr}"
    );
    let after = stdout.split_once("rc=1").unwrap().1;
    let data: Value = serde_json::from_str(after.trim()).unwrap();
    let symbols: Vec<&str> = data
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, ["EURUSD"], "the failed import stored something");
    eprintln!(
        "full disk: a 12-model save on 64 KiB and a 60,000-row import on 1.5 MB refused, nothing kept"
    );
}

#[test]
fn four_processes_share_one_database_without_locks_or_losses() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.sqlite");
    run_json(cli(&db).arg("data"));
    let files: Vec<PathBuf> = (0..40)
        .map(|i| {
            let path = dir.path().join(format!("s{i}.csv"));
            write_csv(&path, 2_000, 10 + i);
            path
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(25);
    let worker = |kind: &'static str, db: PathBuf, files: Vec<PathBuf>| {
        std::thread::spawn(move || {
            let mut done: Vec<String> = Vec::new();
            let mut failures: Vec<String> = Vec::new();
            let mut i = 0;
            while Instant::now() < deadline {
                let mut cmd = cli(&db);
                let label = match kind {
                    "import" => {
                        let Some(file) = files.get(i) else { break };
                        let symbol = format!("SYM{i:02}");
                        cmd.arg("import").arg(file).args([
                            "--symbol",
                            &symbol,
                            "--timeframe",
                            "1h",
                        ]);
                        symbol
                    }
                    "train" => {
                        cmd.args([
                            "train",
                            "--regressor",
                            "ridge",
                            "--alpha",
                            &format!("{}", i + 1),
                            "--device",
                            "cpu",
                        ]);
                        format!("model {i}")
                    }
                    "bench" => {
                        cmd.args(BENCH);
                        format!("run {i}")
                    }
                    _ => {
                        cmd.args(["--json", "data"]);
                        format!("read {i}")
                    }
                };
                let out = cmd.output().unwrap();
                if out.status.success() {
                    done.push(label);
                } else {
                    failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
                }
                i += 1;
            }
            (done, failures)
        })
    };
    let importer = worker("import", db.clone(), files.clone());
    let trainer = worker("train", db.clone(), Vec::new());
    let bencher = worker("bench", db.clone(), Vec::new());
    let reader = worker("read", db.clone(), Vec::new());
    let results: Vec<(Vec<String>, Vec<String>)> = [importer, trainer, bencher, reader]
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    for (kind, (_, failures)) in ["import", "train", "bench", "read"].iter().zip(&results) {
        assert!(failures.is_empty(), "{kind} failed: {failures:?}");
    }
    // Everything that was reported done is there, whole.
    for symbol in &results[0].0 {
        assert_eq!(stored_bars(&db, symbol), 2_000, "{symbol}");
    }
    let models = run_json(cli(&db).arg("models"));
    assert_eq!(
        models["models"].as_array().unwrap().len(),
        results[1].0.len()
    );
    let runs = run_json(cli(&db).args(["bench", "list"]));
    assert_eq!(runs.as_array().unwrap().len(), results[2].0.len());
    let total: usize = results.iter().map(|(d, _)| d.len()).sum();
    eprintln!(
        "4 processes for 25 s: {} imports, {} trainings, {} benchmark runs, {} reads ({total} operations), no failure",
        results[0].0.len(),
        results[1].0.len(),
        results[2].0.len(),
        results[3].0.len()
    );
}
