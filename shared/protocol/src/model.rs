//! Training requests, stored-model descriptions, forecasts and backtests: what the CLI and the
//! app send to the engine and show to the user.

use serde::{Deserialize, Serialize};

use crate::{
    DevicePreference, FeatureSpec, RegressionMetrics, ResolvedDevice, SplitSpec, TargetSpec,
    Timeframe,
};

/// How the scaled features are compressed before the regressor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EncoderSpec {
    /// The scaled features go to the regressor as they are.
    None,
    /// Principal components of the training rows (scikit-learn's `PCA`).
    Pca { n_components: usize, whiten: bool },
    /// A neural autoencoder trained to reconstruct the scaled features; its bottleneck is
    /// the encoding.
    Autoencoder { net: NeuralEncoderSpec },
    /// A variational autoencoder; the posterior mean is the encoding. The KL term's weight
    /// rises linearly from 0 to `kl_weight` over the first `kl_warmup_epochs` epochs.
    Vae {
        net: NeuralEncoderSpec,
        kl_weight: f64,
        kl_warmup_epochs: usize,
    },
}

impl EncoderSpec {
    /// Short name for tables and model ids, e.g. `none`, `pca16`, `pca16w`.
    pub fn label(&self) -> String {
        match self {
            EncoderSpec::None => "none".into(),
            EncoderSpec::Pca {
                n_components,
                whiten,
            } => format!("pca{n_components}{}", if *whiten { "w" } else { "" }),
            EncoderSpec::Autoencoder { net } => format!("ae{}", net.latent),
            EncoderSpec::Vae { net, .. } => format!("vae{}", net.latent),
        }
    }

    /// A VAE with the defaults: KL weight 1 reached after 10 warm-up epochs.
    pub fn vae(net: NeuralEncoderSpec) -> Self {
        EncoderSpec::Vae {
            net,
            kl_weight: 1.0,
            kl_warmup_epochs: 10,
        }
    }

    /// The neural network part of a neural encoder.
    pub fn neural(&self) -> Option<&NeuralEncoderSpec> {
        match self {
            EncoderSpec::Autoencoder { net } | EncoderSpec::Vae { net, .. } => Some(net),
            EncoderSpec::None | EncoderSpec::Pca { .. } => None,
        }
    }
}

/// The nonlinearity between a neural encoder's layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    /// Leaky ReLU with slope 0.01 below zero (PyTorch's default).
    LeakyRelu,
    Tanh,
    /// GELU with the exact (erf) form.
    Gelu,
}

impl Activation {
    pub const ALL: [Activation; 4] = [
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Tanh,
        Activation::Gelu,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
        }
    }
}

/// Shape and training of a neural encoder (autoencoder or VAE): a mirror-image MLP
/// `input → hidden… → latent → …hidden → input`, trained with Adam on mini-batches, with early
/// stopping on the validation rows' loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuralEncoderSpec {
    /// Widths of the encoder's hidden layers; the decoder mirrors them.
    pub hidden: Vec<usize>,
    pub latent: usize,
    pub activation: Activation,
    /// Dropout after each hidden layer while training (0 = none).
    pub dropout: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Stop after this many epochs without a better validation loss; `None` trains every
    /// epoch. The weights of the best epoch are kept.
    pub patience: Option<usize>,
    /// Seeds the initial weights, the batch order and dropout.
    pub seed: u64,
}

impl Default for NeuralEncoderSpec {
    fn default() -> Self {
        NeuralEncoderSpec {
            hidden: vec![128, 64],
            latent: 16,
            activation: Activation::Relu,
            dropout: 0.0,
            epochs: 100,
            batch_size: 64,
            learning_rate: 1e-3,
            patience: Some(10),
            seed: 42,
        }
    }
}

impl NeuralEncoderSpec {
    /// Checks the values a user can get wrong; the message names the field.
    pub fn check(&self) -> Result<(), String> {
        if self.latent == 0 {
            return Err("latent must be at least 1".into());
        }
        if self.hidden.contains(&0) {
            return Err("hidden layer widths must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout must be in [0, 1), not {}", self.dropout));
        }
        if self.epochs == 0 {
            return Err("epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return Err("batch_size must be at least 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(format!(
                "learning_rate must be positive, not {}",
                self.learning_rate
            ));
        }
        if self.patience == Some(0) {
            return Err("patience must be at least 1 (or none)".into());
        }
        Ok(())
    }
}

