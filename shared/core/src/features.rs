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

use rayon::prelude::*;

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

/// A full-length indicator column (NaN in its warm-up), computed on demand.
type ColumnJob<'a> = (String, Box<dyn Fn() -> Vec<f64> + Send + Sync + 'a>);

/// The index of the first bar at which every column is defined.
fn first_complete_row(columns: &[Vec<f64>], len: usize) -> usize {
    columns
        .iter()
        .map(|c| c.iter().position(|v| !v.is_nan()).unwrap_or(len))
        .max()
        .unwrap_or(0)
}

/// Bar series in the shapes the indicators need.
struct Series {
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    ln_open: Vec<f64>,
    ln_high: Vec<f64>,
    ln_low: Vec<f64>,
    ln_close: Vec<f64>,
}

impl Series {
    fn new(candles: &[Candle]) -> Self {
        let field = |f: fn(&Candle) -> f64| candles.iter().map(f).collect::<Vec<f64>>();
        let ln = |f: fn(&Candle) -> f64| candles.iter().map(|c| f(c).ln()).collect::<Vec<f64>>();
        Series {
            high: field(|c| c.high),
            low: field(|c| c.low),
            close: field(|c| c.close),
            ln_open: ln(|c| c.open),
            ln_high: ln(|c| c.high),
            ln_low: ln(|c| c.low),
            ln_close: ln(|c| c.close),
        }
    }

    fn per_close(&self, x: Vec<f64>) -> Vec<f64> {
        x.iter().zip(&self.close).map(|(v, c)| v / c).collect()
    }
}

/// Every non-window column of `spec`, in output order, as jobs that can run in parallel.
fn indicator_jobs<'a>(
    candles: &'a [Candle],
    s: &'a Series,
    spec: &'a FeatureSpec,
) -> Vec<ColumnJob<'a>> {
    let mut jobs: Vec<ColumnJob<'a>> = Vec::new();
    if spec.calendar {
        let angle = move |f: fn(&DateTime<chrono::Utc>) -> f64, g: fn(f64) -> f64| -> Vec<f64> {
            candles
                .iter()
                .map(|c| DateTime::from_timestamp(c.ts, 0).map_or(f64::NAN, |t| g(f(&t))))
                .collect()
        };
        let hour = |t: &DateTime<chrono::Utc>| TAU * f64::from(t.hour()) / 24.0;
        let weekday =
            |t: &DateTime<chrono::Utc>| TAU * f64::from(t.weekday().num_days_from_monday()) / 7.0;
        if spec.hour_of_day {
            jobs.push(("hour_sin".into(), Box::new(move || angle(hour, f64::sin))));
            jobs.push(("hour_cos".into(), Box::new(move || angle(hour, f64::cos))));
        }
        jobs.push((
            "weekday_sin".into(),
            Box::new(move || angle(weekday, f64::sin)),
        ));
        jobs.push((
            "weekday_cos".into(),
            Box::new(move || angle(weekday, f64::cos)),
        ));
    }
    for &p in &spec.volatility_periods {
        jobs.push((
            format!("realized_vol_{p}"),
            Box::new(move || indicators::realized_volatility(&s.ln_close, p as usize)),
        ));
    }
    for &p in &spec.rsi_periods {
        jobs.push((
            format!("rsi_{p}"),
            Box::new(move || {
                indicators::rsi(&s.close, p as usize)
                    .iter()
                    .map(|v| v / 100.0)
                    .collect()
            }),
        ));
    }
    for &p in &spec.atr_periods {
        jobs.push((
            format!("atr_{p}"),
            Box::new(move || s.per_close(indicators::atr(&s.high, &s.low, &s.close, p as usize))),
        ));
    }
    for &p in &spec.bollinger_periods {
        jobs.push((
            format!("bollinger_pb_{p}"),
            Box::new(move || indicators::bollinger_percent_b(&s.close, p as usize, 2.0)),
        ));
    }
    for &p in &spec.stochastic_periods {
        let stoch = move || indicators::stochastic(&s.high, &s.low, &s.close, p as usize, 3);
        jobs.push((
            format!("stoch_k_{p}"),
            Box::new(move || stoch().0.iter().map(|v| v / 100.0).collect()),
        ));
        jobs.push((
            format!("stoch_d_{p}"),
            Box::new(move || stoch().1.iter().map(|v| v / 100.0).collect()),
        ));
    }
    for m in &spec.macd {
        let tag = format!("{}_{}_{}", m.fast, m.slow, m.signal);
        let macd = move || {
            indicators::macd(
                &s.close,
                m.fast as usize,
                m.slow as usize,
                m.signal as usize,
            )
        };
        jobs.push((
            format!("macd_{tag}"),
            Box::new(move || s.per_close(macd().0)),
        ));
        jobs.push((
            format!("macd_signal_{tag}"),
            Box::new(move || s.per_close(macd().1)),
        ));
        jobs.push((
            format!("macd_hist_{tag}"),
            Box::new(move || s.per_close(macd().2)),
        ));
    }
    jobs
}

