//! Benchmarks of the random forest: growing the trees (on the CPU, and on every CUDA device,
//! whose forest's held-out R² is compared with the CPU forest's) and predicting many rows on
//! the CPU and every GPU device (each GPU's predictions compared with the CPU's).
//! `export_data` writes the data, the settings and our validation R² for the scikit-learn
//! peer (`bench/peers/forest_sklearn.py`).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use forexgpt_core::metrics::regression_metrics;
use forexgpt_core::synthetic::SplitMix64;
use forexgpt_device::ComputeDevice;
use forexgpt_regressors::forest::{RandomForest, ValidForestParams};
use forexgpt_regressors::{Matrix, RandomForestModel};
use rayon::prelude::*;

use crate::bench::BenchCase;
use crate::bench::models::{export_peer_files, max_rel_diff, write_f64};
use crate::error::EngineError;

/// The forest's random state in the benchmark (the peer uses it too).
pub const FOREST_SEED: u64 = 0;

/// `X` (standard normal, mildly correlated columns) and targets that are non-linear in a few
/// columns each (a sine, a product, an absolute value) plus noise: data a forest can learn
/// and a linear model cannot.
pub fn forest_data(rows: usize, cols: usize, targets: usize, seed: u64) -> (Matrix, Matrix) {
    let mut x = vec![0.0; rows * cols];
    let mut y = vec![0.0; rows * targets];
    x.par_chunks_mut(cols)
        .zip(y.par_chunks_mut(targets))
        .enumerate()
        .for_each(|(r, (row, out))| {
            let mut rng = SplitMix64::new(seed ^ (r as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A));
            let common = rng.normal();
            for v in row.iter_mut() {
                *v = rng.normal() + 0.3 * common;
            }
            for (k, o) in out.iter_mut().enumerate() {
                let at = |i: usize| row[(k + i) % cols];
                *o = (2.0 * at(0)).sin() + at(1) * at(2) + 0.5 * at(3).abs() + 0.1 * rng.normal();
            }
        });
    (
        Matrix {
            rows,
            cols,
            values: x,
        },
        Matrix {
            rows,
            cols: targets,
            values: y,
        },
    )
}

/// R² averaged over outputs (scikit-learn's `uniform_average`), each output's from
/// [`regression_metrics`].
pub fn r2_score(y: &Matrix, pred: &Matrix) -> f64 {
    let column = |m: &Matrix, j: usize| (0..m.rows).map(|r| m.get(r, j)).collect::<Vec<_>>();
    let r2: f64 = (0..y.cols)
        .filter_map(|j| regression_metrics(&column(y, j), &column(pred, j)))
        .map(|m| m.r2)
        .sum();
    r2 / y.cols as f64
}

fn params(trees: usize) -> Result<ValidForestParams, EngineError> {
    Ok(RandomForest::params()
        .n_estimators(trees)
        .random_state(FOREST_SEED)
        .check()?)
}

fn grow(
    params: &ValidForestParams,
    x: &Matrix,
    y: &Matrix,
    device: Option<&ComputeDevice>,
) -> Result<RandomForestModel, EngineError> {
    Ok(params.fit_on(x, y, device, &|_| true)?)
}

/// The R² a correct forest reaches on this data at the smallest size is far above this; a
/// broken one (wrong splits, wrong leaves) falls below it.
const MIN_R2: f64 = 0.3;

