//! Benchmarks of ensemble inference: 1, 10 and 50 trained models forecasting from one bar, and
//! 50 models over a batch of bars (10 at the small size, which stops there), on the CPU and
//! every GPU device, for two kinds of ensemble:
//!
//! - `forecast`: ridge on the raw features and on 16 PCA components (affine models: one
//!   stacked product);
//! - `forecast_ae`: autoencoders of the default shape (128-64-16, ReLU) with a ridge on the
//!   latent code (a GPU runs them as chains, one dispatch for the whole ensemble); and
//!   `predict_ae`, the same ensemble's members' predictions alone (encoder and regressor of
//!   every member, without the bands).
//!
//! Models are trained once on the sample series (alphas spread over four decades; the
//! autoencoders one epoch each, seeds apart: their speed does not depend on how well they
//! learned); features are built before the clock starts. Each GPU run is compared with the
//! CPU's predictions.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use forexgpt_core::store::Store;
use forexgpt_device::ComputeDevice;
use forexgpt_protocol::{
    Combine, DeviceRequest, EncoderSpec, FeatureSpec, ModelConfig, NeuralEncoderSpec,
    RegressorSpec, SplitSpec, TargetSpec, Timeframe, TrainRequest, counted,
};

use crate::Workbench;
use crate::bench::BenchCase;
use crate::bench::models::max_rel_diff;
use crate::ensemble::{Ensemble, FeatureSets, combine, weights};
use crate::error::EngineError;
use crate::model::Model;
use crate::progress::{CancelToken, NoProgress};

/// Ensemble sizes of the seed's table: one model, a batch of 10, an ensemble of 50.
pub const ENSEMBLE_SIZES: &[usize] = &[1, 10, 50];
/// Bars in the batched case (a backtest's worth).
pub const BATCH_BARS: usize = 1000;

/// The two kinds of ensemble, by benchmark operation.
pub const ENSEMBLE_KINDS: &[&str] = &["forecast", "forecast_ae"];

/// The operations a kind of ensemble is timed at: the whole forecast (members and bands),
/// and for the autoencoder ensemble its members' predictions alone too.
pub fn kind_operations(kind: &str) -> &'static [&'static str] {
    if kind == "forecast_ae" {
        &["forecast_ae", "predict_ae"]
    } else {
        &["forecast"]
    }
}

fn configs(n: usize, operation: &str) -> Vec<ModelConfig> {
    (0..n)
        .map(|i| ModelConfig {
            encoder: if operation == "forecast_ae" {
                EncoderSpec::Autoencoder {
                    net: NeuralEncoderSpec {
                        epochs: 1,
                        seed: i as u64,
                        ..NeuralEncoderSpec::default()
                    },
                }
            } else if i % 2 == 0 {
                EncoderSpec::None
            } else {
                EncoderSpec::Pca {
                    n_components: 16,
                    whiten: false,
                }
            },
            regressor: RegressorSpec::Ridge {
                alpha: 10f64.powf(-1.0 + 4.0 * i as f64 / n.max(2) as f64),
            },
        })
        .collect()
}

