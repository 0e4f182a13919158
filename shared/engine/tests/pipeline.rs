//! Train → save → load → forecast → backtest on the sample series, corrupt model files, and the
//! batched ensemble against model-by-model prediction on every device.
#![allow(clippy::unwrap_used)]

mod common;

use forexgpt_device::testing::for_each_device;
use forexgpt_engine::artifact::ArtifactError;
use forexgpt_engine::ensemble::{Ensemble, FeatureSets};
use forexgpt_engine::model::Model;
use forexgpt_engine::{CancelToken, EngineError, NoProgress};
use forexgpt_protocol::{
    BacktestRequest, Combine, DeviceRequest, EncoderSpec, ForecastRequest, ModelConfig,
    RegressorSpec, Timeframe,
};
use forexgpt_regressors::Matrix;

use common::{selection, train_request, workbench};

fn grid() -> Vec<ModelConfig> {
    let pca = EncoderSpec::Pca {
        n_components: 8,
        whiten: false,
    };
    vec![
        ModelConfig {
            encoder: EncoderSpec::None,
            regressor: RegressorSpec::Ridge { alpha: 10.0 },
        },
        ModelConfig {
            encoder: pca.clone(),
            regressor: RegressorSpec::Ridge { alpha: 1.0 },
        },
        ModelConfig {
            encoder: EncoderSpec::None,
            regressor: RegressorSpec::Lasso {
                alpha: 1e-5,
                max_iter: 1000,
                tol: 1e-4,
            },
        },
        ModelConfig {
            encoder: pca,
            regressor: RegressorSpec::ElasticNet {
                alpha: 1e-5,
                l1_ratio: 0.5,
                max_iter: 1000,
                tol: 1e-4,
            },
        },
    ]
}

