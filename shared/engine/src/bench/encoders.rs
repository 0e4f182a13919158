//! Benchmarks of autoencoder and VAE training: a fixed number of epochs (no early stopping)
//! on data with a known nonlinear low-dimensional structure, on the CPU and on every GPU
//! device. Each device starts from the same weights and sees the same batches, so its final
//! validation loss is compared with the CPU's. `export_encoder_data` writes the data for the
//! PyTorch peer (`bench/peers/encoders_torch.py`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use forexgpt_core::synthetic::SplitMix64;
use forexgpt_device::ComputeDevice;
use forexgpt_protocol::NeuralEncoderSpec;
use forexgpt_regressors::Matrix;
use rayon::prelude::*;

use crate::bench::BenchCase;
use crate::bench::models::{export_peer_files, write_f64};
use crate::error::EngineError;
use crate::neural::{NetworkKind, TrainRun};
use crate::progress::{CancelToken, NoProgress};

/// Latent dimension of the generated data.
pub const MANIFOLD_DIM: usize = 4;
/// Width of the generator's hidden tanh layer.
const GENERATOR_WIDTH: usize = 32;

/// Rows on a curved `MANIFOLD_DIM`-dimensional surface in `cols` dimensions:
/// `x = tanh(z·A)·B + 0.05·noise` with `z` standard normal, then standardized per column, as
/// the scaler leaves real features. PCA needs many components for it; a network with a
/// small bottleneck does not.
pub fn manifold_data(rows: usize, cols: usize, seed: u64) -> Matrix {
    let mut rng = SplitMix64::new(seed);
    // z·A has unit variance: tanh bends it without saturating into ±1 (which would turn the
    // surface into thousands of clusters, as high-dimensional as the generator's width).
    let a: Vec<f64> = (0..MANIFOLD_DIM * GENERATOR_WIDTH)
        .map(|_| rng.normal() / (MANIFOLD_DIM as f64).sqrt())
        .collect();
    let b: Vec<f64> = (0..GENERATOR_WIDTH * cols)
        .map(|_| rng.normal() / (GENERATOR_WIDTH as f64).sqrt())
        .collect();
    let mut values = vec![0.0; rows * cols];
    values
        .par_chunks_mut(cols)
        .enumerate()
        .for_each(|(r, row)| {
            let mut rng = SplitMix64::new(seed ^ (r as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A));
            let z: Vec<f64> = (0..MANIFOLD_DIM).map(|_| rng.normal()).collect();
            let h: Vec<f64> = (0..GENERATOR_WIDTH)
                .map(|j| {
                    (0..MANIFOLD_DIM)
                        .map(|i| z[i] * a[i * GENERATOR_WIDTH + j])
                        .sum::<f64>()
                        .tanh()
                })
                .collect();
            for (c, v) in row.iter_mut().enumerate() {
                *v = (0..GENERATOR_WIDTH)
                    .map(|j| h[j] * b[j * cols + c])
                    .sum::<f64>()
                    + 0.05 * rng.normal();
            }
        });
    standardize(&mut values, cols);
    Matrix { rows, cols, values }
}

fn standardize(values: &mut [f64], cols: usize) {
    let rows = values.len() / cols;
    for c in 0..cols {
        let mean = (0..rows).map(|r| values[r * cols + c]).sum::<f64>() / rows as f64;
        let var = (0..rows)
            .map(|r| (values[r * cols + c] - mean).powi(2))
            .sum::<f64>()
            / rows as f64;
        let scale = if var > 0.0 { var.sqrt() } else { 1.0 };
        for r in 0..rows {
            values[r * cols + c] = (values[r * cols + c] - mean) / scale;
        }
    }
}

/// The network every benchmark row trains: the defaults (128-64-16, ReLU, batch 64,
/// Adam 1e-3) for `epochs` epochs without early stopping.
pub fn bench_network(epochs: usize) -> NeuralEncoderSpec {
    NeuralEncoderSpec {
        epochs,
        patience: None,
        ..NeuralEncoderSpec::default()
    }
}

/// The benchmarked kinds and their names in results, with the dropout they train with.
pub const KINDS: [(&str, NetworkKind, f64); 3] = [
    ("autoencoder_fit", NetworkKind::Autoencoder, 0.0),
    (
        "vae_fit",
        NetworkKind::Vae {
            kl_weight: 1.0,
            warmup_epochs: 10,
        },
        0.0,
    ),
    // The benchmark network with dropout after each hidden layer: masks drawn by burn's
    // generator on the CPU and hashed in the fused kernels on a GPU, so the final losses are
    // alike, not equal.
    ("autoencoder_dropout_fit", NetworkKind::Autoencoder, DROPOUT),
];

