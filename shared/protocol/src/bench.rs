//! Benchmark requests, results and stored runs: what `forexgpt bench` and the app's Benchmark
//! tab ask for and show.

use serde::{Deserialize, Serialize};

/// Which operations a benchmark run times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BenchSuite {
    /// Feature matrix and CSV import.
    #[default]
    Data,
    /// Ridge, Lasso, ElasticNet and PCA on the CPU and every GPU device.
    Regressors,
    /// Ensemble inference: 1, 10 and 50 models from one bar, and 50 models over 1,000 bars.
    Forecast,
    /// Autoencoder and VAE training (fixed epochs) on the CPU and every GPU device.
    Encoders,
    /// Random forest: growing the trees, and predicting on the CPU and every GPU device.
    Forest,
    All,
}

impl BenchSuite {
    pub const ALL: [BenchSuite; 6] = [
        BenchSuite::Data,
        BenchSuite::Regressors,
        BenchSuite::Forecast,
        BenchSuite::Encoders,
        BenchSuite::Forest,
        BenchSuite::All,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            BenchSuite::Data => "data",
            BenchSuite::Regressors => "regressors",
            BenchSuite::Forecast => "forecast",
            BenchSuite::Encoders => "encoders",
            BenchSuite::Forest => "forest",
            BenchSuite::All => "all",
        }
    }

    pub fn parse(name: &str) -> Option<BenchSuite> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the run includes `part` (a suite other than `All`).
    pub fn includes(self, part: BenchSuite) -> bool {
        self == part || self == BenchSuite::All
    }
}

/// Preset sizes of a benchmark run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BenchSize {
    /// Under a minute on a 2-core CPU-only machine (CI).
    Small,
    /// The original tool's table: 100k × 64 regressors, 100k bars, 1M CSV rows.
    #[default]
    Seed,
    /// 1M × 128 → 8 for the regressors.
    Large,
}

impl BenchSize {
    pub const ALL: [BenchSize; 3] = [BenchSize::Small, BenchSize::Seed, BenchSize::Large];

    pub const fn name(self) -> &'static str {
        match self {
            BenchSize::Small => "small",
            BenchSize::Seed => "seed",
            BenchSize::Large => "large",
        }
    }

    pub fn parse(name: &str) -> Option<BenchSize> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A benchmark run to make: a suite at a preset size; any explicit size overrides its part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchRequest {
    pub suite: BenchSuite,
    pub size: BenchSize,
    #[serde(default)]
    pub rows: Option<usize>,
    #[serde(default)]
    pub features: Option<usize>,
    #[serde(default)]
    pub targets: Option<usize>,
    #[serde(default)]
    pub bars: Option<usize>,
    #[serde(default)]
    pub csv_rows: Option<usize>,
    #[serde(default)]
    pub repeats: Option<usize>,
    /// Encoder training rows (features as `features`).
    #[serde(default)]
    pub encoder_rows: Option<usize>,
    #[serde(default)]
    pub epochs: Option<usize>,
    /// Random-forest training rows (features as `features`, targets as `targets`).
    #[serde(default)]
    pub forest_rows: Option<usize>,
    #[serde(default)]
    pub trees: Option<usize>,
    /// Rows the forest predicts.
    #[serde(default)]
    pub predict_rows: Option<usize>,
    /// Time only these operations of the suite (by name, e.g. `autoencoder_fit`); empty:
    /// every one.
    #[serde(default)]
    pub operations: Vec<String>,
}

impl BenchRequest {
    /// The preset of `size` with the explicit sizes put in.
    pub fn settings(&self) -> BenchSettings {
        // (rows, features, targets, bars, csv_rows, repeats)
        let preset = match self.size {
            BenchSize::Small => (20_000, 32, 4, 20_000, 50_000, 3),
            BenchSize::Seed => (100_000, 64, 4, 100_000, 1_000_000, 5),
            BenchSize::Large => (1_000_000, 128, 8, 100_000, 1_000_000, 5),
        };
        // Encoders: (rows, features, epochs); the seed's table is 100 epochs on 10K × 128.
        let encoders = match self.size {
            BenchSize::Small => (2_000, 32, 3),
            BenchSize::Seed => (10_000, 128, 100),
            BenchSize::Large => (100_000, 128, 20),
        };
        // Forest: (rows, features, trees, predicted rows); the seed's table is 100 trees on
        // 10K samples, issue 7's inference goal 100 trees on 100K rows.
        let forest = match self.size {
            BenchSize::Small => (2_000, 16, 20, 20_000),
            BenchSize::Seed => (10_000, 64, 100, 100_000),
            BenchSize::Large => (100_000, 64, 100, 1_000_000),
        };
        // Ensembles: the most models of the forecast suite (the seed's table goes to 50; the
        // small size stops at 10, which keeps training them short).
        let ensemble_models = match self.size {
            BenchSize::Small => 10,
            BenchSize::Seed | BenchSize::Large => 50,
        };
        BenchSettings {
            suite: self.suite.name().to_string(),
            rows: self.rows.unwrap_or(preset.0),
            features: self.features.unwrap_or(preset.1),
            targets: self.targets.unwrap_or(preset.2),
            bars: self.bars.unwrap_or(preset.3),
            csv_rows: self.csv_rows.unwrap_or(preset.4),
            repeats: self.repeats.unwrap_or(preset.5),
            encoder_rows: self.encoder_rows.unwrap_or(encoders.0),
            encoder_features: self.features.unwrap_or(encoders.1),
            epochs: self.epochs.unwrap_or(encoders.2),
            forest_rows: self.forest_rows.unwrap_or(forest.0),
            forest_features: self.features.unwrap_or(forest.1),
            trees: self.trees.unwrap_or(forest.2),
            predict_rows: self.predict_rows.unwrap_or(forest.3),
            ensemble_models,
            operations: self.operations.clone(),
        }
    }
}

