//! Benchmarks of the regressors (Ridge, Lasso, ElasticNet, PCA) on the CPU (float64) and on
//! every GPU device, on the same generated data; each GPU result is compared with the CPU's.
//! `export_data` writes that data (raw little-endian float64) and the CPU coefficients for the
//! scikit-learn peer script (`bench/peers/regressors_sklearn.py`).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use forexgpt_core::synthetic::SplitMix64;
use forexgpt_device::ComputeDevice;
use forexgpt_regressors::linear::LinearParamsBuilder;
use forexgpt_regressors::{ElasticNet, Lasso, Matrix, Pca, Ridge};
use rayon::prelude::*;

use crate::bench::BenchCase;
use crate::error::EngineError;

/// The benchmark's models, with the parameters the peer script uses too.
pub const MODELS: &[&str] = &["ridge", "lasso", "elasticnet", "pca"];
pub const RIDGE_ALPHA: f64 = 1.0;
pub const LASSO_ALPHA: f64 = 0.01;
pub const ENET_ALPHA: f64 = 0.01;
pub const ENET_L1_RATIO: f64 = 0.5;
pub const PCA_COMPONENTS: usize = 16;

/// Components kept by the PCA benchmark for `cols` features.
pub fn pca_components(cols: usize) -> usize {
    PCA_COMPONENTS.min(cols)
}

