//! The feature matrix and targets built from candles, as a [`FeatureSpec`] and a
//! [`TargetSpec`] describe them.
//!
//! Row `r` describes bar `warmup + r` using that bar and earlier ones only; the first
//! `warmup` bars are consumed by the longest lookback. Targets of a row are the log returns
//! from its close to the close `h` bars later, so the last `max(h)` rows have none: they are
//! the rows a forecast is made from.

use std::f64::consts::TAU;

use chrono::{DateTime, Datelike, Timelike};
use forexgpt_protocol::{FeatureSpec, TargetSpec};

use crate::candle::Candle;
use crate::indicators;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FeatureError {
    #[error(
        "{bars} bars are too few: the features need {warmup} bars of warm-up and the targets {horizon} more"
    )]
    TooFewBars {
        bars: usize,
        warmup: usize,
        horizon: usize,
    },
    #[error("invalid feature spec: {0}")]
    InvalidSpec(String),
}

/// A dense row-major matrix of features with the bar time and close of each row.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    pub columns: Vec<String>,
    /// `rows × columns.len()` values, row-major.
    pub values: Vec<f64>,
    pub ts: Vec<i64>,
    pub close: Vec<f64>,
    /// Index of the first row's bar in the candle series.
    pub warmup: usize,
}

impl FeatureMatrix {
    pub fn rows(&self) -> usize {
        self.ts.len()
    }

    pub fn n_columns(&self) -> usize {
        self.columns.len()
    }

    pub fn row(&self, r: usize) -> &[f64] {
        let c = self.n_columns();
        &self.values[r * c..(r + 1) * c]
    }

    pub fn column(&self, j: usize) -> impl Iterator<Item = f64> + '_ {
        self.values
            .iter()
            .skip(j)
            .step_by(self.n_columns().max(1))
            .copied()
    }
}

/// Log-return targets: `values[r * H + k]` is `ln(C[t+h_k] / C[t])` for row `r`.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub horizons: Vec<u32>,
    pub values: Vec<f64>,
    /// Rows (from the start of the feature matrix) that have every target.
    pub rows: usize,
}

impl Targets {
    pub fn row(&self, r: usize) -> &[f64] {
        let h = self.horizons.len();
        &self.values[r * h..(r + 1) * h]
    }
}

fn check_spec(spec: &FeatureSpec) -> Result<(), FeatureError> {
    let periods = spec
        .volatility_periods
        .iter()
        .chain(&spec.rsi_periods)
        .chain(&spec.atr_periods)
        .chain(&spec.bollinger_periods)
        .chain(&spec.stochastic_periods);
    if spec.window == 0 {
        return Err(FeatureError::InvalidSpec(
            "window must be at least 1".into(),
        ));
    }
    if periods.clone().any(|&p| p < 2) {
        return Err(FeatureError::InvalidSpec(
            "every indicator lookback must be at least 2".into(),
        ));
    }
    if let Some(m) = spec
        .macd
        .iter()
        .find(|m| m.fast == 0 || m.signal == 0 || m.fast >= m.slow)
    {
        return Err(FeatureError::InvalidSpec(format!(
            "MACD needs 0 < fast < slow and signal > 0 (got {}/{}/{})",
            m.fast, m.slow, m.signal
        )));
    }
    Ok(())
}

/// Full-length columns with their names, built one indicator at a time.
struct ColumnSet {
    names: Vec<String>,
    columns: Vec<Vec<f64>>,
}

impl ColumnSet {
    fn push(&mut self, name: String, column: Vec<f64>) {
        self.names.push(name);
        self.columns.push(column);
    }
}

/// The index of the first bar at which every column is defined.
fn first_complete_row(columns: &[Vec<f64>], len: usize) -> usize {
    columns
        .iter()
        .map(|c| c.iter().position(|v| !v.is_nan()).unwrap_or(len))
        .max()
        .unwrap_or(0)
}