/// The dropout of the `autoencoder_dropout_fit` row.
pub const DROPOUT: f64 = 0.2;

/// Training and validation rows of one generated surface (one seed), split in that order.
pub fn manifold_split(train: usize, validation: usize, cols: usize, seed: u64) -> (Matrix, Matrix) {
    let mut all = manifold_data(train + validation, cols, seed);
    let rest = all.values.split_off(train * cols);
    all.rows = train;
    let validation = Matrix {
        rows: validation,
        cols,
        values: rest,
    };
    (all, validation)
}

/// Training and validation rows (a fifth as many) of the benchmark.
pub fn encoder_data(rows: usize, cols: usize) -> (Matrix, Matrix) {
    manifold_split(rows, (rows / 5).max(1), cols, 11)
}

/// One case per kind and device: the CPU first (burn), then each GPU device (the fused
/// kernels), compared by final validation loss (`autoencoder_fit`, `vae_fit`,
/// `autoencoder_dropout_fit`); and a grid of [`GRID`] autoencoders trained together
/// (`autoencoder_grid_fit`). Where `devices` leaves the CPU out (`FOREXGPT_TEST_DEVICES`),
/// so do the cases, and the GPUs' rows have no difference to show.
pub fn encoder_cases(
    rows: usize,
    cols: usize,
    epochs: usize,
    devices: &[ComputeDevice],
    export: Option<&Path>,
) -> Result<Vec<BenchCase>, EngineError> {
    let data = Arc::new(encoder_data(rows, cols));
    if let Some(dir) = export {
        export_encoder_data(dir, &data.0, &data.1, epochs)?;
    }
    let plain = bench_network(epochs);
    let export = export.map(Path::to_path_buf);
    let cpu = ComputeDevice::cpu("cpu");
    let with_cpu = devices.iter().any(|d| !d.is_gpu());
    let mut cases = Vec::new();
    for (operation, kind, dropout) in KINDS {
        let spec = Arc::new(NeuralEncoderSpec {
            dropout,
            ..plain.clone()
        });
        let reference: Arc<Mutex<Option<f64>>> = Arc::new(Mutex::new(None));
        let mut runs: Vec<ComputeDevice> = with_cpu.then(|| cpu.clone()).into_iter().collect();
        runs.extend(devices.iter().filter(|d| d.is_gpu()).cloned());
        for device in runs {
            let (data, spec, reference) = (data.clone(), spec.clone(), reference.clone());
            let export = export.clone();
            let diff = Arc::new(Mutex::new(0.0));
            let diff_out = (device.is_gpu() && with_cpu).then(|| diff.clone());
            cases.push(BenchCase {
                operation: operation.to_string(),
                size: format!("{rows}×{cols}, {epochs} epochs"),
                device: if device.is_gpu() {
                    device.label().to_string()
                } else {
                    "cpu".into()
                },
                items: rows * epochs,
                diff_vs_cpu: diff_out,
                run: Box::new(move || {
                    let cancel = CancelToken::new();
                    let run = TrainRun {
                        kind,
                        spec: &spec,
                        train: &data.0,
                        validation: &data.1,
                        label: operation.to_string(),
                        progress: &NoProgress,
                        cancel: &cancel,
                    };
                    let started = Instant::now();
                    let trained = run.fit_on(&device)?;
                    let elapsed = started.elapsed();
                    let loss = trained
                        .history
                        .last()
                        .map_or(f64::NAN, |e| e.validation_loss);
                    let mut reference = reference.lock().unwrap_or_else(|e| e.into_inner());
                    match *reference {
                        Some(cpu_loss) if device.is_gpu() => {
                            *diff.lock().unwrap_or_else(|e| e.into_inner()) =
                                (loss - cpu_loss).abs() / cpu_loss.abs().max(f64::MIN_POSITIVE);
                        }
                        // No CPU run to compare with.
                        None if device.is_gpu() => {}
                        _ => {
                            *reference = Some(loss);
                            if let Some(dir) = &export {
                                write_f64(&dir.join(format!("ours_cpu_{operation}.f64")), &[loss])?;
                            }
                        }
                    }
                    Ok(elapsed)
                }),
            });
        }
        if operation == "autoencoder_fit" {
            for device in devices.iter().filter(|d| d.is_gpu()) {
                cases.push(grid_case(
                    &data,
                    &spec,
                    device,
                    with_cpu.then(|| reference.clone()),
                    GRID,
                )?);
            }
        }
    }
    Ok(cases)
}

