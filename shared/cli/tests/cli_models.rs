//! `forexgpt train → models → forecast → backtest` on the sample data, on the CPU and (where
//! an adapter exists, lavapipe in CI) on wgpu, plus the errors a user sees.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use common::{forexgpt, json, stdout_of};

use std::path::Path;

/// Any wgpu adapter, software ones (lavapipe) included: they run when wgpu is asked for.
fn has_wgpu(dir: &Path) -> bool {
    let devices = json(forexgpt(dir).arg("devices"));
    devices["wgpu"]["adapters"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
}

#[test]
fn train_list_forecast_backtest_and_delete_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let trained = json(forexgpt(dir.path()).args([
        "train",
        "--encoder",
        "none,pca",
        "--components",
        "8",
        "--regressor",
        "ridge,elasticnet",
        "--device",
        "cpu",
    ]));
    let models = trained["models"].as_array().unwrap();
    assert_eq!(models.len(), 4);
    for m in models {
        // Beside the database, in a folder named after it (store.sqlite → store.models).
        let path = Path::new(m["path"].as_str().unwrap());
        assert_eq!(path.parent().unwrap(), dir.path().join("store.models"));
        assert_eq!(m["info"]["device"]["backend"], "cpu");
        let metrics = m["info"]["metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 4);
        // Training errors are in log returns, and the JSON says so beside the numbers.
        assert!(
            metrics.iter().all(|h| h["unit"] == "log_return"),
            "{metrics:?}"
        );
    }
    let id = models[0]["info"]["id"].as_str().unwrap().to_string();

    let listed = json(forexgpt(dir.path()).arg("models"));
    assert_eq!(listed["models"].as_array().unwrap().len(), 4);
    let shown = json(forexgpt(dir.path()).args(["models", "show", &id]));
    assert_eq!(shown["info"]["id"], id.as_str());

    let single = json(forexgpt(dir.path()).args(["forecast", "--model", &id]));
    assert_eq!(single["models"].as_array().unwrap().len(), 1);
    let h = &single["horizons"][0];
    assert!(h["q05"].as_f64().unwrap() < h["price"].as_f64().unwrap());
    assert!(h["price"].as_f64().unwrap() < h["q95"].as_f64().unwrap());

    let ensemble = json(forexgpt(dir.path()).args([
        "forecast",
        "--combine",
        "weighted",
        "--at",
        "2017-10-02 09:00",
    ]));
    assert_eq!(ensemble["models"].as_array().unwrap().len(), 4);
    assert_eq!(ensemble["origin_ts"], 1_506_934_800); // 2017-10-02 09:00 UTC

    let backtest = json(forexgpt(dir.path()).args(["backtest", "--combine", "median"]));
    for h in backtest["horizons"].as_array().unwrap() {
        assert!(h["n"].as_u64().unwrap() > 500);
        assert!(h["baseline_mae_price"].as_f64().unwrap() > 0.0);
        let coverage = h["coverage"].as_f64().unwrap();
        assert!((0.6..=1.0).contains(&coverage), "{h}");
    }

    // The same ensemble on wgpu (GPU inference) gives the same forecast within float32 rounding.
    if has_wgpu(dir.path()) {
        let cpu = json(forexgpt(dir.path()).args(["forecast"]));
        let gpu = json(forexgpt(dir.path()).args(["forecast", "--device", "wgpu"]));
        assert_eq!(gpu["device"]["backend"], "wgpu");
        for (a, b) in cpu["horizons"]
            .as_array()
            .unwrap()
            .iter()
            .zip(gpu["horizons"].as_array().unwrap())
        {
            let (a, b) = (
                a["expected_return"].as_f64().unwrap(),
                b["expected_return"].as_f64().unwrap(),
            );
            assert!((a - b).abs() < 1e-6, "cpu {a} vs wgpu {b}");
        }
        let trained =
            json(forexgpt(dir.path()).args(["train", "--encoder", "pca", "--device", "wgpu"]));
        assert_eq!(trained["models"][0]["info"]["device"]["backend"], "wgpu");
    } else {
        eprintln!("skipped wgpu: no adapter");
    }

    let deleted = json(forexgpt(dir.path()).args(["models", "delete", &id]));
    assert_eq!(deleted["deleted"][0], id.as_str());
    forexgpt(dir.path())
        .args(["forecast", "--model", &id])
        .assert()
        .failure()
        .stderr(predicates::str::contains(format!("no model '{id}'")));
}

#[test]
fn forecasting_without_models_and_a_cpu_only_gpu_request_explain_themselves() {
    let dir = tempfile::tempdir().unwrap();
    forexgpt(dir.path())
        .arg("forecast")
        .assert()
        .failure()
        .stderr(predicates::str::contains("forexgpt train"));
    forexgpt(dir.path())
        .args(["train", "--regressor", "lasso", "--alpha=-1"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("alpha"));
    // "Use GPU (if available)" never fails: without a GPU the CPU runs and the notice says why.
    let trained = json(forexgpt(dir.path()).args(["train", "--use-gpu", "--device", "cuda"]));
    let info = &trained["models"][0]["info"];
    if info["device"]["backend"] == "cpu" {
        assert!(
            info["fell_back"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("cuda"),
            "{info}"
        );
    }
}

#[test]
fn a_random_forest_trains_and_forecasts_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let trained = json(forexgpt(dir.path()).args([
        "train",
        "--regressor",
        "ridge,rf",
        "--trees",
        "8",
        "--max-depth",
        "6",
        "--max-features",
        "sqrt",
        "--oob-score",
        "--device",
        "cpu",
    ]));
    let models = trained["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    let rf = &models[1]["info"]["regressor"];
    assert_eq!(rf["kind"], "rf");
    assert_eq!(rf["n_estimators"], 8);
    assert_eq!(rf["max_depth"], 6);
    assert_eq!(rf["max_features"], "sqrt");
    let forecast = json(forexgpt(dir.path()).args(["forecast", "--device", "cpu"]));
    assert_eq!(forecast["models"].as_array().unwrap().len(), 2);
    forexgpt(dir.path())
        .args(["train", "--regressor", "rf", "--max-features", "2.5"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("max_features"));
    forexgpt(dir.path())
        .args(["train", "--regressor", "rf", "--min-samples-split", "1"])
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "min_samples_split must be at least 2",
        ));
}

#[test]
fn naming_a_device_that_cannot_serve_a_model_is_an_error_for_every_model() {
    let dir = tempfile::tempdir().unwrap();
    let devices = json(forexgpt(dir.path()).arg("devices"));
    if devices["cuda_available"] == true {
        eprintln!("skipped the CUDA half: CUDA is usable on this machine");
    } else {
        // Every regressor and encoder, forests included (they used to grow on the CPU
        // quietly): an error that says why, and nothing stored.
        let cases: [&[&str]; 7] = [
            &["--regressor", "ridge"],
            &["--regressor", "lasso"],
            &["--regressor", "elasticnet"],
            &["--regressor", "rf", "--trees", "2"],
            &["--encoder", "pca"],
            &["--encoder", "ae", "--epochs", "1"],
            &["--encoder", "vae", "--epochs", "1"],
        ];
        for args in cases {
            let out = forexgpt(dir.path())
                .arg("train")
                .args(args)
                .args(["--device", "cuda"])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
            assert!(!out.status.success(), "{args:?} succeeded");
            assert!(
                stderr.contains("cuda is not available") || stderr.contains("no cuda support"),
                "{args:?}: {stderr}"
            );
        }
        let listed = json(forexgpt(dir.path()).arg("models"));
        assert!(listed["models"].as_array().unwrap().is_empty());
    }
    if has_wgpu(dir.path()) {
        // wgpu grows forests (a level at a time): named, the forest grows there and its
        // stored record says so.
        let trained = json(forexgpt(dir.path()).args([
            "train",
            "--regressor",
            "rf",
            "--trees",
            "2",
            "--device",
            "wgpu",
        ]));
        let info = &trained["models"][0]["info"];
        assert_eq!(info["device"]["backend"], "wgpu", "{info}");
        assert!(info["fell_back"].is_null(), "{info}");
    } else {
        eprintln!("skipped the wgpu half: no adapter");
    }
}

#[test]
fn a_cpu_fallback_is_noted_once_per_command_and_briefly() {
    let dir = tempfile::tempdir().unwrap();
    let devices = json(forexgpt(dir.path()).arg("devices"));
    if devices["auto"]["backend"] != "cpu" {
        eprintln!("skipped: this machine has a usable GPU, so nothing falls back");
        return;
    }
    let stdout =
        stdout_of(forexgpt(dir.path()).args(["train", "--regressor", "ridge,lasso", "--use-gpu"]));
    let notes: Vec<&str> = stdout.lines().filter(|l| l.contains("note:")).collect();
    assert_eq!(
        notes,
        ["note: 2 models ran on the CPU: no usable GPU (`forexgpt devices` says why)"],
        "{stdout}"
    );
    // The tables name their unit, and the output says where the models went.
    assert!(stdout.contains("errors in log-return units"), "{stdout}");
    let saved = format!("saved in {}", dir.path().join("store.models").display());
    assert!(stdout.contains(&saved), "{stdout}");
    let stdout = stdout_of(forexgpt(dir.path()).arg("backtest"));
    assert!(stdout.contains("MAE in price units"), "{stdout}");
    // `--use-gpu` alone asks for GPU inference too (not the CPU default), and says why the
    // CPU ran.
    let stdout = stdout_of(forexgpt(dir.path()).args(["forecast", "--use-gpu"]));
    assert!(
        stdout.contains("note: ran on the CPU: no usable GPU"),
        "{stdout}"
    );
    // The model files keep the whole reason.
    let listed = json(forexgpt(dir.path()).arg("models"));
    let reason = listed["models"][0]["info"]["fell_back"].as_str().unwrap();
    assert!(
        reason.contains("CUDA:") && reason.contains("wgpu:"),
        "{reason}"
    );
}
