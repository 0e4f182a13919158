//! Progress of long work, shared by the CLI (progress bars) and the app (progress events).

use serde::{Deserialize, Serialize};

/// The step a long job is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    ReadCsv,
    Validate,
    Store,
    Features,
    Train,
    Save,
    Forecast,
    Backtest,
    Benchmark,
}

impl Stage {
    pub const fn label(self) -> &'static str {
        match self {
            Stage::ReadCsv => "reading CSV",
            Stage::Validate => "validating",
            Stage::Store => "storing",
            Stage::Features => "computing features",
            Stage::Train => "training",
            Stage::Save => "saving models",
            Stage::Forecast => "forecasting",
            Stage::Backtest => "backtesting",
            Stage::Benchmark => "benchmarking",
        }
    }
}

/// `done` of `total` units of `stage` (rows, bars, runs) are finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressEvent {
    pub stage: Stage,
    pub done: u64,
    pub total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
