//! Autoencoder and VAE training in the engine: what the networks learn (against PCA on a
//! curved surface), the VAE's posterior, agreement between devices, reproducibility, and
//! training through `Workbench::train` (cancellation, model files, ensembles).
#![allow(clippy::unwrap_used)]

mod common;

use forexgpt_device::ComputeDevice;
use forexgpt_device::testing::for_each_device;
use forexgpt_engine::bench::encoders::{MANIFOLD_DIM, manifold_split};
use forexgpt_engine::fused::train_together;
use forexgpt_engine::model::Model;
use forexgpt_engine::neural::{NetworkKind, NeuralEncoder, TrainRun};
use forexgpt_engine::{CancelToken, EngineError, NoProgress};
use forexgpt_protocol::{
    Activation, BackendKind, Combine, DevicePreference, DeviceRequest, EncoderSpec,
    ForecastRequest, ModelConfig, ModelSelection, NeuralEncoderSpec, RegressorSpec, Stage,
    TrainRequest,
};
use forexgpt_regressors::{Matrix, Pca};

use common::{CancelAt, train_request, workbench};

const VAE: NetworkKind = NetworkKind::Vae {
    kl_weight: 1.0,
    warmup_epochs: 10,
};

fn net(epochs: usize, latent: usize) -> NeuralEncoderSpec {
    NeuralEncoderSpec {
        hidden: vec![64, 32],
        latent,
        epochs,
        patience: None,
        ..NeuralEncoderSpec::default()
    }
}

fn train(
    kind: NetworkKind,
    spec: &NeuralEncoderSpec,
    x: &Matrix,
    v: &Matrix,
    device: &ComputeDevice,
) -> NeuralEncoder {
    let cancel = CancelToken::new();
    TrainRun {
        kind,
        spec,
        train: x,
        validation: v,
        label: "test".into(),
        progress: &NoProgress,
        cancel: &cancel,
    }
    .fit_on(device)
    .unwrap()
}

fn cpu() -> ComputeDevice {
    ComputeDevice::cpu("cpu")
}

/// Mean squared error of PCA's reconstruction of `v` with `k` components fitted on `x`.
fn pca_reconstruction_mse(x: &Matrix, v: &Matrix, k: usize) -> f64 {
    let pca = Pca::params(k).check().unwrap().fit(x, None).unwrap();
    let z = pca.transform(v).unwrap();
    let d = v.cols;
    let mut sse = 0.0;
    for r in 0..v.rows {
        for c in 0..d {
            let back: f64 = (0..k)
                .map(|j| z.get(r, j) * pca.components.get(j, c))
                .sum::<f64>()
                + pca.mean[c];
            sse += (back - v.get(r, c)).powi(2);
        }
    }
    sse / (v.rows * d) as f64
}

#[test]
fn the_autoencoder_learns_a_curved_surface_better_than_pca_of_the_same_size() {
    let (x, v) = manifold_split(3_000, 600, 24, 1);
    let ae = train(
        NetworkKind::Autoencoder,
        &net(40, MANIFOLD_DIM),
        &x,
        &v,
        &cpu(),
    );
    let history = &ae.history;
    assert_eq!(history.len(), 40);
    let (first, last) = (history[0], history[history.len() - 1]);
    assert!(
        last.train_loss < 0.3 * first.train_loss,
        "the loss fell only from {} to {}",
        first.train_loss,
        last.train_loss
    );
    let pca = pca_reconstruction_mse(&x, &v, MANIFOLD_DIM);
    let best = history[ae.best_epoch - 1].validation_loss;
    eprintln!("validation MSE: autoencoder {best:.4}, PCA {pca:.4}");
    assert!(
        best < 0.7 * pca,
        "autoencoder {best} is not clearly better than PCA {pca}"
    );
}