/// The regressor predicting one log return per horizon, with scikit-learn's parameter names.
/// Every regressor fits an intercept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RegressorSpec {
    Ridge {
        alpha: f64,
    },
    Lasso {
        alpha: f64,
        max_iter: usize,
        tol: f64,
    },
    #[serde(rename = "elasticnet")]
    ElasticNet {
        alpha: f64,
        l1_ratio: f64,
        max_iter: usize,
        tol: f64,
    },
    #[serde(rename = "rf")]
    RandomForest(ForestSpec),
}

/// How many features each split considers (scikit-learn's `max_features`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaxFeatures {
    /// Every feature (scikit-learn's `1.0`, the regression default).
    All,
    /// `max(1, ⌊√d⌋)`.
    Sqrt,
    /// `max(1, ⌊log₂ d⌋)`.
    Log2,
    /// `max(1, ⌊f·d⌋)` for `0 < f ≤ 1`.
    Fraction(f64),
    /// Exactly this many (at most d).
    Count(usize),
}

impl MaxFeatures {
    /// The number of features for `d` columns, as scikit-learn computes it.
    pub fn resolve(self, d: usize) -> usize {
        let n = match self {
            MaxFeatures::All => d,
            MaxFeatures::Sqrt => (d as f64).sqrt() as usize,
            MaxFeatures::Log2 => (d as f64).log2() as usize,
            MaxFeatures::Fraction(f) => (f * d as f64) as usize,
            MaxFeatures::Count(n) => n,
        };
        n.clamp(1, d.max(1))
    }

    /// `all` (or `1.0`), `sqrt`, `log2`, a fraction such as `0.33`, or a count such as `8`.
    pub fn parse(text: &str) -> Result<MaxFeatures, String> {
        let t = text.trim().to_ascii_lowercase();
        match t.as_str() {
            "all" | "1.0" | "none" => return Ok(MaxFeatures::All),
            "sqrt" => return Ok(MaxFeatures::Sqrt),
            "log2" => return Ok(MaxFeatures::Log2),
            _ => {}
        }
        if let Ok(n) = t.parse::<usize>() {
            return if n == 0 {
                Err("max_features must be at least 1".into())
            } else {
                Ok(MaxFeatures::Count(n))
            };
        }
        match t.parse::<f64>() {
            Ok(f) if f > 0.0 && f <= 1.0 => Ok(MaxFeatures::Fraction(f)),
            _ => Err(format!(
                "max_features must be all, sqrt, log2, a fraction in (0, 1] or a count, not {text:?}"
            )),
        }
    }
}

impl std::fmt::Display for MaxFeatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxFeatures::All => f.write_str("1.0"),
            MaxFeatures::Sqrt => f.write_str("sqrt"),
            MaxFeatures::Log2 => f.write_str("log2"),
            MaxFeatures::Fraction(x) => write!(f, "{x}"),
            MaxFeatures::Count(n) => write!(f, "{n}"),
        }
    }
}

/// A random forest with scikit-learn's parameter names and defaults (`RandomForestRegressor`),
/// plus `max_bins`: features are binned into at most this many quantile bins before the trees
/// are grown (histogram trees, as LightGBM and XGBoost's `hist` do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForestSpec {
    pub n_estimators: usize,
    /// `None`: grow until leaves are pure or too small to split.
    pub max_depth: Option<usize>,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub max_features: MaxFeatures,
    pub bootstrap: bool,
    /// Share of the rows each tree draws when bootstrapping (`None`: as many as there are).
    pub max_samples: Option<f64>,
    pub random_state: u64,
    /// Bins per feature, 2 to 256.
    pub max_bins: usize,
    /// Compute the out-of-bag R² (bootstrap only).
    pub oob_score: bool,
}

impl Default for ForestSpec {
    fn default() -> Self {
        ForestSpec {
            n_estimators: 100,
            max_depth: None,
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: MaxFeatures::All,
            bootstrap: true,
            max_samples: None,
            random_state: 42,
            max_bins: 256,
            oob_score: false,
        }
    }
}