/// Trains `n` models of `operation`'s kind on the sample into `dir` and returns them.
fn trained_models(
    dir: &Path,
    n: usize,
    operation: &str,
) -> Result<(Workbench, Vec<Model>), EngineError> {
    let mut wb = Workbench::with_store(Store::open_in_memory()?)?;
    wb.set_models_dir(dir.to_path_buf());
    let request = TrainRequest {
        symbol: "EURUSD".into(),
        timeframe: Timeframe::H1,
        features: FeatureSpec::default(),
        targets: TargetSpec::default(),
        split: SplitSpec::default(),
        models: configs(n, operation),
        device: DeviceRequest::CPU,
    };
    let report = wb.train(&request, &NoProgress, &CancelToken::new())?;
    let models = report
        .models
        .iter()
        .map(|m| Model::load(Path::new(&m.path)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((wb, models))
}

/// What a case times: with `bands`, the ensemble on `ts` and every row and horizon combined
/// (the whole forecast after the features: the combined returns, row after row); without,
/// the members' predictions alone (model after model).
fn forecast(
    ensemble: &Ensemble,
    features: &FeatureSets,
    ts: &[i64],
    device: &ComputeDevice,
    bands: bool,
) -> Result<Vec<f64>, EngineError> {
    let prediction = ensemble.predict(features, ts, device)?;
    if !bands {
        return Ok(prediction
            .per_model
            .into_iter()
            .flat_map(|m| m.values)
            .collect());
    }
    let mut out = Vec::with_capacity(ts.len() * ensemble.horizons.len());
    let w: Vec<Vec<f64>> = (0..ensemble.horizons.len())
        .map(|j| weights(ensemble, Combine::Mean, j))
        .collect();
    for r in 0..ts.len() {
        for (j, wj) in w.iter().enumerate() {
            let p: Vec<f64> = prediction.per_model.iter().map(|m| m.get(r, j)).collect();
            out.push(combine(ensemble, Combine::Mean, wj, j, &p).point);
        }
    }
    Ok(out)
}

/// For each kind of ensemble (`operations`, of [`ENSEMBLE_KINDS`]): one case per ensemble
/// size (`sizes`, from one bar) and device (CPU first), plus the largest ensemble over
/// `batch_bars` bars.
pub fn forecast_cases(
    devices: &[ComputeDevice],
    scratch: &Path,
    operations: &[&str],
    sizes: &[usize],
    batch_bars: usize,
) -> Result<Vec<BenchCase>, EngineError> {
    let mut cases = Vec::new();
    for &operation in operations {
        let dir = scratch.join(operation);
        cases.extend(kind_cases(devices, &dir, operation, sizes, batch_bars)?);
    }
    Ok(cases)
}

fn kind_cases(
    devices: &[ComputeDevice],
    scratch: &Path,
    operation: &str,
    sizes: &[usize],
    batch_bars: usize,
) -> Result<Vec<BenchCase>, EngineError> {
    let largest = sizes.iter().copied().max().unwrap_or(1);
    let (wb, models) = trained_models(scratch, largest, operation)?;
    let candles = wb.candles("EURUSD", Timeframe::H1)?;
    let cpu = ComputeDevice::cpu("cpu");
    let mut cases = Vec::new();
    let mut shapes: Vec<(usize, usize)> = sizes.iter().map(|&n| (n, 1)).collect();
    shapes.push((largest, batch_bars));
    for (n, bars) in shapes {
        let ensemble = Ensemble::new(models[..n].to_vec())?;
        let features = FeatureSets::build(&ensemble, &candles)?;
        let fm = features.shortest();
        let ts: Vec<i64> = fm.ts[fm.rows() - bars..].to_vec();
        let shared = Arc::new((ensemble, features, ts));
        let size = format!(
            "{}, {}",
            counted(n, "model", "models"),
            counted(bars, "bar", "bars")
        );
        for &op in kind_operations(operation) {
            let bands = op != "predict_ae";
            let (ensemble, features, ts) = &*shared;
            let reference = Arc::new(forecast(ensemble, features, ts, &cpu, bands)?);
            for device in std::iter::once(&cpu).chain(devices.iter().filter(|d| d.is_gpu())) {
                let device = device.clone();
                let shared = Arc::clone(&shared);
                let reference = Arc::clone(&reference);
                let diff = Arc::new(Mutex::new(0.0));
                let diff_out = Arc::clone(&diff);
                cases.push(BenchCase {
                    operation: op.into(),
                    size: size.clone(),
                    device: if device.is_gpu() {
                        device.label().to_string()
                    } else {
                        "cpu".into()
                    },
                    items: n * bars,
                    diff_vs_cpu: device.is_gpu().then_some(diff_out),
                    run: Box::new(move || {
                        let (ensemble, features, ts) = &*shared;
                        let started = Instant::now();
                        let out = forecast(ensemble, features, ts, &device, bands)?;
                        let elapsed = started.elapsed();
                        *diff.lock().unwrap_or_else(|e| e.into_inner()) =
                            max_rel_diff(&out, &reference);
                        Ok(elapsed)
                    }),
                });
            }
        }
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{BenchOptions, run_suite};

    #[test]
    fn forecast_suite_runs_on_the_cpu() {
        let dir = tempfile::tempdir().unwrap();
        let mut cases = forecast_cases(&[], dir.path(), ENSEMBLE_KINDS, &[1, 4], 20).unwrap();
        // Three sizes of each: forecast; forecast_ae, predict_ae.
        assert_eq!(cases.len(), 9);
        let results = run_suite(
            &mut cases,
            BenchOptions { repeats: 1 },
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap()
        .results;
        assert!(results.iter().all(|r| r.median_ms > 0.0));
        assert_eq!(results[2].size, "4 models, 20 bars");
        let ops: Vec<&str> = results.iter().map(|r| r.operation.as_str()).collect();
        assert_eq!(
            ops,
            [
                "forecast",
                "forecast",
                "forecast",
                "forecast_ae",
                "predict_ae",
                "forecast_ae",
                "predict_ae",
                "forecast_ae",
                "predict_ae"
            ]
        );
        assert_eq!(results[8].size, "4 models, 20 bars");
    }
}