/// Names of the windowed OHLC columns, in output order.
fn window_column_names(window: usize) -> Vec<String> {
    let mut names = Vec::with_capacity(4 * window);
    for k in 0..window {
        names.push(format!("ln_open_lag{k}"));
        names.push(format!("ln_high_lag{k}"));
        names.push(format!("ln_low_lag{k}"));
        if k > 0 {
            names.push(format!("ln_close_lag{k}"));
        }
    }
    names
}

/// Rows written per parallel task.
const ROWS_PER_TASK: usize = 2048;

/// Builds the feature matrix of `candles` (in time order). Indicator columns are computed in
/// parallel, then rows are written straight into the row-major matrix, also in parallel.
pub fn build_features(
    candles: &[Candle],
    spec: &FeatureSpec,
) -> Result<FeatureMatrix, FeatureError> {
    check_spec(spec)?;
    let n = candles.len();
    let series = Series::new(candles);
    let jobs = indicator_jobs(candles, &series, spec);
    let indicator_columns: Vec<Vec<f64>> = jobs.par_iter().map(|(_, job)| job()).collect();

    let window = spec.window as usize;
    let warmup = first_complete_row(&indicator_columns, n).max(window - 1);
    let rows = n.saturating_sub(warmup);
    if rows == 0 {
        return Err(FeatureError::TooFewBars {
            bars: n,
            warmup,
            horizon: 0,
        });
    }
    let mut columns = window_column_names(window);
    columns.extend(jobs.into_iter().map(|(name, _)| name));
    let n_cols = columns.len();
    let mut values = vec![0.0; rows * n_cols];
    values
        .par_chunks_mut(n_cols * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(chunk, block)| {
            for (i, row) in block.chunks_exact_mut(n_cols).enumerate() {
                let t = warmup + chunk * ROWS_PER_TASK + i;
                let base = series.ln_close[t];
                let mut j = 0;
                for k in 0..window {
                    row[j] = series.ln_open[t - k] - base;
                    row[j + 1] = series.ln_high[t - k] - base;
                    row[j + 2] = series.ln_low[t - k] - base;
                    j += 3;
                    if k > 0 {
                        row[j] = series.ln_close[t - k] - base;
                        j += 1;
                    }
                }
                for column in &indicator_columns {
                    row[j] = column[t];
                    j += 1;
                }
            }
        });
    Ok(FeatureMatrix {
        columns,
        values,
        ts: candles[warmup..].iter().map(|c| c.ts).collect(),
        close: series.close[warmup..].to_vec(),
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
    use forexgpt_protocol::Timeframe;

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
    fn daily_bars_get_no_hour_columns() {
        let candles = synthetic::random_walk_hourly(500, 7);
        let hourly = FeatureSpec::default().fitted_to(Timeframe::H1);
        let daily = FeatureSpec::default().fitted_to(Timeframe::D1);
        assert!(hourly.hour_of_day && !daily.hour_of_day && daily.calendar);
        let with = build_features(&candles, &hourly).unwrap();
        let without = build_features(&candles, &daily).unwrap();
        assert!(with.columns.iter().any(|c| c == "hour_sin"));
        assert!(!without.columns.iter().any(|c| c.starts_with("hour_")));
        assert!(without.columns.iter().any(|c| c == "weekday_sin"));
        assert_eq!(with.n_columns(), without.n_columns() + 2);
    }

    #[test]
    fn lag_features_and_targets_are_log_ratios() {
        let candles = synthetic::random_walk_hourly(200, 3);
        let spec = FeatureSpec {
            window: 3,
            calendar: false,
            hour_of_day: false,
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