/// Networks in the grid case: the benchmark network with seeds 42, 43, ….
pub const GRID: usize = 16;

/// `grid` autoencoders of the benchmark shape (seeds 42, 43, …) trained together on a GPU by
/// the fused kernels. The first network's seed is the single case's, so its final validation
/// loss is compared with the CPU's (`reference`, where the CPU runs).
fn grid_case(
    data: &Arc<(Matrix, Matrix)>,
    spec: &Arc<NeuralEncoderSpec>,
    device: &ComputeDevice,
    reference: Option<Arc<Mutex<Option<f64>>>>,
    grid: usize,
) -> Result<BenchCase, EngineError> {
    let (data, device) = (data.clone(), device.clone());
    let specs: Vec<NeuralEncoderSpec> = (0..grid)
        .map(|k| NeuralEncoderSpec {
            seed: spec.seed + k as u64,
            ..(**spec).clone()
        })
        .collect();
    let (rows, cols) = (data.0.rows, data.0.cols);
    let diff = Arc::new(Mutex::new(0.0));
    Ok(BenchCase {
        operation: "autoencoder_grid_fit".into(),
        size: format!("{grid} networks, {rows}×{cols}, {} epochs", spec.epochs),
        device: device.label().to_string(),
        items: rows * spec.epochs * grid,
        diff_vs_cpu: reference.is_some().then(|| diff.clone()),
        run: Box::new(move || {
            let cancel = CancelToken::new();
            let runs: Vec<TrainRun<'_>> = specs
                .iter()
                .map(|spec| TrainRun {
                    kind: NetworkKind::Autoencoder,
                    spec,
                    train: &data.0,
                    validation: &data.1,
                    label: format!("autoencoder seed {}", spec.seed),
                    progress: &NoProgress,
                    cancel: &cancel,
                })
                .collect();
            let started = Instant::now();
            let trained = crate::fused::train_together(&runs.iter().collect::<Vec<_>>(), &device)?;
            let elapsed = started.elapsed();
            let loss = trained[0]
                .history
                .last()
                .map_or(f64::NAN, |e| e.validation_loss);
            let cpu_loss = reference
                .as_ref()
                .and_then(|r| *r.lock().unwrap_or_else(|e| e.into_inner()));
            if let Some(cpu_loss) = cpu_loss {
                *diff.lock().unwrap_or_else(|e| e.into_inner()) =
                    (loss - cpu_loss).abs() / cpu_loss.abs().max(f64::MIN_POSITIVE);
            }
            Ok(elapsed)
        }),
    })
}

/// Writes `encoder_train.f64`, `encoder_validation.f64` and `encoder_meta.json` for the
/// PyTorch peer (the CPU cases add `ours_cpu_<operation>.f64`: their final validation loss).
pub fn export_encoder_data(
    dir: &Path,
    train: &Matrix,
    validation: &Matrix,
    epochs: usize,
) -> Result<(), EngineError> {
    let net = bench_network(epochs);
    let meta = serde_json::json!({
        "rows": train.rows, "validation_rows": validation.rows, "cols": train.cols,
        "hidden": net.hidden, "latent": net.latent, "epochs": net.epochs,
        "batch_size": net.batch_size, "learning_rate": net.learning_rate,
        "kl_weight": 1.0, "kl_warmup_epochs": 10,
    });
    export_peer_files(
        dir,
        &[
            ("encoder_train.f64", &train.values),
            ("encoder_validation.f64", &validation.values),
        ],
        "encoder_meta.json",
        &meta,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU's cases (the reference) run only where the devices named include the CPU:
    /// `FOREXGPT_TEST_DEVICES=cuda` times the GPU's alone (the CPU took 15 s of each 100-epoch
    /// call on the GPU machine). Without a GPU in the list there are no GPU cases either.
    #[test]
    fn the_cpu_cases_follow_the_devices_named() {
        let operations = |devices: &[ComputeDevice]| -> Vec<(String, String)> {
            encoder_cases(40, 4, 1, devices, None)
                .unwrap()
                .into_iter()
                .map(|c| (c.operation, c.device))
                .collect()
        };
        let with_cpu = operations(&[ComputeDevice::cpu("cpu")]);
        assert_eq!(with_cpu.len(), KINDS.len(), "{with_cpu:?}");
        assert!(with_cpu.iter().all(|(_, device)| device == "cpu"));
        assert_eq!(operations(&[]), Vec::new());
    }
}