#[test]
fn the_vae_keeps_an_informative_posterior_at_default_settings() {
    let (x, v) = manifold_split(3_000, 600, 24, 3);
    let spec = net(30, 8);
    let vae = train(VAE, &spec, &x, &v, &cpu());
    let mu = vae.encode(VAE, &v, &cpu()).unwrap();
    // Active units (Burda et al.): latent dimensions whose posterior mean varies over rows.
    let active = (0..mu.cols)
        .filter(|&j| {
            let col: Vec<f64> = (0..mu.rows).map(|r| mu.get(r, j)).collect();
            let mean = col.iter().sum::<f64>() / col.len() as f64;
            col.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / col.len() as f64 > 0.01
        })
        .count();
    assert!(
        active >= MANIFOLD_DIM - 1,
        "only {active} of {} latent dimensions are used",
        mu.cols
    );
    // The reconstruction beats the mean (MSE 1 on standardized data) by far.
    let last = vae.history.last().unwrap();
    assert!(last.validation_loss < 0.5 * 24.0 * 0.5, "{last:?}");
}

/// A network with dropout trains on every GPU by the fused kernels (their hashed masks are
/// checked step by step against a float64 reference in `forexgpt-kernels`): finite losses
/// that fall, other than without dropout (the masks apply), and a validation loss near what
/// burn reaches on the CPU with its own masks.
#[test]
fn networks_with_dropout_train_on_every_gpu() {
    let (x, v) = manifold_split(512, 128, 12, 5);
    let spec = NeuralEncoderSpec {
        hidden: vec![32, 16],
        latent: 4,
        activation: Activation::Tanh,
        epochs: 8,
        patience: None,
        dropout: 0.2,
        ..NeuralEncoderSpec::default()
    };
    let gpus = test_gpus();
    if gpus.is_empty() {
        return;
    }
    let without = NeuralEncoderSpec {
        dropout: 0.0,
        ..spec.clone()
    };
    let burn = train(NetworkKind::Autoencoder, &spec, &x, &v, &cpu());
    let last = |e: &NeuralEncoder| e.history.last().unwrap().validation_loss;
    for device in &gpus {
        let with = train(NetworkKind::Autoencoder, &spec, &x, &v, device);
        let plain = train(NetworkKind::Autoencoder, &without, &x, &v, device);
        let what = device.label();
        assert_eq!(with.history.len(), 8, "{what}");
        assert!(
            with.history
                .iter()
                .all(|e| e.train_loss.is_finite() && e.validation_loss.is_finite()),
            "{what}: {:?}",
            with.history
        );
        assert!(
            with.history[7].train_loss < with.history[0].train_loss,
            "{what}: {:?}",
            with.history
        );
        assert_ne!(
            with.history[0].train_loss, plain.history[0].train_loss,
            "{what}"
        );
        let (p, q) = (last(&with), last(&burn));
        eprintln!(
            "{what}: validation loss with dropout 0.2 after 8 epochs: fused {p:.5}, burn {q:.5}"
        );
        assert!((p - q).abs() <= 0.3 * q, "{what}: {p} vs burn's {q}");
    }
}

#[test]
fn every_device_gives_the_cpus_losses_for_the_first_epochs() {
    let (x, v) = manifold_split(512, 128, 12, 5);
    let spec = NeuralEncoderSpec {
        hidden: vec![32, 16],
        latent: 4,
        epochs: 3,
        patience: None,
        ..NeuralEncoderSpec::default()
    };
    for kind in [NetworkKind::Autoencoder, VAE] {
        let reference = train(kind, &spec, &x, &v, &cpu());
        for_each_device(|device| {
            let got = train(kind, &spec, &x, &v, device);
            for (a, b) in got.history.iter().zip(&reference.history) {
                for (p, q) in [
                    (a.train_loss, b.train_loss),
                    (a.validation_loss, b.validation_loss),
                ] {
                    // float32 on both; three epochs of Adam from the same start.
                    assert!(
                        (p - q).abs() <= 1e-4 * q.abs(),
                        "{kind:?} on {}: epoch {} loss {p} vs the CPU's {q}",
                        device.label(),
                        a.epoch
                    );
                }
            }
        });
    }
}

/// The GPUs among the test devices; says loudly when there is none.
fn test_gpus() -> Vec<ComputeDevice> {
    let mut gpus = Vec::new();
    for_each_device(|device| {
        if device.is_gpu() {
            gpus.push(device.clone());
        }
    });
    if gpus.is_empty() {
        eprintln!("SKIPPED: no GPU on this machine; the fused kernels were not compared with burn");
    }
    gpus
}

