//! Features, targets, the scaler and the metrics against independently computed values
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
//! (pandas, `ta` and scikit-learn; see `tests/oracle/gen_features.py`).

use std::path::PathBuf;

use forexgpt_core::features::{build_features, build_targets};
use forexgpt_core::import::parse_candles_csv;
use forexgpt_core::metrics::regression_metrics;
use forexgpt_core::sample::SAMPLE_SERIES;
use forexgpt_core::scaler::StandardScaler;
use forexgpt_protocol::{CsvFormat, FeatureSpec, TargetSpec, Timeframe};

/// Features are log ratios and bounded indicators of order 1e-4..1; values agree to rounding.
const ABS_TOL: f64 = 1e-10;
const REL_TOL: f64 = 1e-9;
/// pandas' rolling variance is a one-pass online algorithm: for closes near 1.1 with a 10-bar
/// spread of ~1e-4 its rounding error is ~1e-16 · (1.1 / 1e-4)² ≈ 1e-8 of σ², which %B
/// (divided by 4σ) shows. Our two-pass variance is the more accurate one.
const BOLLINGER_ABS_TOL: f64 = 1e-7;
const ORACLE_BARS: usize = 600;

fn fixture(name: &str) -> PathBuf {
    // Cargo's value when it runs the test first: a binary reused from a build in another
    // checkout (a shared target cache) must not read that checkout's files.
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../tests/fixtures")
    .join(name)
}

struct Oracle {
    columns: Vec<String>,
    ts: Vec<i64>,
    values: Vec<Vec<f64>>,
}

fn read_oracle() -> Oracle {
    let mut reader =
        csv::Reader::from_path(fixture("features_oracle.csv")).expect("features_oracle.csv");
    let headers = reader.headers().unwrap().clone();
    let columns: Vec<String> = headers.iter().skip(1).map(str::to_string).collect();
    let mut ts = Vec::new();
    let mut values = Vec::new();
    for record in reader.records() {
        let record = record.unwrap();
        ts.push(record[0].parse::<i64>().unwrap());
        values.push(
            record
                .iter()
                .skip(1)
                .map(|v| v.parse::<f64>().unwrap())
                .collect(),
        );
    }
    Oracle {
        columns,
        ts,
        values,
    }
}

fn sample_bars() -> Vec<forexgpt_core::Candle> {
    let sample = &SAMPLE_SERIES[0];
    let parsed = parse_candles_csv(
        sample.file_name,
        sample.csv,
        CsvFormat::Auto,
        Timeframe::H1,
        &mut |_, _| true,
    )
    .unwrap();
    parsed.candles[..ORACLE_BARS].to_vec()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= ABS_TOL + REL_TOL * b.abs()
}

fn close_for(column: &str, a: f64, b: f64) -> bool {
    if column.starts_with("bollinger_pb_") {
        (a - b).abs() <= BOLLINGER_ABS_TOL
    } else {
        close(a, b)
    }
}

#[test]
fn features_and_targets_match_pandas_and_ta() {
    let oracle = read_oracle();
    let candles = sample_bars();
    let fm = build_features(&candles, &FeatureSpec::default()).unwrap();
    let targets = build_targets(&fm, &TargetSpec::default()).unwrap();

    let feature_cols: Vec<&String> = oracle
        .columns
        .iter()
        .filter(|c| !c.starts_with("target_"))
        .collect();
    assert_eq!(
        fm.columns.iter().collect::<Vec<_>>(),
        feature_cols,
        "same columns in the same order"
    );

    // The warm-up ends where the oracle first has every feature.
    let first_complete = oracle
        .values
        .iter()
        .position(|row| row[..feature_cols.len()].iter().all(|v| !v.is_nan()))
        .unwrap();
    assert_eq!(fm.warmup, first_complete);
    assert_eq!(fm.ts[0], oracle.ts[first_complete]);

    let mut worst = (0.0f64, String::new());
    for r in 0..fm.rows() {
        let expected = &oracle.values[fm.warmup + r];
        for (j, name) in fm.columns.iter().enumerate() {
            let (got, want) = (fm.row(r)[j], expected[j]);
            assert!(
                close_for(name, got, want),
                "row {r} (bar {}), {name}: got {got}, oracle {want}",
                fm.warmup + r
            );
            if (got - want).abs() > worst.0 {
                worst = ((got - want).abs(), name.clone());
            }
        }
    }
    eprintln!("largest feature difference: {:e} in {}", worst.0, worst.1);

    let h_cols: Vec<usize> = (0..4).map(|k| feature_cols.len() + k).collect();
    assert_eq!(targets.horizons, vec![1, 4, 12, 24]);
    assert_eq!(targets.rows, ORACLE_BARS - fm.warmup - 24);
    for r in 0..targets.rows {
        for (k, &col) in h_cols.iter().enumerate() {
            let (got, want) = (targets.row(r)[k], oracle.values[fm.warmup + r][col]);
            assert!(
                close(got, want),
                "target row {r} h{}: got {got}, oracle {want}",
                targets.horizons[k]
            );
        }
    }
}

#[derive(serde::Deserialize)]
struct ScalerMetricsOracle {
    scaler_rows: usize,
    scaler_mean: Vec<f64>,
    scaler_scale: Vec<f64>,
    metrics_actual: Vec<f64>,
    metrics_predicted: Vec<f64>,
    mae: f64,
    rmse: f64,
    r2: f64,
    directional_accuracy: f64,
}

#[test]
fn scaler_and_metrics_match_scikit_learn() {
    let text = std::fs::read_to_string(fixture("scaler_metrics_oracle.json")).unwrap();
    let oracle: ScalerMetricsOracle = serde_json::from_str(&text).unwrap();
    let fm = build_features(&sample_bars(), &FeatureSpec::default()).unwrap();
    let scaler = StandardScaler::fit(&fm.values, fm.n_columns(), 0..oracle.scaler_rows).unwrap();
    for j in 0..fm.n_columns() {
        assert!(
            close(scaler.mean[j], oracle.scaler_mean[j]),
            "mean of {}",
            fm.columns[j]
        );
        assert!(
            close(scaler.scale[j], oracle.scaler_scale[j]),
            "scale of {}",
            fm.columns[j]
        );
    }
    let m = regression_metrics(&oracle.metrics_actual, &oracle.metrics_predicted).unwrap();
    assert!((m.mae - oracle.mae).abs() < 1e-15);
    assert!((m.rmse - oracle.rmse).abs() < 1e-15);
    assert!((m.r2 - oracle.r2).abs() < 1e-12);
    assert!((m.directional_accuracy - oracle.directional_accuracy).abs() < 1e-12);
}