/// One operation measured in both runs of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchComparison {
    pub operation: String,
    pub size: String,
    pub device: String,
    pub a_median_ms: f64,
    pub b_median_ms: f64,
    /// `a / b`: above 1, run B is faster.
    pub speedup_b_over_a: f64,
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

/// The benchmark operations whose time is a job's that `auto` weighs (the device crate's cost
/// model): on a machine whose run shows such a GPU row slower than the CPU row, `auto` runs
/// that job on the CPU.
pub const AUTO_WEIGHED_OPERATIONS: &[&str] = &[
    "ridge",
    "lasso",
    "elasticnet",
    "pca",
    "rf_fit",
    "rf_predict",
    "autoencoder_fit",
    "vae_fit",
    "forecast",
    "forecast_ae",
    // Runs stored before the encoder suite named its rows `*_fit`.
    "autoencoder",
    "vae",
];

/// Whether `auto` would run `row`'s job on the CPU on the machine that measured it: a row of
/// one of our GPUs (not a peer's) at a weighed operation, slower than the CPU row of the same
/// size.
pub fn auto_prefers_cpu(row: &BenchResult, cpu_median_ms: f64) -> bool {
    let ours_on_a_gpu = row.device.starts_with("cuda:") || row.device.starts_with("wgpu:");
    ours_on_a_gpu
        && AUTO_WEIGHED_OPERATIONS.contains(&row.operation.as_str())
        && row.median_ms > cpu_median_ms
}

/// What a benchmark run was asked to do (the default: nothing, for runs built by hand).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Encoder training: rows × features, epochs (0 in runs stored before encoders).
    #[serde(default)]
    pub encoder_rows: usize,
    #[serde(default)]
    pub encoder_features: usize,
    #[serde(default)]
    pub epochs: usize,
    /// Random forest: training rows × features, trees, predicted rows (0 in runs stored
    /// before forests).
    #[serde(default)]
    pub forest_rows: usize,
    #[serde(default)]
    pub forest_features: usize,
    #[serde(default)]
    pub trees: usize,
    #[serde(default)]
    pub predict_rows: usize,
    /// Forecast suite: the largest ensemble timed (0 in runs stored before it was set; they
    /// went to 50).
    #[serde(default)]
    pub ensemble_models: usize,
    /// The operations timed, where the run was asked for only some of the suite's (empty:
    /// every one).
    #[serde(default)]
    pub operations: Vec<String>,
}

/// The machine a run was measured on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchMachine {
    pub os: String,
    pub cpu: String,
    pub cpu_threads: usize,
    /// Every device the run measured, as labelled in the results.
    pub devices: Vec<String>,
    /// GPU cases that failed on their device (e.g. out of memory), each with the device and
    /// the reason; the run kept its other rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_sizes_override_the_preset() {
        let request = BenchRequest {
            suite: BenchSuite::Regressors,
            size: BenchSize::Small,
            rows: Some(1_000),
            ..BenchRequest::default()
        };
        let settings = request.settings();
        assert_eq!(settings.suite, "regressors");
        assert_eq!((settings.rows, settings.features), (1_000, 32));
        // The forecast suite's ensembles stop at 10 models when small, 50 otherwise.
        assert_eq!(settings.ensemble_models, 10);
        let seed = BenchRequest {
            size: BenchSize::Seed,
            ..request
        };
        assert_eq!(seed.settings().ensemble_models, 50);
        assert_eq!(BenchSuite::parse("all"), Some(BenchSuite::All));
        assert!(BenchSuite::All.includes(BenchSuite::Forecast));
        assert!(!BenchSuite::Data.includes(BenchSuite::Forecast));
        assert_eq!(BenchSize::parse("large"), Some(BenchSize::Large));
        assert_eq!(BenchSize::parse("huge"), None);
    }
}