/// Builds the feature matrix of `candles` (in time order).
pub fn build_features(
    candles: &[Candle],
    spec: &FeatureSpec,
) -> Result<FeatureMatrix, FeatureError> {
    check_spec(spec)?;
    let n = candles.len();
    let field = |f: fn(&Candle) -> f64| candles.iter().map(f).collect::<Vec<f64>>();
    let (open, high, low, close) = (
        field(|c| c.open),
        field(|c| c.high),
        field(|c| c.low),
        field(|c| c.close),
    );
    let ln = |x: &[f64]| x.iter().map(|v| v.ln()).collect::<Vec<f64>>();
    let (ln_open, ln_high, ln_low, ln_close) = (ln(&open), ln(&high), ln(&low), ln(&close));

    let mut set = ColumnSet {
        names: Vec::new(),
        columns: Vec::new(),
    };
    let window = spec.window as usize;
    let lagged = |series: &[f64], k: usize| -> Vec<f64> {
        (0..n)
            .map(|t| {
                if t >= k {
                    series[t - k] - ln_close[t]
                } else {
                    f64::NAN
                }
            })
            .collect()
    };
    for k in 0..window {
        set.push(format!("ln_open_lag{k}"), lagged(&ln_open, k));
        set.push(format!("ln_high_lag{k}"), lagged(&ln_high, k));
        set.push(format!("ln_low_lag{k}"), lagged(&ln_low, k));
        if k > 0 {
            set.push(format!("ln_close_lag{k}"), lagged(&ln_close, k));
        }
    }
    if spec.calendar {
        let angle = |f: fn(&DateTime<chrono::Utc>) -> f64| -> Vec<f64> {
            candles
                .iter()
                .map(|c| DateTime::from_timestamp(c.ts, 0).map_or(f64::NAN, |t| f(&t)))
                .collect()
        };
        let hour = angle(|t| TAU * f64::from(t.hour()) / 24.0);
        let weekday = angle(|t| TAU * f64::from(t.weekday().num_days_from_monday()) / 7.0);
        set.push("hour_sin".into(), hour.iter().map(|a| a.sin()).collect());
        set.push("hour_cos".into(), hour.iter().map(|a| a.cos()).collect());
        set.push(
            "weekday_sin".into(),
            weekday.iter().map(|a| a.sin()).collect(),
        );
        set.push(
            "weekday_cos".into(),
            weekday.iter().map(|a| a.cos()).collect(),
        );
    }
    for &p in &spec.volatility_periods {
        set.push(
            format!("realized_vol_{p}"),
            indicators::realized_volatility(&ln_close, p as usize),
        );
    }
    for &p in &spec.rsi_periods {
        let rsi = indicators::rsi(&close, p as usize);
        set.push(format!("rsi_{p}"), rsi.iter().map(|v| v / 100.0).collect());
    }
    let per_close =
        |x: Vec<f64>| -> Vec<f64> { x.iter().zip(&close).map(|(v, c)| v / c).collect() };
    for &p in &spec.atr_periods {
        set.push(
            format!("atr_{p}"),
            per_close(indicators::atr(&high, &low, &close, p as usize)),
        );
    }
    for &p in &spec.bollinger_periods {
        set.push(
            format!("bollinger_pb_{p}"),
            indicators::bollinger_percent_b(&close, p as usize, 2.0),
        );
    }
    for &p in &spec.stochastic_periods {
        let (k, d) = indicators::stochastic(&high, &low, &close, p as usize, 3);
        set.push(
            format!("stoch_k_{p}"),
            k.iter().map(|v| v / 100.0).collect(),
        );
        set.push(
            format!("stoch_d_{p}"),
            d.iter().map(|v| v / 100.0).collect(),
        );
    }
    for m in &spec.macd {
        let (line, signal, hist) =
            indicators::macd(&close, m.fast as usize, m.slow as usize, m.signal as usize);
        let tag = format!("{}_{}_{}", m.fast, m.slow, m.signal);
        set.push(format!("macd_{tag}"), per_close(line));
        set.push(format!("macd_signal_{tag}"), per_close(signal));
        set.push(format!("macd_hist_{tag}"), per_close(hist));
    }

    let warmup = first_complete_row(&set.columns, n);
    let rows = n.saturating_sub(warmup);
    if rows == 0 {
        return Err(FeatureError::TooFewBars {
            bars: n,
            warmup,
            horizon: 0,
        });
    }
    let n_cols = set.columns.len();
    let mut values = vec![0.0; rows * n_cols];
    for (j, column) in set.columns.iter().enumerate() {
        for (r, v) in column[warmup..].iter().enumerate() {
            values[r * n_cols + j] = *v;
        }
    }
    Ok(FeatureMatrix {
        columns: set.names,
        values,
        ts: candles[warmup..].iter().map(|c| c.ts).collect(),
        close: close[warmup..].to_vec(),
        warmup,
    })
}