impl ForestSpec {
    /// The first parameter scikit-learn would refuse, with its reason.
    pub fn check(&self) -> Result<(), String> {
        if self.n_estimators == 0 {
            return Err("n_estimators must be at least 1".into());
        }
        if self.max_depth == Some(0) {
            return Err("max_depth must be at least 1 (or none)".into());
        }
        if self.min_samples_split < 2 {
            return Err(format!(
                "min_samples_split must be at least 2, not {}",
                self.min_samples_split
            ));
        }
        if self.min_samples_leaf == 0 {
            return Err("min_samples_leaf must be at least 1".into());
        }
        match self.max_features {
            MaxFeatures::Fraction(f) if !(f > 0.0 && f <= 1.0) => {
                return Err(format!("max_features must be in (0, 1], not {f}"));
            }
            MaxFeatures::Count(0) => return Err("max_features must be at least 1".into()),
            _ => {}
        }
        if let Some(s) = self.max_samples {
            if !(s > 0.0 && s <= 1.0) {
                return Err(format!("max_samples must be in (0, 1], not {s}"));
            }
            if !self.bootstrap {
                return Err("max_samples needs bootstrap (scikit-learn refuses it without)".into());
            }
        }
        if !(2..=256).contains(&self.max_bins) {
            return Err(format!(
                "max_bins must be between 2 and 256, not {}",
                self.max_bins
            ));
        }
        if self.oob_score && !self.bootstrap {
            return Err("oob_score needs bootstrap".into());
        }
        Ok(())
    }

    /// Trees and main parameters, e.g. `rf(trees=100,max_features=1.0)`.
    pub fn label(&self) -> String {
        let depth = self
            .max_depth
            .map(|d| format!(",max_depth={d}"))
            .unwrap_or_default();
        format!(
            "rf(trees={}{depth},max_features={})",
            self.n_estimators, self.max_features
        )
    }
}

impl RegressorSpec {
    /// The kind's name: `ridge`, `lasso`, `elasticnet`, `rf`.
    pub const fn kind(&self) -> &'static str {
        match self {
            RegressorSpec::Ridge { .. } => "ridge",
            RegressorSpec::Lasso { .. } => "lasso",
            RegressorSpec::ElasticNet { .. } => "elasticnet",
            RegressorSpec::RandomForest(_) => "rf",
        }
    }

    /// Kind and main parameters, e.g. `ridge(alpha=1)`.
    pub fn label(&self) -> String {
        match self {
            RegressorSpec::Ridge { alpha } | RegressorSpec::Lasso { alpha, .. } => {
                format!("{}(alpha={alpha})", self.kind())
            }
            RegressorSpec::ElasticNet {
                alpha, l1_ratio, ..
            } => format!("elasticnet(alpha={alpha},l1_ratio={l1_ratio})"),
            RegressorSpec::RandomForest(forest) => forest.label(),
        }
    }
}

/// The regressor families, without their parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegressorKind {
    Ridge,
    Lasso,
    #[serde(rename = "elasticnet")]
    ElasticNet,
    #[serde(rename = "rf")]
    RandomForest,
}

impl RegressorKind {
    pub const ALL: [RegressorKind; 4] = [
        RegressorKind::Ridge,
        RegressorKind::Lasso,
        RegressorKind::ElasticNet,
        RegressorKind::RandomForest,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            RegressorKind::Ridge => "ridge",
            RegressorKind::Lasso => "lasso",
            RegressorKind::ElasticNet => "elasticnet",
            RegressorKind::RandomForest => "rf",
        }
    }

    /// Whether the kind has an `alpha` (the linear ones).
    pub const fn is_linear(self) -> bool {
        !matches!(self, RegressorKind::RandomForest)
    }

    /// 1.0 for ridge, 1e-5 for lasso and elastic net: targets are log returns of ~1e-3, and
    /// scikit-learn's default of 1.0 would zero every L1 coefficient.
    pub const fn default_alpha(self) -> f64 {
        match self {
            RegressorKind::Ridge => 1.0,
            RegressorKind::Lasso | RegressorKind::ElasticNet => 1e-5,
            RegressorKind::RandomForest => 0.0,
        }
    }
}

/// A grid of configurations: every encoder × regressor × alpha (the random forest has no
/// alpha: one configuration per encoder). An empty `alphas` uses each regressor's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelGrid {
    pub encoders: Vec<EncoderSpec>,
    pub regressors: Vec<RegressorKind>,
    pub alphas: Vec<f64>,
    /// ElasticNet's L1 share.
    pub l1_ratio: f64,
    /// Coordinate-descent sweeps and tolerance (lasso, elastic net).
    pub max_iter: usize,
    pub tol: f64,
    /// The random forest's parameters.
    #[serde(default)]
    pub forest: ForestSpec,
}

