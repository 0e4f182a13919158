//! The backwards-compatibility promise: model files written by released versions keep loading
//! and predicting the same numbers. `tests/fixtures/models/` holds one file of each kind per
//! format version and `expected.json` with raw feature rows and the predictions made when the
//! files were written. Add the files of a new format version or a new model kind with
//! `FOREXGPT_WRITE_MODEL_FIXTURES=1 cargo test -p forexgpt-engine --test model_fixtures`;
//! files already there are never rewritten.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use forexgpt_core::features::build_features;
use forexgpt_core::store::Store;
use forexgpt_engine::artifact::MODEL_FORMAT_VERSION;
use forexgpt_engine::model::Model;
use forexgpt_engine::{CancelToken, NoProgress, Workbench};
use forexgpt_protocol::{
    EncoderSpec, FeatureSpec, ForestSpec, ModelConfig, NeuralEncoderSpec, RegressorSpec, Timeframe,
};
use forexgpt_regressors::Matrix;
use serde::{Deserialize, Serialize};

use common::train_request;

#[derive(Serialize, Deserialize)]
struct Expected {
    /// Bar times of the input rows (sample EURUSD 1h).
    ts: Vec<i64>,
    n_features: usize,
    /// Raw feature rows at those times, row-major.
    input: Vec<f64>,
    models: Vec<ExpectedModel>,
}

#[derive(Serialize, Deserialize)]
struct ExpectedModel {
    file: String,
    format_version: u32,
    predictions: Vec<f64>,
}

fn fixture_dir() -> PathBuf {
    // Cargo's value when it runs the test first: a binary reused from a build in another
    // checkout (a shared target cache) must not read that checkout's files.
    Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../tests/fixtures/models")
}

fn workbench(models: &Path) -> Workbench {
    let mut wb = Workbench::with_store(Store::open_in_memory().unwrap()).unwrap();
    wb.set_models_dir(models.to_path_buf());
    wb
}

fn configs() -> Vec<(&'static str, ModelConfig)> {
    let pca = EncoderSpec::Pca {
        n_components: 12,
        whiten: true,
    };
    vec![
        (
            "ridge",
            ModelConfig {
                encoder: EncoderSpec::None,
                regressor: RegressorSpec::Ridge { alpha: 3.0 },
            },
        ),
        (
            "pca-lasso",
            ModelConfig {
                encoder: pca.clone(),
                regressor: RegressorSpec::Lasso {
                    alpha: 2e-6,
                    max_iter: 1000,
                    tol: 1e-6,
                },
            },
        ),
        (
            "elasticnet",
            ModelConfig {
                encoder: EncoderSpec::None,
                regressor: RegressorSpec::ElasticNet {
                    alpha: 1e-5,
                    l1_ratio: 0.3,
                    max_iter: 1000,
                    tol: 1e-6,
                },
            },
        ),
        (
            "ae-ridge",
            ModelConfig {
                encoder: EncoderSpec::Autoencoder {
                    net: NeuralEncoderSpec {
                        hidden: vec![16],
                        latent: 4,
                        epochs: 5,
                        ..NeuralEncoderSpec::default()
                    },
                },
                regressor: RegressorSpec::Ridge { alpha: 1.0 },
            },
        ),
        (
            "rf",
            ModelConfig {
                encoder: EncoderSpec::None,
                regressor: RegressorSpec::RandomForest(ForestSpec {
                    n_estimators: 5,
                    max_depth: Some(8),
                    ..ForestSpec::default()
                }),
            },
        ),
    ]
}

fn sample_rows(wb: &Workbench, ts: &[i64]) -> Matrix {
    let candles = wb.candles("EURUSD", Timeframe::H1).unwrap();
    let fm = build_features(&candles, &FeatureSpec::default()).unwrap();
    let mut values = Vec::new();
    for t in ts {
        let r = fm.ts.binary_search(t).unwrap();
        values.extend_from_slice(fm.row(r));
    }
    Matrix::new(ts.len(), fm.n_columns(), values).unwrap()
}