/// The fused kernels on each GPU against burn's path (on the CPU, where burn runs), from the
/// same weights, batches and (VAE) noise. GELU is left out here: burn differentiates its
/// exact GELU with the tanh approximation's derivative, while the kernels use the exact one (as PyTorch does); the
/// kernels' own test checks GELU against a float64 reference.
#[test]
fn the_fused_kernels_train_as_burns_path_does_on_every_gpu() {
    // 640 rows in batches of 64: one epoch is 10 Adam steps.
    let (x, v) = manifold_split(640, 128, 12, 9);
    let gpus = test_gpus();
    if gpus.is_empty() {
        return;
    }
    let vae = NetworkKind::Vae {
        kl_weight: 1.0,
        warmup_epochs: 3,
    };
    for (kind, activation) in [
        (NetworkKind::Autoencoder, Activation::Relu),
        (NetworkKind::Autoencoder, Activation::LeakyRelu),
        (NetworkKind::Autoencoder, Activation::Tanh),
        (vae, Activation::Relu),
        (vae, Activation::Tanh),
    ] {
        let spec = NeuralEncoderSpec {
            hidden: vec![32, 16],
            latent: 4,
            activation,
            epochs: 1,
            patience: None,
            ..NeuralEncoderSpec::default()
        };
        let burn = train(kind, &spec, &x, &v, &cpu());
        let long = NeuralEncoderSpec {
            epochs: 100,
            ..spec.clone()
        };
        // burn's long run only where it is compared (not for ReLU, below).
        let burn_long =
            (activation != Activation::Relu).then(|| train(kind, &long, &x, &v, &cpu()));
        for device in &gpus {
            let what = format!("{kind:?} {activation:?} on {}", device.label());
            let fused = train(kind, &spec, &x, &v, device);
            // After 10 Adam steps, layer by layer: the largest difference relative to the
            // layer's largest weight (float32 on both paths).
            for (l, (a, b)) in fused
                .weights
                .layers
                .iter()
                .zip(&burn.weights.layers)
                .enumerate()
            {
                let scale = b.weight.iter().fold(0f32, |m, w| m.max(w.abs()));
                let worst = a
                    .weight
                    .iter()
                    .zip(&b.weight)
                    .chain(a.bias.iter().zip(&b.bias))
                    .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
                assert!(
                    worst <= 1e-5 * scale,
                    "{what}: layer {l} differs from burn's by {worst} (largest weight {scale})"
                );
            }
            let (p, q) = (fused.history[0], burn.history[0]);
            for (a, b) in [
                (p.train_loss, q.train_loss),
                (p.validation_loss, q.validation_loss),
            ] {
                assert!((a - b).abs() <= 1e-5 * b.abs(), "{what}: {p:?} vs {q:?}");
            }

            // 100 epochs (1,000 steps): the validation loss within 1 % of burn's. Not for
            // ReLU: at its kink, rounding differences switch units on and off and the two
            // runs drift apart chaotically (measured on the autoencoder: 1e-7 after one
            // epoch, 1e-3 by epoch 40, 2.7 % at epoch 100 on this data; burn on the CPU and
            // on wgpu agreed exactly when burn ran there).
            let Some(burn) = &burn_long else {
                continue;
            };
            let fused = train(kind, &long, &x, &v, device);
            let last = |e: &NeuralEncoder| e.history.last().unwrap().validation_loss;
            let (p, q) = (last(&fused), last(burn));
            eprintln!("{what}: validation loss after 100 epochs: fused {p:.6}, burn {q:.6}");
            assert!((p - q).abs() <= 0.01 * q.abs(), "{what}: {p} vs burn's {q}");
        }
    }
}