impl Default for ModelGrid {
    fn default() -> Self {
        ModelGrid {
            encoders: vec![EncoderSpec::None],
            regressors: vec![RegressorKind::Ridge],
            alphas: Vec::new(),
            l1_ratio: 0.5,
            max_iter: 1000,
            tol: 1e-4,
            forest: ForestSpec::default(),
        }
    }
}

impl ModelGrid {
    pub fn configs(&self) -> Vec<ModelConfig> {
        let mut out = Vec::new();
        for encoder in &self.encoders {
            for &kind in &self.regressors {
                for regressor in self.specs(kind) {
                    out.push(ModelConfig {
                        encoder: encoder.clone(),
                        regressor,
                    });
                }
            }
        }
        out
    }

    /// The regressor specs of one kind: one per alpha, or the one forest.
    fn specs(&self, kind: RegressorKind) -> Vec<RegressorSpec> {
        let alphas = if self.alphas.is_empty() {
            vec![kind.default_alpha()]
        } else {
            self.alphas.clone()
        };
        match kind {
            RegressorKind::RandomForest => vec![RegressorSpec::RandomForest(self.forest.clone())],
            RegressorKind::Ridge => alphas
                .into_iter()
                .map(|alpha| RegressorSpec::Ridge { alpha })
                .collect(),
            RegressorKind::Lasso => alphas
                .into_iter()
                .map(|alpha| RegressorSpec::Lasso {
                    alpha,
                    max_iter: self.max_iter,
                    tol: self.tol,
                })
                .collect(),
            RegressorKind::ElasticNet => alphas
                .into_iter()
                .map(|alpha| RegressorSpec::ElasticNet {
                    alpha,
                    l1_ratio: self.l1_ratio,
                    max_iter: self.max_iter,
                    tol: self.tol,
                })
                .collect(),
        }
    }
}

/// One encoder + regressor combination to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub encoder: EncoderSpec,
    pub regressor: RegressorSpec,
}

/// Train one or more models (a small grid) on one stored series. The feature matrix, split and
/// scaler are built once and shared by every configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRequest {
    pub symbol: String,
    pub timeframe: Timeframe,
    pub features: FeatureSpec,
    pub targets: TargetSpec,
    pub split: SplitSpec,
    pub models: Vec<ModelConfig>,
    pub device: DevicePreference,
    /// "Use GPU (if available)": run on the CPU instead of failing when no GPU is usable.
    pub gpu_if_available: bool,
}

/// Error measures of the naive forecast (no change: a log return of 0) on the same rows. It has
/// no direction, so no directional accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BaselineMetrics {
    pub mae: f64,
    pub rmse: f64,
    pub r2: f64,
}

/// Validation and test metrics of one horizon, beside the naive baseline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HorizonMetrics {
    pub horizon: u32,
    pub validation: RegressionMetrics,
    pub test: RegressionMetrics,
    pub baseline_validation: BaselineMetrics,
    pub baseline_test: BaselineMetrics,
}

/// Time ranges (bar times, inclusive) of the rows each split part used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitTimes {
    pub train: (i64, i64),
    pub validation: (i64, i64),
    pub test: (i64, i64),
}

/// What a stored model is: everything in its manifest but the payload layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    /// Version of the app that wrote the file.
    pub app_version: String,
    pub created_ts: i64,
    pub symbol: String,
    pub timeframe: Timeframe,
    pub features: FeatureSpec,
    pub horizons: Vec<u32>,
    /// Feature columns the model reads.
    pub n_features: usize,
    pub encoder: EncoderSpec,
    pub regressor: RegressorSpec,
    pub split: SplitTimes,
    pub train_rows: usize,
    pub metrics: Vec<HorizonMetrics>,
    /// Where the encoder and regressor were fitted.
    pub device: ResolvedDevice,
    /// Why the CPU ran instead of the requested GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fell_back: Option<String>,
    pub fit_ms: f64,
}

/// The models one training call produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub symbol: String,
    pub timeframe: Timeframe,
    pub rows: usize,
    pub n_features: usize,
    pub features_ms: f64,
    pub elapsed_ms: f64,
    pub models: Vec<StoredModel>,
}

/// A model and the file it is stored in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredModel {
    pub path: String,
    pub format_version: u32,
    pub info: ModelInfo,
}

/// How the predictions of an ensemble's models are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    #[default]
    Mean,
    Median,
    /// Weights proportional to 1 / validation MSE, per horizon.
    Weighted,
}