/// Cases: `rf_fit` on the CPU and each GPU device, `rf_fit_levels` (wgpu's grower) on each
/// CUDA device, then `rf_predict` on the CPU and each GPU device, then `rf_predict_cubecl`
/// (wgpu's walk) on each CUDA device.
pub fn forest_cases(
    rows: usize,
    cols: usize,
    targets: usize,
    trees: usize,
    predict_rows: usize,
    devices: &[ComputeDevice],
    export: Option<&Path>,
) -> Result<Vec<BenchCase>, EngineError> {
    let (x, y) = forest_data(rows, cols, targets, 11);
    let (xp, yp) = forest_data(predict_rows, cols, targets, 12);
    let params = params(trees)?;
    let model = grow(&params, &x, &y, None)?;
    let reference = model.predict(&xp)?;
    let r2 = r2_score(&yp, &reference);
    let cpu_r2 = r2;
    if r2 < MIN_R2 {
        return Err(EngineError::InvalidRequest(format!(
            "the benchmark forest scores R² {r2:.3} on held-out rows, below {MIN_R2}: it is broken"
        )));
    }
    if let Some(dir) = export {
        export_forest_data(dir, &x, &y, &xp, &yp, trees)?;
        write_f64(&dir.join("ours_cpu_rf_fit.f64"), &[r2])?;
    }
    let fit_size = format!("{trees} trees, {rows}×{cols}→{targets}");
    let data = Arc::new((x, y, xp, yp));
    let mut cases = Vec::new();
    // Trees grow on every GPU: CUDA's kernels, a level at a time on wgpu.
    for device in std::iter::once(None).chain(devices.iter().filter(|d| d.is_gpu()).map(Some)) {
        let data = Arc::clone(&data);
        let params = params.clone();
        cases.push(BenchCase::on_device(
            "rf_fit",
            fit_size.clone(),
            rows,
            device.cloned(),
            move |device, diff| {
                let started = Instant::now();
                let model = grow(&params, &data.0, &data.1, device)?;
                let elapsed = started.elapsed();
                let r2 = r2_score(&data.3, &model.predict(&data.2)?);
                if r2 < MIN_R2 {
                    return Err(EngineError::InvalidRequest(format!(
                        "rf_fit: held-out R² {r2:.3} is below {MIN_R2}"
                    )));
                }
                // Against the CPU forest: the difference of held-out R² (trees differ only
                // where floating-point sums break near-ties differently).
                *diff.lock().unwrap_or_else(|e| e.into_inner()) = (r2 - cpu_r2).abs();
                Ok(elapsed)
            },
        ));
    }
    // On CUDA also the level-at-a-time grower that wgpu runs (our CubeCL kernels), beside the
    // CUDA builder `rf_fit` takes there: whether one kernel source could serve both.
    for device in devices.iter().filter(|d| d.cuda_index().is_some()) {
        let data = Arc::clone(&data);
        let params = params.clone();
        cases.push(BenchCase::on_device(
            "rf_fit_levels",
            fit_size.clone(),
            rows,
            Some(device.clone()),
            move |device, diff| {
                let device = device.ok_or_else(|| {
                    EngineError::InvalidRequest("rf_fit_levels runs on a GPU".into())
                })?;
                let started = Instant::now();
                let model = params.fit_by_levels(&data.0, &data.1, device, &|_| true)?;
                let elapsed = started.elapsed();
                let r2 = r2_score(&data.3, &model.predict(&data.2)?);
                if r2 < MIN_R2 {
                    return Err(EngineError::InvalidRequest(format!(
                        "rf_fit_levels: held-out R² {r2:.3} is below {MIN_R2}"
                    )));
                }
                *diff.lock().unwrap_or_else(|e| e.into_inner()) = (r2 - cpu_r2).abs();
                Ok(elapsed)
            },
        ));
    }
    let model = Arc::new(model);
    let reference = Arc::new(reference);
    for device in std::iter::once(None).chain(devices.iter().filter(|d| d.is_gpu()).map(Some)) {
        let data = Arc::clone(&data);
        let model = Arc::clone(&model);
        let reference = Arc::clone(&reference);
        cases.push(BenchCase::on_device(
            "rf_predict",
            format!("{trees} trees, {predict_rows}×{cols}"),
            predict_rows,
            device.cloned(),
            move |device, diff| {
                let started = Instant::now();
                let pred = match device {
                    Some(d) => model.predict_on(&data.2, d)?,
                    None => model.predict(&data.2)?,
                };
                let elapsed = started.elapsed();
                *diff.lock().unwrap_or_else(|e| e.into_inner()) =
                    max_rel_diff(&pred.values, &reference.values);
                Ok(elapsed)
            },
        ));
    }
    // On CUDA also the walk that wgpu runs (our CubeCL kernel, rows binned on the CPU), beside
    // the CUDA C walk `rf_predict` takes there: whether one kernel source could serve both.
    for device in devices.iter().filter(|d| d.cuda_index().is_some()) {
        let data = Arc::clone(&data);
        let model = Arc::clone(&model);
        let reference = Arc::clone(&reference);
        cases.push(BenchCase::on_device(
            "rf_predict_cubecl",
            format!("{trees} trees, {predict_rows}×{cols}"),
            predict_rows,
            Some(device.clone()),
            move |device, diff| {
                let device = device.ok_or_else(|| {
                    EngineError::InvalidRequest("rf_predict_cubecl runs on a GPU".into())
                })?;
                let started = Instant::now();
                let pred = forexgpt_regressors::forest::gpu::predict_rows(
                    &model.trees,
                    &model.bins,
                    &data.2,
                    device,
                )?;
                let elapsed = started.elapsed();
                let pred: Vec<f64> = pred.into_iter().map(f64::from).collect();
                *diff.lock().unwrap_or_else(|e| e.into_inner()) =
                    max_rel_diff(&pred, &reference.values);
                Ok(elapsed)
            },
        ));
    }
    Ok(cases)
}

/// Writes `forest_x.f64`, `forest_y.f64`, `forest_xp.f64`, `forest_yp.f64` (row-major,
/// little-endian) and `forest_meta.json` for the peer script.
pub fn export_forest_data(
    dir: &Path,
    x: &Matrix,
    y: &Matrix,
    xp: &Matrix,
    yp: &Matrix,
    trees: usize,
) -> Result<(), EngineError> {
    let meta = serde_json::json!({
        "rows": x.rows, "cols": x.cols, "targets": y.cols, "predict_rows": xp.rows,
        "n_estimators": trees, "max_features": 1.0, "bootstrap": true, "random_state": FOREST_SEED,
    });
    export_peer_files(
        dir,
        &[
            ("forest_x.f64", &x.values),
            ("forest_y.f64", &y.values),
            ("forest_xp.f64", &xp.values),
            ("forest_yp.f64", &yp.values),
        ],
        "forest_meta.json",
        &meta,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{BenchOptions, run_suite};
    use crate::progress::{CancelToken, NoProgress};

    #[test]
    fn a_small_forest_suite_runs_checks_quality_and_exports_the_data() {
        let devices = vec![ComputeDevice::cpu("test")];
        let dir = tempfile::tempdir().unwrap();
        let mut cases = forest_cases(600, 6, 2, 8, 500, &devices, Some(dir.path())).unwrap();
        assert_eq!(cases.len(), 2, "rf_fit and rf_predict on the CPU");
        let results = run_suite(
            &mut cases,
            BenchOptions { repeats: 1 },
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap()
        .results;
        assert_eq!(results[0].operation, "rf_fit");
        assert!(results.iter().all(|r| r.median_ms > 0.0));
        assert_eq!(
            std::fs::metadata(dir.path().join("forest_xp.f64"))
                .unwrap()
                .len(),
            500 * 6 * 8
        );
        let r2 = std::fs::read(dir.path().join("ours_cpu_rf_fit.f64")).unwrap();
        let r2 = f64::from_le_bytes(r2[..8].try_into().unwrap());
        assert!(r2 > MIN_R2, "{r2}");
    }
}
