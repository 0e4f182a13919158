//! What a model is made of: encoder and regressor specifications with scikit-learn's
//! parameter names and defaults, and the regressor families.

use serde::{Deserialize, Serialize};

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
            EncoderSpec::Autoencoder { net } => format!("ae{}{}", net.latent, seed_suffix(net)),
            EncoderSpec::Vae { net, .. } => format!("vae{}{}", net.latent, seed_suffix(net)),
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

/// `s<seed>` for a network not seeded with the default seed (ensembles of seeds), else empty.
fn seed_suffix(net: &NeuralEncoderSpec) -> String {
    if net.seed == NeuralEncoderSpec::default().seed {
        String::new()
    } else {
        format!("s{}", net.seed)
    }
}

/// The nonlinearity between a neural encoder's layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
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
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum RegressorKind {
    Ridge,
    Lasso,
    #[serde(rename = "elasticnet")]
    #[cfg_attr(feature = "clap", value(name = "elasticnet"))]
    ElasticNet,
    /// Random forest.
    #[serde(rename = "rf")]
    #[cfg_attr(feature = "clap", value(name = "rf"))]
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
