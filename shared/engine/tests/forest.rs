//! Random forests in the pipeline: trained beside a linear model, saved with their trees in
//! their own section, loaded, predicting the same on every device, forecasting in an
//! ensemble; a damaged tree section is refused by name; cancelling between trees keeps
//! nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use forexgpt_device::testing::for_each_device;
use forexgpt_engine::model::{Model, RegressorState};
use forexgpt_engine::{CancelToken, EngineError, NoProgress};
use forexgpt_protocol::{
    Combine, DeviceRequest, EncoderSpec, FeatureSpec, ForecastRequest, ForestSpec, MaxFeatures,
    ModelConfig, ModelSelection, RegressorSpec, Stage, Timeframe, TrainRequest,
};
use forexgpt_regressors::Matrix;

use common::{CancelAt, train_request, workbench};

fn forest() -> ForestSpec {
    ForestSpec {
        n_estimators: 12,
        max_depth: Some(10),
        max_features: MaxFeatures::Sqrt,
        oob_score: true,
        ..ForestSpec::default()
    }
}

fn request(regressors: Vec<RegressorSpec>) -> TrainRequest {
    train_request(
        regressors
            .into_iter()
            .map(|regressor| ModelConfig {
                encoder: EncoderSpec::None,
                regressor,
            })
            .collect(),
    )
}

#[test]
fn a_forest_trains_saves_loads_and_forecasts_beside_a_linear_model() {
    let dir = tempfile::tempdir().unwrap();
    let wb = workbench(dir.path());
    let report = wb
        .train(
            &request(vec![
                RegressorSpec::Ridge { alpha: 1.0 },
                RegressorSpec::RandomForest(forest()),
            ]),
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
    assert_eq!(report.models.len(), 2);
    let stored = &report.models[1];
    assert_eq!(stored.info.regressor.kind(), "rf");
    assert!(stored.info.id.contains("-rf-"), "{}", stored.info.id);
    let model = Model::load(Path::new(&stored.path)).unwrap();
    assert!(model.affine().unwrap().is_none());
    let RegressorState::Forest(rf) = &model.state.regressor else {
        panic!("not a forest")
    };
    assert_eq!(rf.trees.n_trees(), 12);
    assert!(rf.trees.depth <= 10);
    assert!(rf.oob_score.is_some());
    let horizons = model.info.horizons.len();
    assert_eq!(rf.n_outputs, horizons);

    // The loaded forest predicts what the trained one did (validation metrics agree).
    let candles = wb.candles("EURUSD", Timeframe::H1).unwrap();
    let fm = forexgpt_core::features::build_features(&candles, &FeatureSpec::default()).unwrap();
    let rows = Matrix::new(
        200,
        fm.n_columns(),
        (fm.rows() - 200..fm.rows())
            .flat_map(|r| fm.row(r).to_vec())
            .collect(),
    )
    .unwrap();
    let cpu = model.predict(&rows).unwrap();
    assert!(cpu.values.iter().all(|v| v.is_finite()));
    for_each_device(|device| {
        let got = model.predict_on(&rows, device).unwrap();
        for (g, c) in got.values.iter().zip(&cpu.values) {
            assert!(
                (g - c).abs() <= 1e-6 * c.abs().max(1e-3),
                "{}: {g} vs {c}",
                device.label()
            );
        }
    });

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
    assert_eq!(forecast.models.len(), 2);
    for h in &forecast.horizons {
        assert!(h.q05 <= h.q50 && h.q50 <= h.q95, "{h:?}");
        assert!(h.price.is_finite());
    }

    // A damaged tree section is refused at load time, naming the section.
    let mut broken = model.clone();
    if let RegressorState::Forest(rf) = &mut broken.state.regressor {
        let root = rf.trees.roots[1] as usize;
        rf.trees.left[root] = root as u32;
    }
    broken.info.id = "broken".into();
    let path = broken.save(&dir.path().join("models")).unwrap();
    let err = Model::load(&path).unwrap_err();
    assert!(
        err.to_string().contains("forest.bin") && err.to_string().contains("tree 1"),
        "{err}"
    );
}

#[test]
fn cancelling_while_trees_grow_keeps_no_model() {
    let dir = tempfile::tempdir().unwrap();
    let wb = workbench(dir.path());
    let sink = CancelAt::new(Stage::Regressor, 3);
    let err = wb
        .train(
            &request(vec![
                RegressorSpec::Ridge { alpha: 1.0 },
                RegressorSpec::RandomForest(ForestSpec {
                    n_estimators: 200,
                    ..forest()
                }),
            ]),
            &sink,
            &sink.cancel,
        )
        .unwrap_err();
    assert!(matches!(err, EngineError::Cancelled), "{err}");
    assert!(wb.list_models().unwrap().0.is_empty());
    let trees = sink.events.lock().unwrap();
    assert!(trees.len() >= 3 && trees.len() < 200, "{}", trees.len());
    assert_eq!(trees[0].total, Some(200));
}