#[test]
fn train_save_load_forecast_and_backtest_on_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let wb = workbench(dir.path());
    let report = wb
        .train(&train_request(grid()), &NoProgress, &CancelToken::new())
        .unwrap();
    assert_eq!(report.models.len(), 4);
    assert_eq!(report.n_features, 88);
    for stored in &report.models {
        let info = &stored.info;
        assert_eq!(info.horizons, vec![1, 4, 12, 24]);
        assert_eq!(info.metrics.len(), 4);
        for m in &info.metrics {
            // Hourly EURUSD log returns: errors of a few tenths of a percent at most.
            assert!(m.validation.mae > 0.0 && m.validation.mae < 0.01, "{m:?}");
            assert!(m.baseline_validation.mae > 0.0 && m.baseline_test.mae < 0.01);
            // A regularized linear model on returns is close to the naive forecast, not far off.
            assert!(m.test.mae < 1.5 * m.baseline_test.mae, "{m:?}");
        }
        assert!(info.split.train.1 < info.split.validation.0);
        assert!(info.split.validation.1 < info.split.test.0);
        assert_eq!(info.device.backend.as_str(), "cpu");
    }
    let (listed, errors) = wb.list_models().unwrap();
    assert_eq!(listed.len(), 4);
    assert!(errors.is_empty());

    // Loading gives back the same predictions as the model built in memory did.
    let ids: Vec<String> = report.models.iter().map(|m| m.info.id.clone()).collect();
    let loaded = wb.load_model(&ids[1]).unwrap();
    assert_eq!(loaded.info, report.models[1].info);
    let x = Matrix::new(1, 88, (0..88).map(|i| f64::from(i) * 1e-3).collect()).unwrap();
    assert!(
        loaded
            .predict(&x)
            .unwrap()
            .values
            .iter()
            .all(|v| v.is_finite())
    );

    // One model: its band is its own validation residuals around its prediction.
    let one = wb
        .forecast(&ForecastRequest {
            selection: selection(vec![ids[0].clone()]),
            at_ts: None,
        })
        .unwrap();
    assert_eq!(one.horizons.len(), 4);
    for h in &one.horizons {
        assert!(h.q05 < h.q50 && h.q50 < h.q95, "{h:?}");
        assert!(h.q05 < h.price && h.price < h.q95, "{h:?}");
        assert!((h.price / one.origin_close - 1.0).abs() < 0.02, "{h:?}");
        assert!(h.baseline_q05 < one.origin_close && one.origin_close < h.baseline_q95);
    }
    // Bands widen with the horizon.
    let width = |h: &forexgpt_protocol::HorizonForecast| h.q95 - h.q05;
    assert!(width(&one.horizons[3]) > width(&one.horizons[0]));

    // The ensemble of all four, each combination rule.
    for combine in [Combine::Mean, Combine::Median, Combine::Weighted] {
        let mut sel = selection(Vec::new());
        sel.combine = combine;
        let all = wb
            .forecast(&ForecastRequest {
                selection: sel,
                at_ts: Some(one.origin_ts - 3600 * 24 * 30),
            })
            .unwrap();
        assert_eq!(all.models.len(), 4);
        assert!(all.origin_ts < one.origin_ts);
        for h in &all.horizons {
            let (lo, hi) = h
                .model_returns
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &r| (a.min(r), b.max(r)));
            assert!(
                (lo - 1e-15..=hi + 1e-15).contains(&h.expected_return),
                "{combine:?}: {h:?}"
            );
        }
    }

    let backtest = wb
        .backtest(
            &BacktestRequest {
                selection: selection(Vec::new()),
                from_ts: None,
                to_ts: None,
            },
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
    assert!(backtest.first_ts >= report.models[0].info.split.test.0);
    for h in &backtest.horizons {
        assert!(h.n > 500, "{h:?}");
        // Bands from validation residuals should cover most realized prices on the test part.
        assert!((0.6..=1.0).contains(&h.coverage), "{h:?}");
        assert!((0.6..=1.0).contains(&h.baseline_coverage), "{h:?}");
        assert!((0.3..0.7).contains(&h.directional_accuracy), "{h:?}");
        assert!(h.skill > -0.5 && h.skill < 0.5, "{h:?}");
    }
    assert!(wb.delete_model(&ids[0]).unwrap());
    assert!(!wb.delete_model(&ids[0]).unwrap());
    assert!(matches!(
        wb.load_model(&ids[0]),
        Err(EngineError::UnknownModel { .. })
    ));
    assert!(matches!(
        wb.load_model("../escape"),
        Err(EngineError::InvalidRequest(_))
    ));
}

/// A grid's linear models on one encoder share one pass over the training rows (ridge and
/// lasso on the raw features, ridge and elastic net on PCA): each is the model its own
/// training gives, to the last bit of every metric.
#[test]
fn a_grid_shares_its_moments_without_changing_any_model() {
    let dir = tempfile::tempdir().unwrap();
    let wb = workbench(dir.path());
    let cancel = CancelToken::new();
    let together = wb
        .train(&train_request(grid()), &NoProgress, &cancel)
        .unwrap();
    for (k, config) in grid().into_iter().enumerate() {
        let alone = wb
            .train(&train_request(vec![config]), &NoProgress, &cancel)
            .unwrap();
        assert_eq!(
            alone.models[0].info.metrics, together.models[k].info.metrics,
            "model {k}"
        );
    }
}

#[test]
fn a_failed_or_cancelled_training_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wb = workbench(dir.path());
    let cancel = CancelToken::new();
    cancel.cancel();
    let err = wb.train(&train_request(grid()), &NoProgress, &cancel);
    assert!(matches!(err, Err(EngineError::Cancelled)));
    let mut bad = grid();
    bad.push(ModelConfig {
        encoder: EncoderSpec::Pca {
            n_components: 500,
            whiten: false,
        },
        regressor: RegressorSpec::Ridge { alpha: 1.0 },
    });
    let err = wb
        .train(&train_request(bad), &NoProgress, &CancelToken::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("n_components"), "{err}");
    let negative = vec![ModelConfig {
        encoder: EncoderSpec::None,
        regressor: RegressorSpec::Ridge { alpha: -1.0 },
    }];
    let err = wb
        .train(&train_request(negative), &NoProgress, &CancelToken::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("alpha"), "{err}");
    assert!(wb.list_models().unwrap().0.is_empty());
}

