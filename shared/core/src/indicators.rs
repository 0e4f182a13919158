//! Technical indicators over whole series, one value per bar, `NaN` during the warm-up.
//!
//! Definitions follow the Python `ta` package (0.11), which the golden tests use as the
//! independent oracle (`tests/oracle/gen_features.py`):
//! - RSI: Wilder smoothing as an EMA with α = 1/n over up/down moves, the first move taken as 0;
//!   100 when there were no down moves.
//! - ATR: mean true range of the first n bars, then Wilder's recursion; the first bar's true
//!   range is high − low.
//! - MACD: EMAs with α = 2/(span+1) seeded with the first value; the signal EMA starts at the
//!   first defined MACD value.
//! - Bollinger %B: population (ddof = 0) standard deviation.
//! - Stochastic %K over lowest low / highest high of n bars, %D its 3-bar mean.

/// EMA with smoothing `alpha`, seeded with the first value, defined from index `min_periods - 1`
/// of the defined (non-NaN) input (pandas `ewm(adjust=False, min_periods=…)`). Leading NaNs of
/// `x` are skipped.
pub fn ema(x: &[f64], alpha: f64, min_periods: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.len()];
    let Some(start) = x.iter().position(|v| !v.is_nan()) else {
        return out;
    };
    let mut value = x[start];
    for (i, &xi) in x.iter().enumerate().skip(start) {
        if i > start {
            value = (1.0 - alpha) * value + alpha * xi;
        }
        if i + 1 >= start + min_periods.max(1) {
            out[i] = value;
        }
    }
    out
}

pub fn rsi(close: &[f64], n: usize) -> Vec<f64> {
    let mut up = vec![0.0; close.len()];
    let mut down = vec![0.0; close.len()];
    for i in 1..close.len() {
        let d = close[i] - close[i - 1];
        if d > 0.0 {
            up[i] = d;
        } else {
            down[i] = -d;
        }
    }
    let alpha = 1.0 / n as f64;
    let up = ema(&up, alpha, n);
    let down = ema(&down, alpha, n);
    up.iter()
        .zip(&down)
        .map(|(&u, &d)| {
            if u.is_nan() || d.is_nan() {
                f64::NAN
            } else if d == 0.0 {
                100.0
            } else {
                100.0 - 100.0 / (1.0 + u / d)
            }
        })
        .collect()
}

pub fn true_range(high: &[f64], low: &[f64], close: &[f64]) -> Vec<f64> {
    (0..close.len())
        .map(|i| {
            let hl = high[i] - low[i];
            if i == 0 {
                hl
            } else {
                let pc = close[i - 1];
                hl.max((high[i] - pc).abs()).max((low[i] - pc).abs())
            }
        })
        .collect()
}

pub fn atr(high: &[f64], low: &[f64], close: &[f64], n: usize) -> Vec<f64> {
    let tr = true_range(high, low, close);
    let mut out = vec![f64::NAN; tr.len()];
    if n == 0 || tr.len() < n {
        return out;
    }
    let mut value = tr[..n].iter().sum::<f64>() / n as f64;
    out[n - 1] = value;
    for i in n..tr.len() {
        value = (value * (n as f64 - 1.0) + tr[i]) / n as f64;
        out[i] = value;
    }
    out
}

/// MACD line, signal line and histogram.
pub fn macd(
    close: &[f64],
    fast: usize,
    slow: usize,
    signal: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let span_alpha = |span: usize| 2.0 / (span as f64 + 1.0);
    let ema_fast = ema(close, span_alpha(fast), fast);
    let ema_slow = ema(close, span_alpha(slow), slow);
    let line: Vec<f64> = ema_fast.iter().zip(&ema_slow).map(|(f, s)| f - s).collect();
    let sig = ema(&line, span_alpha(signal), signal);
    let hist = line.iter().zip(&sig).map(|(l, s)| l - s).collect();
    (line, sig, hist)
}

/// Mean and population standard deviation of each trailing window of `n` values.
fn rolling_mean_std(x: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut mean = vec![f64::NAN; x.len()];
    let mut std = vec![f64::NAN; x.len()];
    if n == 0 {
        return (mean, std);
    }
    for i in n.saturating_sub(1)..x.len() {
        let w = &x[i + 1 - n..=i];
        let m = w.iter().sum::<f64>() / n as f64;
        let var = w.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n as f64;
        mean[i] = m;
        std[i] = var.sqrt();
    }
    (mean, std)
}