fn write_fixtures(dir: &Path) {
    let scratch = tempfile::tempdir().unwrap();
    let wb = workbench(scratch.path());
    let request = train_request(configs().into_iter().map(|(_, c)| c).collect());
    let report = wb
        .train(&request, &NoProgress, &CancelToken::new())
        .unwrap();
    let candles = wb.candles("EURUSD", Timeframe::H1).unwrap();
    let fm = build_features(&candles, &FeatureSpec::default()).unwrap();
    let ts: Vec<i64> = [100, 2500, 4000, 5500, fm.rows() - 1]
        .iter()
        .map(|&r| fm.ts[r])
        .collect();
    let input = sample_rows(&wb, &ts);
    let mut models = Vec::new();
    for ((name, _), stored) in configs().iter().zip(&report.models) {
        let mut model = Model::load(Path::new(&stored.path)).unwrap();
        model.info.id = format!("v{MODEL_FORMAT_VERSION}-{name}");
        if dir.join(Model::file_name(&model.info.id)).exists() {
            continue;
        }
        let path = model.save(dir).unwrap();
        models.push(ExpectedModel {
            file: path.file_name().unwrap().to_string_lossy().into_owned(),
            format_version: MODEL_FORMAT_VERSION,
            predictions: model.predict(&input).unwrap().values,
        });
    }
    let mut expected = read_expected(dir).unwrap_or(Expected {
        ts: ts.clone(),
        n_features: input.cols,
        input: input.values.clone(),
        models: Vec::new(),
    });
    expected.models.extend(models);
    let json = serde_json::to_string_pretty(&expected).unwrap();
    std::fs::write(dir.join("expected.json"), json).unwrap();
}

fn read_expected(dir: &Path) -> Option<Expected> {
    let text = std::fs::read_to_string(dir.join("expected.json")).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

#[test]
fn stored_model_files_keep_loading_and_predicting_the_same_numbers() {
    let dir = fixture_dir();
    if std::env::var_os("FOREXGPT_WRITE_MODEL_FIXTURES").is_some() {
        write_fixtures(&dir);
    }
    let expected = read_expected(&dir).expect("tests/fixtures/models/expected.json");
    let input = Matrix::new(
        expected.ts.len(),
        expected.n_features,
        expected.input.clone(),
    )
    .unwrap();
    // The feature pipeline must still build the rows the models were trained on.
    let scratch = tempfile::tempdir().unwrap();
    let rebuilt = sample_rows(&workbench(scratch.path()), &expected.ts);
    for (a, b) in rebuilt.values.iter().zip(&input.values) {
        assert!(
            (a - b).abs() <= 1e-12 * b.abs().max(1.0),
            "features changed: {a} vs {b}"
        );
    }
    let kinds = ["ridge", "pca-lasso", "elasticnet", "ae-ridge", "rf"];
    for v in 1..=MODEL_FORMAT_VERSION {
        for kind in kinds {
            assert!(
                expected
                    .models
                    .iter()
                    .any(|m| m.file == format!("v{v}-{kind}.fxm")),
                "no fixture of {kind} for format {v}"
            );
        }
    }
    for m in &expected.models {
        let model = Model::load(&dir.join(&m.file)).unwrap();
        assert_eq!(model.format_version, m.format_version);
        let got = model.predict(&input).unwrap().values;
        assert_eq!(got.len(), m.predictions.len());
        // Linear pipelines run in float64 and must repeat themselves exactly; a neural
        // encoder runs in float32, whose rounding may differ between CPUs (SIMD widths).
        let (rel, floor) = if model.state.encoder.network().is_some() {
            (1e-4, 1e-5)
        } else {
            (1e-12, 1e-6)
        };
        for (g, e) in got.iter().zip(&m.predictions) {
            assert!(
                (g - e).abs() <= rel * e.abs().max(floor),
                "{}: predicted {g}, the file once predicted {e}",
                m.file
            );
        }
    }
}