#[test]
fn damaged_foreign_future_and_truncated_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let wb = workbench(dir.path());
    let one = vec![grid().remove(0)];
    let report = wb
        .train(&train_request(one), &NoProgress, &CancelToken::new())
        .unwrap();
    let path = std::path::PathBuf::from(&report.models[0].path);
    let good = std::fs::read(&path).unwrap();
    let check = |bytes: &[u8], expect: &dyn Fn(&EngineError) -> bool| {
        std::fs::write(&path, bytes).unwrap();
        let err = Model::load(&path).unwrap_err();
        assert!(expect(&err), "{err}");
        assert!(
            err.to_string().contains(&*path.display().to_string()),
            "{err}"
        );
    };
    // A flipped byte in the payload (near the end, before the trailing checksum).
    let mut flipped = good.clone();
    let at = flipped.len() - 40;
    flipped[at] ^= 0x01;
    check(&flipped, &|e| {
        matches!(e, EngineError::Artifact(ArtifactError::Checksum { .. }))
    });
    // A changed number in the manifest.
    // A changed digit in the manifest (same length, so only the checksum can tell).
    let key = b"\"train_rows\": ";
    let at = good.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    let mut altered = good.clone();
    altered[at] = if altered[at] == b'9' {
        b'8'
    } else {
        altered[at] + 1
    };
    check(&altered, &|e| {
        matches!(e, EngineError::Artifact(ArtifactError::Checksum { .. }))
    });
    check(&good[..good.len() / 2], &|e| {
        matches!(e, EngineError::Artifact(ArtifactError::Truncated { .. }))
    });
    check(b"time,open,high,low,close\n", &|e| {
        matches!(e, EngineError::Artifact(ArtifactError::Foreign { .. }))
    });
    let mut future = good.clone();
    future[8..12].copy_from_slice(&99u32.to_le_bytes());
    check(&future, &|e| {
        e.to_string().contains("format 99") && e.to_string().contains("newer")
    });
    // Listing reports the bad file and still lists good ones.
    std::fs::write(&path, &good).unwrap();
    std::fs::write(path.with_file_name("junk.fxm"), b"junk").unwrap();
    let (models, errors) = wb.list_models().unwrap();
    assert_eq!((models.len(), errors.len()), (1, 1));
}

#[test]
fn the_batched_ensemble_matches_model_by_model_prediction_on_every_device() {
    let dir = tempfile::tempdir().unwrap();
    let wb = workbench(dir.path());
    let report = wb
        .train(&train_request(grid()), &NoProgress, &CancelToken::new())
        .unwrap();
    let models: Vec<Model> = report
        .models
        .iter()
        .map(|m| wb.load_model(&m.info.id).unwrap())
        .collect();
    let ensemble = Ensemble::new(models.clone()).unwrap();
    let candles = wb.candles("EURUSD", Timeframe::H1).unwrap();
    let features = FeatureSets::build(&ensemble, &candles).unwrap();
    let fm = features.shortest();
    let ts: Vec<i64> = fm.ts[fm.rows() - 300..].to_vec();
    let raw = Matrix::new(300, 88, fm.values[(fm.rows() - 300) * 88..].to_vec()).unwrap();
    let expected: Vec<Matrix> = models.iter().map(|m| m.predict(&raw).unwrap()).collect();
    let scale = expected
        .iter()
        .flat_map(|m| m.values.iter())
        .fold(0.0f64, |a, v| a.max(v.abs()));
    for_each_device(|device| {
        let got = ensemble.predict(&features, &ts, device).unwrap();
        // CUDA runs float32 matmuls on TF32 tensor cores: the H100 gave 1.2e-3 of the scale.
        let tol = match device.backend() {
            forexgpt_protocol::BackendKind::Cpu => 1e-12,
            forexgpt_protocol::BackendKind::Wgpu => 1e-4,
            forexgpt_protocol::BackendKind::Cuda => 3e-3,
        };
        for (g, e) in got.per_model.iter().zip(&expected) {
            let worst = g
                .values
                .iter()
                .zip(&e.values)
                .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
            assert!(
                worst <= tol * scale,
                "{}: worst {worst:e} vs scale {scale:e}",
                device.label()
            );
        }
    });
}

