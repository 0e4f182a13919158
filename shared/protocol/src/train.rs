//! Training: the grid of configurations a request trains, what each stored model records
//! (metrics beside the naive forecast, where it was fitted), and the report of one call.

use serde::{Deserialize, Serialize};

use crate::{
    DeviceRequest, EncoderSpec, FeatureSpec, ForestSpec, RegressionMetrics, RegressorKind,
    RegressorSpec, ResolvedDevice, SplitSpec, TargetSpec, Timeframe,
};

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
    /// Where to fit the encoders and regressors.
    pub device: DeviceRequest,
}

/// Error measures of the naive forecast (no change: a log return of 0) on the same rows. It has
/// no direction, so no directional accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BaselineMetrics {
    pub mae: f64,
    pub rmse: f64,
    pub r2: f64,
}

/// What a model's error measures are in: the training targets are log returns, a backtest
/// scores prices. Serialised beside the numbers so a JSON reader knows without the docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorUnit {
    /// `ln(close[t+h] / close[t])`: 1e-3 is a move of about 0.1 %.
    #[default]
    LogReturn,
    /// The quote currency's price (e.g. USD per EUR).
    Price,
}

impl ErrorUnit {
    pub fn label(self) -> &'static str {
        match self {
            ErrorUnit::LogReturn => "log return",
            ErrorUnit::Price => "price",
        }
    }
}

/// Validation and test metrics of one horizon, beside the naive baseline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HorizonMetrics {
    pub horizon: u32,
    /// The unit of every MAE and RMSE here (files written before it existed: log returns).
    #[serde(default)]
    pub unit: ErrorUnit,
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
    /// Feature columns that were constant on the training rows, left out of the model (it
    /// reads them but ignores them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped_columns: Vec<String>,
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
