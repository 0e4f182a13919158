//! Helpers shared by the engine's test files: a workbench on an in-memory store, requests on
//! the sample series, and a progress sink that cancels the job part-way.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
#![allow(dead_code)] // each test file uses some of them

use std::path::Path;
use std::sync::Mutex;

use forexgpt_core::store::Store;
use forexgpt_engine::{CancelToken, ProgressSink, Workbench};
use forexgpt_protocol::{
    Combine, DeviceRequest, FeatureSpec, ModelConfig, ModelSelection, ProgressEvent, SplitSpec,
    Stage, TargetSpec, Timeframe, TrainRequest,
};

/// A workbench on a fresh in-memory store (seeded with the sample), its models in `dir/models`.
pub fn workbench(dir: &Path) -> Workbench {
    let mut wb = Workbench::with_store(Store::open_in_memory().unwrap()).unwrap();
    wb.set_models_dir(dir.join("models"));
    wb
}

/// `models` trained on the sample series (EURUSD 1h) with default features, on the CPU.
pub fn train_request(models: Vec<ModelConfig>) -> TrainRequest {
    TrainRequest {
        symbol: "EURUSD".into(),
        timeframe: Timeframe::H1,
        features: FeatureSpec::default(),
        targets: TargetSpec::default(),
        split: SplitSpec::default(),
        models,
        device: DeviceRequest::CPU,
    }
}

/// The models `ids` of the sample series, averaged, on the CPU.
pub fn selection(ids: Vec<String>) -> ModelSelection {
    ModelSelection {
        ids,
        symbol: Some("EURUSD".into()),
        timeframe: Some(Timeframe::H1),
        combine: Combine::Mean,
        device: DeviceRequest::CPU,
    }
}

/// Records the progress events of one stage and cancels the job at the `at`-th of them.
pub struct CancelAt {
    pub stage: Stage,
    pub at: usize,
    pub cancel: CancelToken,
    pub events: Mutex<Vec<ProgressEvent>>,
}

impl CancelAt {
    pub fn new(stage: Stage, at: usize) -> CancelAt {
        CancelAt {
            stage,
            at,
            cancel: CancelToken::new(),
            events: Mutex::new(Vec::new()),
        }
    }
}

impl ProgressSink for CancelAt {
    fn report(&self, event: ProgressEvent) {
        if event.stage == self.stage {
            let mut events = self.events.lock().unwrap();
            events.push(event);
            if events.len() == self.at {
                self.cancel.cancel();
            }
        }
    }
}
