//! What the feature matrix holds, how it is split, and the metrics reported on it.

use serde::{Deserialize, Serialize};

/// One MACD line: EMA(`fast`) − EMA(`slow`) of the close, its EMA(`signal`) and their difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacdSpec {
    pub fast: u32,
    pub slow: u32,
    pub signal: u32,
}

/// The inputs built from candles. Every row describes one bar `t` using bars up to `t` only.
/// Saved with each model so that forecasting rebuilds exactly the columns it was trained on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureSpec {
    /// Bars of windowed OHLC: `ln(O|H|L|C[t-k] / C[t])` for `k` in `0..window`.
    pub window: u32,
    /// Hour-of-day and weekday as sin/cos pairs (UTC).
    pub calendar: bool,
    /// With `calendar`: the hour-of-day pair. Off for daily bars, which all open at one hour
    /// ([`FeatureSpec::fitted_to`] decides; files without the field had it on).
    pub hour_of_day: bool,
    /// Realized volatility `sqrt(mean(r²))` of log returns over each lookback.
    pub volatility_periods: Vec<u32>,
    /// Wilder RSI, scaled to 0..1.
    pub rsi_periods: Vec<u32>,
    /// Wilder ATR divided by the close.
    pub atr_periods: Vec<u32>,
    /// Bollinger %B with bands at ±2 population standard deviations.
    pub bollinger_periods: Vec<u32>,
    /// Stochastic %K and its 3-bar mean %D, scaled to 0..1.
    pub stochastic_periods: Vec<u32>,
    /// MACD, signal and histogram, divided by the close.
    pub macd: Vec<MacdSpec>,
}

impl Default for FeatureSpec {
    fn default() -> Self {
        FeatureSpec {
            window: 16,
            calendar: true,
            hour_of_day: true,
            volatility_periods: vec![12, 24, 48],
            rsi_periods: vec![7, 14, 28],
            atr_periods: vec![7, 14, 28],
            bollinger_periods: vec![10, 20, 40],
            stochastic_periods: vec![7, 14, 28],
            macd: vec![MacdSpec {
                fast: 12,
                slow: 26,
                signal: 9,
            }],
        }
    }
}

impl FeatureSpec {
    /// The spec as it applies to bars of `timeframe`: no hour-of-day columns on daily bars,
    /// where they would be constant. Training stores the fitted spec with the model, so a
    /// forecast rebuilds the same columns.
    pub fn fitted_to(mut self, timeframe: crate::Timeframe) -> FeatureSpec {
        if timeframe.seconds() >= 86_400 {
            self.hour_of_day = false;
        }
        self
    }
}

/// Targets are log returns `ln(C[t+h] / C[t])` for each horizon `h` (in bars).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TargetSpec {
    pub horizons: Vec<u32>,
}

impl Default for TargetSpec {
    fn default() -> Self {
        TargetSpec {
            horizons: vec![1, 4, 12, 24],
        }
    }
}

/// Chronological train / validation / test split. The test share is what remains.
/// `purge` rows are dropped before the validation and the test part so that no input window
/// of one part overlaps the target span of the part before it; by default it is
/// `window + max horizon`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SplitSpec {
    pub train_fraction: f64,
    pub validation_fraction: f64,
    pub purge: Option<u32>,
}

impl Default for SplitSpec {
    fn default() -> Self {
        SplitSpec {
            train_fraction: 0.70,
            validation_fraction: 0.15,
            purge: None,
        }
    }
}

/// Row ranges (half-open) of each split part within the labelled rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitSummary {
    pub train: (usize, usize),
    pub validation: (usize, usize),
    pub test: (usize, usize),
    pub purge: usize,
}

/// Mean, spread and range of one feature column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSummary {
    pub name: String,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

/// Shape and summary of a feature matrix built from one stored series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSummary {
    pub symbol: String,
    pub timeframe: crate::Timeframe,
    pub bars: usize,
    /// Rows with every feature defined (after the warm-up).
    pub rows: usize,
    /// Rows that also have every target (the last `max horizon` rows have none).
    pub labelled_rows: usize,
    pub warmup: usize,
    pub first_ts: i64,
    pub last_ts: i64,
    pub horizons: Vec<u32>,
    pub split: SplitSummary,
    pub columns: Vec<ColumnSummary>,
    pub elapsed_ms: f64,
}

/// What `features --export` wrote: the matrix with times, closes, targets and split labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureExport {
    pub path: String,
    /// `csv` or `parquet`.
    pub format: String,
    pub rows: usize,
    /// Every column in file order: `time`, `close`, the features, `target_h…`, `split`.
    pub columns: Vec<String>,
    pub elapsed_ms: f64,
}

/// Error measures of a forecast of log returns for one horizon.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    pub mae: f64,
    pub rmse: f64,
    /// Coefficient of determination as scikit-learn's `r2_score` computes it.
    pub r2: f64,
    /// Share of rows whose predicted sign matches the realized one (rows with a zero
    /// realized return are left out).
    pub directional_accuracy: f64,
    pub n: usize,
}