/// Which stored models to run, and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSelection {
    /// Model ids; empty means every stored model of `symbol` / `timeframe`.
    pub ids: Vec<String>,
    /// With ids: a check that the models are of this series. Without: required.
    pub symbol: Option<String>,
    pub timeframe: Option<Timeframe>,
    pub combine: Combine,
    pub device: DevicePreference,
    /// "GPU inference (if available)": the CPU runs, with a notice, when no GPU is usable.
    pub gpu_if_available: bool,
}

/// Forecast from the latest bar, or from the last bar at or before `at_ts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastRequest {
    pub selection: ModelSelection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ts: Option<i64>,
}

/// The combined forecast of one horizon. Bands are the 5 %, 50 % and 95 % quantiles of the
/// mixture of every model's prediction plus its validation residuals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HorizonForecast {
    pub horizon: u32,
    /// Combined log return.
    pub expected_return: f64,
    pub price: f64,
    pub q05: f64,
    pub q50: f64,
    pub q95: f64,
    /// Each model's predicted log return, in the order of `Forecast::models`.
    pub model_returns: Vec<f64>,
    /// The naive forecast's band: the origin close moved by the validation returns' quantiles.
    pub baseline_q05: f64,
    pub baseline_q95: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub symbol: String,
    pub timeframe: Timeframe,
    /// The bar the forecast is made from.
    pub origin_ts: i64,
    pub origin_close: f64,
    pub combine: Combine,
    pub models: Vec<String>,
    pub horizons: Vec<HorizonForecast>,
    pub device: ResolvedDevice,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fell_back: Option<String>,
    /// Building the feature rows from the stored bars.
    pub features_ms: f64,
    /// Running the models and combining them (bands included).
    pub inference_ms: f64,
}

/// Walk forward over a period, forecasting from every bar. By default the period is the test
/// part of the selected models (from the latest test start among them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestRequest {
    pub selection: ModelSelection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ts: Option<i64>,
}

/// Walk-forward results of one horizon, beside the naive baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestHorizon {
    pub horizon: u32,
    /// Forecasts whose outcome is known.
    pub n: usize,
    /// Mean absolute error of the forecast price.
    pub mae_price: f64,
    pub baseline_mae_price: f64,
    /// `1 − mae / baseline mae`: above 0 the model beats "no change".
    pub skill: f64,
    /// Share of forecasts whose predicted direction was right (zero moves left out).
    pub directional_accuracy: f64,
    /// Share of realized prices inside the q05–q95 band (0.90 is calibrated).
    pub coverage: f64,
    pub baseline_coverage: f64,
    /// Mean width of the band relative to the price.
    pub mean_band_width: f64,
    pub baseline_mean_band_width: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktestReport {
    pub symbol: String,
    pub timeframe: Timeframe,
    pub combine: Combine,
    pub models: Vec<String>,
    pub first_ts: i64,
    pub last_ts: i64,
    pub horizons: Vec<BacktestHorizon>,
    pub device: ResolvedDevice,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fell_back: Option<String>,
    /// Features, models and scoring; loading the models and probing devices excluded.
    pub elapsed_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_crosses_encoders_regressors_and_alphas() {
        let grid = ModelGrid {
            encoders: vec![
                EncoderSpec::None,
                EncoderSpec::Pca {
                    n_components: 8,
                    whiten: false,
                },
            ],
            regressors: vec![RegressorKind::Ridge, RegressorKind::ElasticNet],
            alphas: vec![0.1, 10.0],
            ..ModelGrid::default()
        };
        let configs = grid.configs();
        assert_eq!(configs.len(), 8);
        assert_eq!(configs[1].regressor, RegressorSpec::Ridge { alpha: 10.0 });
        assert!(matches!(
            configs[3].regressor,
            RegressorSpec::ElasticNet { l1_ratio, .. } if l1_ratio == 0.5
        ));
        // Without alphas, each regressor gets its default.
        let defaults = ModelGrid {
            regressors: vec![RegressorKind::Ridge, RegressorKind::Lasso],
            ..ModelGrid::default()
        }
        .configs();
        assert_eq!(defaults[0].regressor, RegressorSpec::Ridge { alpha: 1.0 });
        assert!(
            matches!(defaults[1].regressor, RegressorSpec::Lasso { alpha, .. } if alpha == 1e-5)
        );
    }
}