#[test]
fn networks_trained_together_on_a_gpu_get_what_each_gets_alone() {
    let (x, v) = manifold_split(300, 60, 8, 13);
    let base = NeuralEncoderSpec {
        hidden: vec![16],
        latent: 3,
        learning_rate: 0.02,
        patience: None,
        ..NeuralEncoderSpec::default()
    };
    // Different seeds, lengths and early stopping: networks leave the launches at different
    // epochs.
    let specs = [
        NeuralEncoderSpec {
            seed: 1,
            epochs: 6,
            ..base.clone()
        },
        NeuralEncoderSpec {
            seed: 2,
            epochs: 3,
            ..base.clone()
        },
        NeuralEncoderSpec {
            seed: 3,
            epochs: 40,
            patience: Some(1),
            ..base.clone()
        },
    ];
    let cancel = CancelToken::new();
    for device in test_gpus() {
        let runs: Vec<TrainRun<'_>> = specs
            .iter()
            .map(|spec| TrainRun {
                kind: NetworkKind::Autoencoder,
                spec,
                train: &x,
                validation: &v,
                label: format!("seed {}", spec.seed),
                progress: &NoProgress,
                cancel: &cancel,
            })
            .collect();
        let together = train_together(&runs.iter().collect::<Vec<_>>(), &device).unwrap();
        let losses = |e: &NeuralEncoder| -> Vec<(f64, f64)> {
            e.history
                .iter()
                .map(|p| (p.train_loss, p.validation_loss))
                .collect()
        };
        for (k, spec) in specs.iter().enumerate() {
            let alone = train(NetworkKind::Autoencoder, spec, &x, &v, &device);
            assert_eq!(
                together[k].weights,
                alone.weights,
                "{}: seed {}",
                device.label(),
                spec.seed
            );
            assert_eq!(together[k].best_epoch, alone.best_epoch);
            assert_eq!(losses(&together[k]), losses(&alone));
        }
        assert_eq!(together[1].history.len(), 3);
        assert!(
            together[2].history.len() < 40,
            "patience 1 stopped the third network early"
        );
    }
}

/// On a GPU the best epoch's weights stay on the device while training goes on, and are read
/// back once at the end: a network stopped early by its patience ends with exactly the
/// weights of the same network trained for its best epoch's number of epochs.
#[test]
fn early_stopping_on_a_gpu_returns_the_best_epochs_weights() {
    let (x, v) = manifold_split(300, 60, 8, 13);
    let spec = NeuralEncoderSpec {
        hidden: vec![16],
        latent: 3,
        learning_rate: 0.05,
        epochs: 40,
        patience: Some(2),
        seed: 5,
        ..NeuralEncoderSpec::default()
    };
    for device in test_gpus() {
        let stopped = train(NetworkKind::Autoencoder, &spec, &x, &v, &device);
        assert!(
            stopped.history.len() > stopped.best_epoch,
            "{}: the case must train past its best epoch (best {}, trained {})",
            device.label(),
            stopped.best_epoch,
            stopped.history.len()
        );
        let until_best = NeuralEncoderSpec {
            epochs: stopped.best_epoch,
            patience: None,
            ..spec.clone()
        };
        let alone = train(NetworkKind::Autoencoder, &until_best, &x, &v, &device);
        assert_eq!(stopped.weights, alone.weights, "{}", device.label());
        assert_eq!(alone.best_epoch, stopped.best_epoch);
    }
}

#[test]
fn the_same_seed_trains_the_same_network_and_early_stopping_keeps_the_best_epoch() {
    let (x, v) = manifold_split(400, 100, 8, 7);
    let spec = NeuralEncoderSpec {
        hidden: vec![16],
        latent: 2,
        epochs: 60,
        patience: Some(3),
        learning_rate: 0.02,
        ..NeuralEncoderSpec::default()
    };
    let a = train(NetworkKind::Autoencoder, &spec, &x, &v, &cpu());
    let b = train(NetworkKind::Autoencoder, &spec, &x, &v, &cpu());
    assert_eq!(a.weights, b.weights);
    let losses = |e: &NeuralEncoder| -> Vec<(f64, f64)> {
        e.history
            .iter()
            .map(|p| (p.train_loss, p.validation_loss))
            .collect()
    };
    assert_eq!(losses(&a), losses(&b));
    let best = a.history[a.best_epoch - 1].validation_loss;
    assert!(a.history.iter().all(|e| e.validation_loss >= best));
    if a.history.len() < spec.epochs {
        assert_eq!(
            a.history.len(),
            a.best_epoch + 3,
            "stopped 3 epochs after the best"
        );
    }
    let other = train(
        NetworkKind::Autoencoder,
        &NeuralEncoderSpec { seed: 7, ..spec },
        &x,
        &v,
        &cpu(),
    );
    assert_ne!(a.weights, other.weights);
}

fn request(encoders: &[EncoderSpec]) -> TrainRequest {
    train_request(
        encoders
            .iter()
            .map(|e| ModelConfig {
                encoder: e.clone(),
                regressor: RegressorSpec::Ridge { alpha: 1.0 },
            })
            .collect(),
    )
}

