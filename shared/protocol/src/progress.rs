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
    /// Epochs of a neural encoder (autoencoder, VAE).
    Encoder,
    /// Trees of a random forest.
    Regressor,
    Train,
    Save,
    Forecast,
    Backtest,
    Benchmark,
    /// Bytes of a download (the CUDA runtime pieces).
    Download,
}

impl Stage {
    pub const fn label(self) -> &'static str {
        match self {
            Stage::ReadCsv => "reading CSV",
            Stage::Validate => "validating",
            Stage::Store => "storing",
            Stage::Features => "computing features",
            Stage::Encoder => "training encoder",
            Stage::Regressor => "growing trees",
            Stage::Train => "training",
            Stage::Save => "saving models",
            Stage::Forecast => "forecasting",
            Stage::Backtest => "backtesting",
            Stage::Benchmark => "benchmarking",
            Stage::Download => "downloading",
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
    /// Losses of the epoch just finished, when the stage trains a network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<EpochProgress>,
}

impl ProgressEvent {
    /// An event without epoch losses.
    pub fn new(stage: Stage, done: u64, total: Option<u64>, message: Option<String>) -> Self {
        ProgressEvent {
            stage,
            done,
            total,
            message,
            epoch: None,
        }
    }
}

/// One finished epoch of a network's training: what a loss curve is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochProgress {
    /// 1-based.
    pub epoch: usize,
    pub epochs: usize,
    /// Mean loss over the epoch's training batches.
    pub train_loss: f64,
    pub validation_loss: f64,
    /// Training rows per second in this epoch (forward, backward and update).
    pub samples_per_s: f64,
}
