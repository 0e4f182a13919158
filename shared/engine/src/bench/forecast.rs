//! Benchmarks of ensemble inference: 1, 10 and 50 trained models forecasting from one bar, and
//! 50 models over a batch of bars, on the CPU and every GPU device. Models are trained once on
//! the sample series (ridge on the raw features and on 16 PCA components, alphas spread over
//! four decades); features are built before the clock starts. Each GPU run is compared with the
//! CPU's predictions.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use forexgpt_core::store::Store;
use forexgpt_device::ComputeDevice;
use forexgpt_protocol::{
    Combine, DeviceRequest, EncoderSpec, FeatureSpec, ModelConfig, RegressorSpec, SplitSpec,
    TargetSpec, Timeframe, TrainRequest, counted,
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

fn configs(n: usize) -> Vec<ModelConfig> {
    (0..n)
        .map(|i| ModelConfig {
            encoder: if i % 2 == 0 {
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

/// Trains `n` models on the sample into `dir` and returns them.
fn trained_models(dir: &Path, n: usize) -> Result<(Workbench, Vec<Model>), EngineError> {
    let mut wb = Workbench::with_store(Store::open_in_memory()?)?;
    wb.set_models_dir(dir.to_path_buf());
    let request = TrainRequest {
        symbol: "EURUSD".into(),
        timeframe: Timeframe::H1,
        features: FeatureSpec::default(),
        targets: TargetSpec::default(),
        split: SplitSpec::default(),
        models: configs(n),
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

/// Runs the ensemble on `ts` and combines every row and horizon: the whole forecast after the
/// features. Returns the combined returns, row after row.
fn forecast(
    ensemble: &Ensemble,
    features: &FeatureSets,
    ts: &[i64],
    device: &ComputeDevice,
) -> Result<Vec<f64>, EngineError> {
    let prediction = ensemble.predict(features, ts, device)?;
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

/// One case per ensemble size (`sizes`, from one bar) and device (CPU first), plus the
/// largest ensemble over `batch_bars` bars.
pub fn forecast_cases(
    devices: &[ComputeDevice],
    scratch: &Path,
    sizes: &[usize],
    batch_bars: usize,
) -> Result<Vec<BenchCase>, EngineError> {
    let largest = sizes.iter().copied().max().unwrap_or(1);
    let (wb, models) = trained_models(scratch, largest)?;
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
        let reference = Arc::new(forecast(&ensemble, &features, &ts, &cpu)?);
        let shared = Arc::new((ensemble, features, ts));
        let size = format!(
            "{}, {}",
            counted(n, "model", "models"),
            counted(bars, "bar", "bars")
        );
        for device in std::iter::once(None).chain(devices.iter().filter(|d| d.is_gpu()).map(Some)) {
            let device = device.cloned().unwrap_or_else(|| cpu.clone());
            let shared = Arc::clone(&shared);
            let reference = Arc::clone(&reference);
            let diff = Arc::new(Mutex::new(0.0));
            let diff_out = Arc::clone(&diff);
            cases.push(BenchCase {
                operation: "forecast".into(),
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
                    let out = forecast(ensemble, features, ts, &device)?;
                    let elapsed = started.elapsed();
                    *diff.lock().unwrap_or_else(|e| e.into_inner()) =
                        max_rel_diff(&out, &reference);
                    Ok(elapsed)
                }),
            });
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
        let mut cases = forecast_cases(&[], dir.path(), &[1, 4], 20).unwrap();
        assert_eq!(cases.len(), 3);
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
    }
}