/// `X` (rows × cols, standard normal with correlated columns) and `Y = X·W + noise`
/// (rows × targets, W sparse), seeded and generated in parallel.
pub fn regression_data(rows: usize, cols: usize, targets: usize, seed: u64) -> (Matrix, Matrix) {
    let mut x = vec![0.0; rows * cols];
    x.par_chunks_mut(cols).enumerate().for_each(|(r, row)| {
        let mut rng = SplitMix64::new(seed ^ (r as u64).wrapping_mul(0x9E37_79B9));
        let common = rng.normal();
        for v in row.iter_mut() {
            *v = rng.normal() + 0.3 * common;
        }
    });
    let w: Vec<f64> = (0..cols * targets)
        .map(|k| {
            if k % 3 == 0 {
                ((k % 7) as f64 - 3.0) * 0.1
            } else {
                0.0
            }
        })
        .collect();
    let mut y = vec![0.0; rows * targets];
    y.par_chunks_mut(targets).enumerate().for_each(|(r, out)| {
        let mut rng = SplitMix64::new(!seed ^ r as u64);
        let xr = &x[r * cols..(r + 1) * cols];
        for (k, o) in out.iter_mut().enumerate() {
            *o = xr
                .iter()
                .enumerate()
                .map(|(i, xi)| xi * w[i * targets + k])
                .sum::<f64>()
                + 0.1 * rng.normal();
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

fn linear_builder(model: &str) -> LinearParamsBuilder {
    match model {
        "ridge" => Ridge::params().alpha(RIDGE_ALPHA),
        "lasso" => Lasso::params().alpha(LASSO_ALPHA),
        _ => ElasticNet::params()
            .alpha(ENET_ALPHA)
            .l1_ratio(ENET_L1_RATIO),
    }
}

/// Fits `model` and returns what the comparison looks at: coefficients (or PCA components
/// with signs normalised) — the same numbers on every device.
fn fit(
    model: &str,
    x: &Matrix,
    y: &Matrix,
    device: Option<&ComputeDevice>,
) -> Result<Vec<f64>, EngineError> {
    if model == "pca" {
        let pca = Pca::params(pca_components(x.cols))
            .check()?
            .fit(x, device)?;
        let mut c = pca.components.values;
        for row in c.chunks_mut(x.cols) {
            let sign = row
                .iter()
                .copied()
                .fold(0.0f64, |a, v| if v.abs() > a.abs() { v } else { a })
                .signum();
            row.iter_mut().for_each(|v| *v *= sign);
        }
        return Ok(c);
    }
    let params = linear_builder(model).check()?;
    Ok(params.fit(x, y, device)?.coef.values)
}

/// The largest difference from `reference`, relative to its largest magnitude.
pub(crate) fn max_rel_diff(got: &[f64], reference: &[f64]) -> f64 {
    let scale = reference
        .iter()
        .map(|v| v.abs())
        .fold(f64::MIN_POSITIVE, f64::max);
    got.iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / scale
}

/// One case per model and device: the CPU first, then each GPU device.
pub fn regressor_cases(
    rows: usize,
    cols: usize,
    targets: usize,
    devices: &[ComputeDevice],
    export: Option<&Path>,
) -> Result<Vec<BenchCase>, EngineError> {
    let (x, y) = regression_data(rows, cols, targets, 7);
    let data = Arc::new((x, y));
    if let Some(dir) = export {
        export_data(dir, &data.0, &data.1)?;
    }
    let mut cases = Vec::new();
    for &model in MODELS {
        let reference = fit(model, &data.0, &data.1, None)?;
        if let Some(dir) = export {
            write_f64(&dir.join(format!("ours_cpu_{model}.f64")), &reference)?;
        }
        let reference = Arc::new(reference);
        for device in std::iter::once(None).chain(devices.iter().filter(|d| d.is_gpu()).map(Some)) {
            let data = Arc::clone(&data);
            let reference = Arc::clone(&reference);
            cases.push(BenchCase::on_device(
                model,
                format!("{rows}×{cols}→{targets}"),
                rows,
                device.cloned(),
                move |device, diff| {
                    let started = Instant::now();
                    let result = fit(model, &data.0, &data.1, device)?;
                    let elapsed = started.elapsed();
                    *diff.lock().unwrap_or_else(|e| e.into_inner()) =
                        max_rel_diff(&result, &reference);
                    Ok(elapsed)
                },
            ));
        }
    }
    Ok(cases)
}

pub(crate) fn write_f64(path: &Path, values: &[f64]) -> Result<(), EngineError> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).map_err(|cause| EngineError::Io {
        context: format!("writing {}", path.display()),
        cause,
    })
}

/// Writes a peer script's inputs into `dir`: each array as raw little-endian float64 (the
/// matrices row-major) and `meta` as `meta_file`.
pub(crate) fn export_peer_files(
    dir: &Path,
    arrays: &[(&str, &[f64])],
    meta_file: &str,
    meta: &serde_json::Value,
) -> Result<(), EngineError> {
    std::fs::create_dir_all(dir).map_err(|cause| EngineError::Io {
        context: format!("creating {}", dir.display()),
        cause,
    })?;
    for (name, values) in arrays {
        write_f64(&dir.join(name), values)?;
    }
    std::fs::write(dir.join(meta_file), meta.to_string()).map_err(|cause| EngineError::Io {
        context: format!("writing {meta_file}"),
        cause,
    })
}

/// Writes `x.f64`, `y.f64` (row-major, little-endian) and `meta.json` for the peer script.
pub fn export_data(dir: &Path, x: &Matrix, y: &Matrix) -> Result<(), EngineError> {
    let meta = serde_json::json!({
        "rows": x.rows, "cols": x.cols, "targets": y.cols,
        "ridge_alpha": RIDGE_ALPHA, "lasso_alpha": LASSO_ALPHA,
        "enet_alpha": ENET_ALPHA, "enet_l1_ratio": ENET_L1_RATIO, "pca_components": pca_components(x.cols),
    });
    export_peer_files(
        dir,
        &[("x.f64", &x.values), ("y.f64", &y.values)],
        "meta.json",
        &meta,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{BenchOptions, run_suite};
    use crate::progress::{CancelToken, NoProgress};

    #[test]
    fn small_regressor_suite_runs_on_the_cpu_and_checks_devices() {
        let devices = vec![ComputeDevice::cpu("test")];
        let dir = tempfile::tempdir().unwrap();
        let mut cases = regressor_cases(500, 8, 2, &devices, Some(dir.path())).unwrap();
        assert_eq!(
            cases.len(),
            MODELS.len(),
            "the CPU is not repeated as a device"
        );
        let results = run_suite(
            &mut cases,
            BenchOptions { repeats: 1 },
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap()
        .results;
        assert!(
            results
                .iter()
                .all(|r| r.device == "cpu" && r.median_ms > 0.0)
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("x.f64")).unwrap().len(),
            500 * 8 * 8
        );
        assert!(dir.path().join("ours_cpu_pca.f64").exists());
    }
}