/// No CUDA; with `gpu`, one hardware wgpu adapter, which fails every job when `failing`.
fn machine(gpu: bool, failing: bool) -> forexgpt_device::Devices {
    let manager = forexgpt_device::testing::described_machine(gpu);
    forexgpt_device::Devices::from_manager(if failing {
        manager.with_failing_gpus()
    } else {
        manager
    })
}

/// Every encoder kind (none, PCA, autoencoder, VAE) and regressor family (linear, forest).
fn every_kind() -> Vec<ModelConfig> {
    let net = forexgpt_protocol::NeuralEncoderSpec {
        hidden: vec![8],
        latent: 2,
        epochs: 1,
        ..Default::default()
    };
    let forest = forexgpt_protocol::ForestSpec {
        n_estimators: 1,
        max_depth: Some(3),
        ..Default::default()
    };
    [
        EncoderSpec::None,
        EncoderSpec::Pca {
            n_components: 4,
            whiten: false,
        },
        EncoderSpec::Autoencoder { net: net.clone() },
        EncoderSpec::Vae {
            net,
            kl_weight: 1.0,
            kl_warmup_epochs: 1,
        },
    ]
    .into_iter()
    .flat_map(|encoder| {
        [
            RegressorSpec::Ridge { alpha: 1.0 },
            RegressorSpec::RandomForest(forest.clone()),
        ]
        .map(|regressor| ModelConfig {
            encoder: encoder.clone(),
            regressor,
        })
    })
    .collect()
}

#[test]
fn an_explicit_gpu_without_one_is_an_error_for_every_encoder_and_regressor() {
    let dir = tempfile::tempdir().unwrap();
    let mut wb = workbench(dir.path());
    wb.set_devices(machine(false, false));
    for config in every_kind() {
        let label = format!("{} + {}", config.encoder.label(), config.regressor.label());
        let mut request = train_request(vec![config]);
        request.device = DeviceRequest::exactly(forexgpt_protocol::DevicePreference::Cuda(None));
        let err = wb
            .train(&request, &NoProgress, &CancelToken::new())
            .expect_err(&label)
            .to_string();
        assert!(err.contains("CUDA is not available"), "{label}: {err}");
    }
    assert!(wb.list_models().unwrap().0.is_empty(), "nothing is saved");
}

#[test]
fn gpu_if_available_falls_back_with_the_reason_for_every_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut wb = workbench(dir.path());
    // No GPU at all, then a GPU that fails every job mid-way: every model is fitted on the
    // CPU and says why.
    for failing in [false, true] {
        wb.set_devices(machine(failing, failing));
        let mut request = train_request(every_kind());
        request.device = DeviceRequest::GPU_IF_AVAILABLE;
        let report = wb
            .train(&request, &NoProgress, &CancelToken::new())
            .unwrap();
        assert_eq!(report.models.len(), 8);
        for stored in &report.models {
            let info = &stored.info;
            assert_eq!(info.device.backend.as_str(), "cpu", "{}", info.id);
            let why = info.fell_back.as_deref().unwrap_or_default();
            let reason = if failing {
                "simulated GPU fault"
            } else {
                "no NVIDIA driver"
            };
            assert!(why.contains(reason), "{}: {why:?}", info.id);
        }
    }
}

