//! `forexgpt bench --size small` runs every suite (CPU, and wgpu where an adapter exists), stores
//! the run, and `bench list|show|compare|delete` read it back.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use common::{forexgpt, json};

#[test]
fn the_small_suite_runs_is_stored_and_compares() {
    let dir = tempfile::tempdir().unwrap();
    let run = json(forexgpt(dir.path()).args([
        "bench",
        "--suite",
        "all",
        "--size",
        "small",
        "--repeats",
        "1",
    ]));
    let results = run["results"].as_array().unwrap();
    let ops: Vec<&str> = results
        .iter()
        .map(|r| r["operation"].as_str().unwrap())
        .collect();
    for op in [
        "features",
        "import_csv",
        "ridge",
        "lasso",
        "elasticnet",
        "pca",
        "forecast",
        "autoencoder_fit",
        "vae_fit",
        "autoencoder_dropout_fit",
        "rf_fit",
        "rf_predict",
    ] {
        assert!(ops.contains(&op), "{op} missing from {ops:?}");
    }
    // On a GPU the autoencoder is also trained as a grid of 16 at once; burn trains on the
    // CPU only, so no GPU row is burn's.
    if results
        .iter()
        .any(|r| r["device"].as_str().unwrap().starts_with("wgpu"))
    {
        assert!(ops.contains(&"autoencoder_grid_fit"), "{ops:?}");
    }
    assert!(!ops.iter().any(|op| op.ends_with("_burn")), "{ops:?}");
    for r in results {
        assert!(r["median_ms"].as_f64().unwrap() > 0.0, "{r}");
        // Every GPU row was checked against the CPU's result. With dropout the CPU (burn's
        // generator) and a GPU (hashed masks) drop different units, so their losses are
        // alike, not equal.
        if let Some(diff) = r["max_rel_diff_vs_cpu"].as_f64() {
            let bound = if r["operation"] == "autoencoder_dropout_fit" {
                0.2
            } else {
                1e-2
            };
            assert!(diff < bound, "{r}");
        }
    }
    assert_eq!(run["settings"]["rows"], 20_000);
    assert_eq!(run["settings"]["trees"], 20);
    let a = run["id"].as_i64().unwrap();

    let data_only = json(forexgpt(dir.path()).args([
        "bench",
        "--size",
        "small",
        "--bars",
        "5000",
        "--csv-rows",
        "5000",
        "--repeats",
        "1",
    ]));
    assert_eq!(data_only["settings"]["bars"], 5000);
    let b = data_only["id"].as_i64().unwrap();

    let list = json(forexgpt(dir.path()).args(["bench", "list"]));
    let ids: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![b, a], "newest first");

    let md = forexgpt(dir.path())
        .args(["bench", "show", &a.to_string(), "--format", "markdown"])
        .output()
        .unwrap();
    let md = String::from_utf8(md.stdout).unwrap();
    assert!(
        md.contains("| operation | size | device |") && md.contains("| ridge |"),
        "{md}"
    );

    // Only the operations measured at the same size in both runs are compared.
    let cmp = json(forexgpt(dir.path()).args(["bench", "compare", &a.to_string(), &b.to_string()]));
    assert!(cmp.as_array().unwrap().is_empty(), "{cmp}");
    forexgpt(dir.path())
        .args(["bench", "delete", &b.to_string()])
        .assert()
        .success();
    forexgpt(dir.path())
        .args(["bench", "show", &b.to_string()])
        .assert()
        .failure()
        .stderr(predicates::str::contains(format!("no benchmark run #{b}")));
}
