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

/// Timing of one benchmarked operation: `repeats` timed runs after `warmups` untimed ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// What ran, e.g. `features` or `import_csv`.
    pub operation: String,
    /// The input size in words, e.g. `100000 bars`.
    pub size: String,
    /// Where it ran: `cpu` (GPU backends join with the device issue).
    pub device: String,
    /// The first (cold) run, included in neither the median nor the range.
    pub first_run_ms: f64,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub repeats: usize,
    /// Items per second at the median (rows, bars).
    pub throughput_per_s: f64,
    /// Largest difference from the CPU reference result, relative to its largest value
    /// (GPU rows of model benchmarks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rel_diff_vs_cpu: Option<f64>,
}

/// What a benchmark run was asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchSettings {
    /// `data`, `regressors`, `forecast` or `all`.
    pub suite: String,
    pub repeats: usize,
    /// Regressor data: rows × features → targets.
    pub rows: usize,
    pub features: usize,
    pub targets: usize,
    /// Feature-matrix bars and CSV-import rows.
    pub bars: usize,
    pub csv_rows: usize,
}

/// The machine a run was measured on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchMachine {
    pub os: String,
    pub cpu: String,
    pub cpu_threads: usize,
    /// Every device the run measured, as labelled in the results.
    pub devices: Vec<String>,
}

/// One stored benchmark run: when, where, with which build and settings, and its results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRun {
    pub id: i64,
    pub created_ts: i64,
    pub app_version: String,
    /// `git describe` of the build, when it was built from a checkout.
    pub git_rev: Option<String>,
    pub machine: BenchMachine,
    pub settings: BenchSettings,
    pub results: Vec<BenchResult>,
}