fn small_net() -> NeuralEncoderSpec {
    NeuralEncoderSpec {
        hidden: vec![32],
        latent: 6,
        epochs: 4,
        ..NeuralEncoderSpec::default()
    }
}

#[test]
fn a_cancelled_encoder_training_keeps_no_model_and_reports_epochs_until_then() {
    let dir = tempfile::tempdir().unwrap();
    let wb = workbench(dir.path());
    let sink = CancelAt::new(Stage::Encoder, 2);
    let encoders = [
        EncoderSpec::None,
        EncoderSpec::Autoencoder { net: small_net() },
    ];
    let err = wb
        .train(&request(&encoders), &sink, &sink.cancel)
        .unwrap_err();
    assert!(matches!(err, EngineError::Cancelled), "{err}");
    assert!(wb.list_models().unwrap().0.is_empty());
    let epochs = sink.events.lock().unwrap();
    assert_eq!(epochs.len(), 2);
    let first = epochs[0].epoch.unwrap();
    assert_eq!((first.epoch, first.epochs), (1, 4));
    assert!(first.train_loss > 0.0 && first.validation_loss > 0.0 && first.samples_per_s > 0.0);
}

#[test]
fn neural_models_save_load_and_forecast_beside_linear_ones() {
    let dir = tempfile::tempdir().unwrap();
    let wb = workbench(dir.path());
    let encoders = [
        EncoderSpec::None,
        EncoderSpec::Autoencoder { net: small_net() },
        EncoderSpec::vae(small_net()),
    ];
    let report = wb
        .train(&request(&encoders), &NoProgress, &CancelToken::new())
        .unwrap();
    assert_eq!(report.models.len(), 3);
    let ae = Model::load(std::path::Path::new(&report.models[1].path)).unwrap();
    assert_eq!(ae.info.encoder.label(), "ae6");
    assert!(ae.affine().unwrap().is_none());
    let (_, network) = ae.state.encoder.network().unwrap();
    assert_eq!(network.history.len(), 4);
    // A file whose weights do not fit its network is refused at load time.
    let mut broken = ae.clone();
    if let forexgpt_engine::model::EncoderState::Autoencoder(e) = &mut broken.state.encoder {
        e.weights.layers.pop();
    }
    broken.info.id = "broken".into();
    let path = broken.save(&dir.path().join("models")).unwrap();
    let err = Model::load(&path).unwrap_err();
    assert!(err.to_string().contains("layers"), "{err}");
    std::fs::remove_file(path).unwrap();

    let forecast = wb
        .forecast(&ForecastRequest {
            selection: ModelSelection {
                ids: report.models.iter().map(|m| m.info.id.clone()).collect(),
                symbol: None,
                timeframe: None,
                combine: Combine::Mean,
                device: DeviceRequest::CPU,
            },
            at_ts: None,
        })
        .unwrap();
    assert_eq!(forecast.models.len(), 3);
    for h in &forecast.horizons {
        assert!(h.q05 <= h.q50 && h.q50 <= h.q95, "{h:?}");
        assert!(h.price.is_finite());
    }
}

