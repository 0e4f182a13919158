//! Forecasts and backtests: which stored models run and where, the combined forecast with its
//! bands, and walk-forward scores beside the naive forecast.

use serde::{Deserialize, Serialize};

use crate::{DeviceRequest, ResolvedDevice, Timeframe};

/// How the predictions of an ensemble's models are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
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
    /// Where to run the models ("GPU inference (if available)" in the app).
    pub device: DeviceRequest,
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
    /// Mean absolute error of the forecast price, in the quote currency (the field names say
    /// the unit; training metrics are in log returns instead).
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