/// Bollinger %B: where the close sits between the bands at ±`k` standard deviations
/// (0.5 when the bands collapse on a flat window).
pub fn bollinger_percent_b(close: &[f64], n: usize, k: f64) -> Vec<f64> {
    let (mean, std) = rolling_mean_std(close, n);
    (0..close.len())
        .map(|i| {
            let (lo, hi) = (mean[i] - k * std[i], mean[i] + k * std[i]);
            if mean[i].is_nan() {
                f64::NAN
            } else if hi == lo {
                0.5
            } else {
                (close[i] - lo) / (hi - lo)
            }
        })
        .collect()
}

/// Stochastic %K (0..100) and %D (its `smooth`-bar mean); %K is 50 on a flat window.
pub fn stochastic(
    high: &[f64],
    low: &[f64],
    close: &[f64],
    n: usize,
    smooth: usize,
) -> (Vec<f64>, Vec<f64>) {
    let len = close.len();
    let mut k = vec![f64::NAN; len];
    if n > 0 {
        for i in n.saturating_sub(1)..len {
            let lo = low[i + 1 - n..=i]
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min);
            let hi = high[i + 1 - n..=i]
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            k[i] = if hi > lo {
                100.0 * (close[i] - lo) / (hi - lo)
            } else {
                50.0
            };
        }
    }
    let mut d = vec![f64::NAN; len];
    for i in 0..len {
        if i + 1 >= smooth && smooth > 0 {
            let w = &k[i + 1 - smooth..=i];
            if w.iter().all(|v| !v.is_nan()) {
                d[i] = w.iter().sum::<f64>() / smooth as f64;
            }
        }
    }
    (k, d)
}

/// Realized volatility `sqrt(mean(r²))` of the last `n` one-bar log returns (`ln_close` given).
pub fn realized_volatility(ln_close: &[f64], n: usize) -> Vec<f64> {
    let len = ln_close.len();
    let mut out = vec![f64::NAN; len];
    if n == 0 {
        return out;
    }
    let sq: Vec<f64> = (0..len)
        .map(|i| {
            if i == 0 {
                0.0
            } else {
                (ln_close[i] - ln_close[i - 1]).powi(2)
            }
        })
        .collect();
    for i in n..len {
        out[i] = (sq[i + 1 - n..=i].iter().sum::<f64>() / n as f64).sqrt();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_matches_hand_computation() {
        let e = ema(&[1.0, 2.0, 3.0], 0.5, 2);
        assert!(e[0].is_nan());
        assert_eq!(e[1], 1.5);
        assert_eq!(e[2], 2.25);
        let e = ema(&[f64::NAN, 4.0, 2.0], 0.5, 1);
        assert_eq!((e[1], e[2]), (4.0, 3.0));
    }

    #[test]
    fn rsi_of_a_rising_series_is_100() {
        let close: Vec<f64> = (0..30).map(|i| 1.0 + i as f64 * 0.01).collect();
        let r = rsi(&close, 14);
        assert!(r[12].is_nan());
        assert_eq!(r[13], 100.0);
        assert_eq!(r[29], 100.0);
    }

    #[test]
    fn bollinger_and_stochastic_on_flat_data_are_centred() {
        let flat = vec![1.0; 30];
        assert_eq!(bollinger_percent_b(&flat, 20, 2.0)[25], 0.5);
        let (k, d) = stochastic(&flat, &flat, &flat, 14, 3);
        assert_eq!((k[20], d[20]), (50.0, 50.0));
        assert!(d[14].is_nan());
        assert_eq!(d[15], 50.0);
    }

    #[test]
    fn atr_starts_with_the_mean_true_range() {
        let high = [2.0, 3.0, 4.0, 5.0];
        let low = [1.0, 1.0, 1.0, 1.0];
        let close = [1.5, 2.5, 3.5, 4.5];
        let a = atr(&high, &low, &close, 2);
        assert!(a[0].is_nan());
        assert_eq!(a[1], 1.5);
        assert_eq!(a[2], (1.5 + 3.0) / 2.0);
    }
}