#[test]
fn auto_keeps_small_jobs_on_the_cpu_and_says_why() {
    // A GPU that never gets a job here: by the built-in estimates, every fit of the sample
    // (a few thousand rows) takes less time on the CPU than the GPU's fixed costs.
    let dir = tempfile::tempdir().unwrap();
    let mut wb = workbench(dir.path());
    wb.set_devices(machine(true, false));
    let mut request = train_request(every_kind());
    request.device = DeviceRequest::GPU_IF_AVAILABLE;
    let report = wb
        .train(&request, &NoProgress, &CancelToken::new())
        .unwrap();
    assert_eq!(report.models.len(), 8);
    for stored in &report.models {
        let info = &stored.info;
        assert_eq!(info.device.backend.as_str(), "cpu", "{}", info.id);
        let why = info.fell_back.as_deref().unwrap_or_default();
        if matches!(info.regressor, RegressorSpec::RandomForest(_)) {
            // One shallow tree: the CPU's milliseconds against wgpu's fixed part.
            assert!(
                why.contains("auto chose the CPU for the forest fit ("),
                "{why}"
            );
        } else {
            assert!(
                why.contains("auto chose the CPU for the linear fit ("),
                "{why}"
            );
            let choice = info.device.choice.as_deref().unwrap_or_default();
            assert!(
                choice.contains("auto chose the CPU for the linear fit (")
                    && choice.contains("on wgpu:0 (Test GPU, Vulkan) (built-in estimates"),
                "{}: {choice}",
                info.id
            );
        }
        if matches!(
            info.encoder,
            EncoderSpec::Autoencoder { .. } | EncoderSpec::Vae { .. }
        ) {
            assert!(
                why.contains("auto chose the CPU for the encoder training ("),
                "{why}"
            );
        }
    }
    // The stored model keeps the reason.
    let first = &report.models[0].info;
    let (stored, _) = wb.list_models().unwrap();
    let again = stored.iter().find(|m| m.info.id == first.id).unwrap();
    assert_eq!(again.info.device.choice, first.device.choice);
    assert!(again.info.device.choice.is_some());
    // A forecast of one bar: the CPU, and why.
    let mut gpu = selection(vec![first.id.clone()]);
    gpu.device = DeviceRequest::GPU_IF_AVAILABLE;
    let forecast = wb
        .forecast(&ForecastRequest {
            selection: gpu,
            at_ts: None,
        })
        .unwrap();
    assert_eq!(forecast.device.backend.as_str(), "cpu");
    assert!(
        forecast
            .fell_back
            .unwrap()
            .starts_with("auto chose the CPU for the model inference (1 model on 1 bar)")
    );
}

#[test]
fn a_gpu_failing_mid_forecast_hands_it_to_the_cpu_if_available() {
    let dir = tempfile::tempdir().unwrap();
    let mut wb = workbench(dir.path());
    let report = wb
        .train(
            &train_request(every_kind()),
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
    let ids: Vec<String> = report.models.iter().map(|m| m.info.id.clone()).collect();
    let on_cpu = wb
        .forecast(&ForecastRequest {
            selection: selection(ids.clone()),
            at_ts: None,
        })
        .unwrap();
    wb.set_devices(machine(true, true));
    let mut gpu = selection(ids);
    gpu.device = DeviceRequest::GPU_IF_AVAILABLE;
    let forecast = wb
        .forecast(&ForecastRequest {
            selection: gpu.clone(),
            at_ts: None,
        })
        .unwrap();
    assert_eq!(forecast.device.backend.as_str(), "cpu");
    let why = forecast.fell_back.clone().unwrap();
    assert!(
        why.contains("wgpu:0 (Test GPU") && why.contains("simulated GPU fault"),
        "{why}"
    );
    assert_eq!(forecast.horizons, on_cpu.horizons, "the CPU's own forecast");
    let backtest = wb
        .backtest(
            &BacktestRequest {
                selection: gpu.clone(),
                from_ts: None,
                to_ts: None,
            },
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
    assert!(backtest.fell_back.unwrap().contains("simulated GPU fault"));
    // Named explicitly, the GPU's failure is the answer.
    gpu.device = DeviceRequest::exactly(forexgpt_protocol::DevicePreference::Wgpu(Some(0)));
    let err = wb
        .forecast(&ForecastRequest {
            selection: gpu,
            at_ts: None,
        })
        .unwrap_err();
    assert!(err.to_string().contains("simulated GPU fault"), "{err}");
}