#[test]
fn an_ensemble_of_seeds_trains_together_on_a_gpu_as_each_network_would_alone() {
    if !test_gpus().iter().any(|d| d.backend() == BackendKind::Wgpu) {
        eprintln!("SKIPPED: no wgpu adapter; the grouped training path was not run");
        return;
    }
    let net = |seed: u64| EncoderSpec::Autoencoder {
        net: NeuralEncoderSpec {
            seed,
            ..small_net()
        },
    };
    let on_wgpu = |mut r: TrainRequest| {
        r.device = DeviceRequest::exactly(DevicePreference::Wgpu(None));
        r
    };
    let dir = tempfile::tempdir().unwrap();
    let wb = workbench(dir.path());
    let together = wb
        .train(
            &on_wgpu(request(&[net(42), net(43), net(44)])),
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
    let ids: Vec<&str> = together.models.iter().map(|m| m.info.id.as_str()).collect();
    for label in ["-ae6-", "-ae6s43-", "-ae6s44-"] {
        assert!(
            ids.iter().any(|id| id.contains(label)),
            "{label} in {ids:?}"
        );
    }
    for m in &together.models {
        assert_eq!(m.info.device.backend, BackendKind::Wgpu, "{}", m.info.id);
    }
    let alone = wb
        .train(
            &on_wgpu(request(&[net(43)])),
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
    let metrics =
        |m: &forexgpt_protocol::StoredModel| serde_json::to_string(&m.info.metrics).unwrap();
    assert_eq!(metrics(&together.models[1]), metrics(&alone.models[0]));
}

/// An ensemble of encoder models: on a GPU, every autoencoder/VAE model with a linear
/// regressor of one shape runs in one dispatch of the forward kernel; on every device the
/// ensemble gives what each model gives alone on the CPU (float64).
#[test]
fn an_ensemble_of_encoder_models_runs_one_dispatch_per_shape_as_each_model_alone() {
    let dir = tempfile::tempdir().unwrap();
    let wb = workbench(dir.path());
    let spec = |seed: u64, hidden: Vec<usize>, activation: Activation| NeuralEncoderSpec {
        hidden,
        latent: 4,
        epochs: 2,
        seed,
        activation,
        ..NeuralEncoderSpec::default()
    };
    let model = |encoder: EncoderSpec, regressor: RegressorSpec| ModelConfig { encoder, regressor };
    let ridge = RegressorSpec::Ridge { alpha: 1.0 };
    let lasso = RegressorSpec::Lasso {
        alpha: 1e-5,
        max_iter: 1000,
        tol: 1e-4,
    };
    let forest = RegressorSpec::RandomForest(forexgpt_protocol::ForestSpec {
        n_estimators: 3,
        max_depth: Some(4),
        ..Default::default()
    });
    let ae = |seed, hidden, activation| EncoderSpec::Autoencoder {
        net: spec(seed, hidden, activation),
    };
    let configs = vec![
        model(EncoderSpec::None, ridge.clone()),
        model(ae(1, vec![24], Activation::Relu), ridge.clone()),
        model(ae(2, vec![24], Activation::Relu), lasso),
        model(
            EncoderSpec::vae(spec(3, vec![24], Activation::Relu)),
            ridge.clone(),
        ),
        model(ae(4, vec![16, 8], Activation::Tanh), ridge),
        model(ae(5, vec![24], Activation::Relu), forest),
    ];
    let report = wb
        .train(&train_request(configs), &NoProgress, &CancelToken::new())
        .unwrap();
    let models: Vec<Model> = report
        .models
        .iter()
        .map(|m| wb.load_model(&m.info.id).unwrap())
        .collect();
    let ensemble = forexgpt_engine::ensemble::Ensemble::new(models.clone()).unwrap();
    // The ReLU 24-wide networks (autoencoders and the VAE) together, the tanh one alone;
    // the raw-feature ridge is affine and the forest is not a chain.
    assert_eq!(ensemble.chained(), vec![vec![1, 2, 3], vec![4]]);
    let candles = wb
        .candles("EURUSD", forexgpt_protocol::Timeframe::H1)
        .unwrap();
    let features = forexgpt_engine::ensemble::FeatureSets::build(&ensemble, &candles).unwrap();
    let fm = features.shortest();
    let n = 40;
    let d = fm.n_columns();
    let ts: Vec<i64> = fm.ts[fm.rows() - n..].to_vec();
    let raw = Matrix::new(n, d, fm.values[(fm.rows() - n) * d..].to_vec()).unwrap();
    let expected: Vec<Matrix> = models.iter().map(|m| m.predict(&raw).unwrap()).collect();
    for_each_device(|device| {
        let got = ensemble.predict(&features, &ts, device).unwrap();
        // Our kernel sums in f32 (no tensor cores); the forest's encoder runs through burn,
        // whose CUDA products use TF32.
        let tol = match device.backend() {
            BackendKind::Cpu => 1e-12,
            BackendKind::Wgpu => 1e-4,
            BackendKind::Cuda => 3e-3,
        };
        for (k, (g, e)) in got.per_model.iter().zip(&expected).enumerate() {
            let scale = e.values.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let worst = g
                .values
                .iter()
                .zip(&e.values)
                .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
            assert_eq!(g.values.len(), e.values.len());
            assert!(
                worst <= tol * scale,
                "{}: model {k}: worst {worst:e} vs scale {scale:e}",
                device.label()
            );
        }
    });
}