/// Targets for the rows of `features`; rows without a full set of targets are cut off.
pub fn build_targets(features: &FeatureMatrix, spec: &TargetSpec) -> Result<Targets, FeatureError> {
    let max_h = spec.horizons.iter().copied().max().unwrap_or(0) as usize;
    if spec.horizons.is_empty() || spec.horizons.contains(&0) {
        return Err(FeatureError::InvalidSpec(
            "horizons must be a non-empty list of bar counts ≥ 1".into(),
        ));
    }
    let rows = features.rows().saturating_sub(max_h);
    if rows == 0 {
        return Err(FeatureError::TooFewBars {
            bars: features.rows() + features.warmup,
            warmup: features.warmup,
            horizon: max_h,
        });
    }
    let ln_close: Vec<f64> = features.close.iter().map(|c| c.ln()).collect();
    let mut values = Vec::with_capacity(rows * spec.horizons.len());
    for r in 0..rows {
        for &h in &spec.horizons {
            values.push(ln_close[r + h as usize] - ln_close[r]);
        }
    }
    Ok(Targets {
        horizons: spec.horizons.clone(),
        values,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;

    #[test]
    fn default_spec_shape_and_warmup() {
        let candles = synthetic::random_walk_hourly(500, 7);
        let fm = build_features(&candles, &FeatureSpec::default()).unwrap();
        // 16 lags × 4 − 1, 4 calendar, 3 vol, 3 rsi, 3 atr, 3 bollinger, 6 stochastic, 3 macd.
        assert_eq!(fm.n_columns(), 63 + 4 + 3 + 3 + 3 + 3 + 6 + 3);
        // The longest lookback is realized volatility over 48 returns.
        assert_eq!(fm.warmup, 48);
        assert_eq!(fm.rows(), 500 - 48);
        assert!(fm.values.iter().all(|v| v.is_finite()));
        let names: std::collections::HashSet<_> = fm.columns.iter().collect();
        assert_eq!(names.len(), fm.n_columns(), "column names are unique");
    }

    #[test]
    fn lag_features_and_targets_are_log_ratios() {
        let candles = synthetic::random_walk_hourly(200, 3);
        let spec = FeatureSpec {
            window: 3,
            calendar: false,
            volatility_periods: vec![],
            rsi_periods: vec![],
            atr_periods: vec![],
            bollinger_periods: vec![],
            stochastic_periods: vec![],
            macd: vec![],
        };
        let fm = build_features(&candles, &spec).unwrap();
        assert_eq!(fm.warmup, 2);
        let t = 10 + fm.warmup;
        let row = fm.row(10);
        assert!((row[0] - (candles[t].open / candles[t].close).ln()).abs() < 1e-12);
        let close_lag2 = fm
            .columns
            .iter()
            .position(|c| c == "ln_close_lag2")
            .unwrap();
        assert!((row[close_lag2] - (candles[t - 2].close / candles[t].close).ln()).abs() < 1e-12);
        let targets = build_targets(
            &fm,
            &TargetSpec {
                horizons: vec![1, 5],
            },
        )
        .unwrap();
        assert_eq!(targets.rows, fm.rows() - 5);
        assert!(
            (targets.row(10)[1] - (candles[t + 5].close / candles[t].close).ln()).abs() < 1e-12
        );
    }

    #[test]
    fn too_few_bars_and_bad_specs_are_named() {
        let candles = synthetic::random_walk_hourly(40, 1);
        assert!(matches!(
            build_features(&candles, &FeatureSpec::default()),
            Err(FeatureError::TooFewBars { .. })
        ));
        let bad = FeatureSpec {
            rsi_periods: vec![1],
            ..FeatureSpec::default()
        };
        assert!(matches!(
            build_features(&candles, &bad),
            Err(FeatureError::InvalidSpec(_))
        ));
        let fm = build_features(
            &synthetic::random_walk_hourly(100, 1),
            &FeatureSpec::default(),
        )
        .unwrap();
        assert!(build_targets(&fm, &TargetSpec { horizons: vec![] }).is_err());
        assert!(matches!(
            build_targets(&fm, &TargetSpec { horizons: vec![80] }),
            Err(FeatureError::TooFewBars { .. })
        ));
    }
}
