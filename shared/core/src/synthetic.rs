//! Seeded synthetic candles for tests and benchmarks (never shown to users as market data).
//!
//! A log random walk with an intraday volatility cycle, spot-FX trading hours (closed from
//! Friday 22:00 to Sunday 22:00 UTC) and bars whose high/low extend beyond open/close.

use crate::candle::Candle;

pub use forexgpt_random::SplitMix64;

/// Monday 2020-01-06 00:00 UTC.
pub const SYNTHETIC_START_TS: i64 = 1_578_268_800;

fn market_open(ts: i64) -> bool {
    // 1970-01-01 was a Thursday: day 0 → weekday 3 (Mon = 0).
    let day = ts.div_euclid(86_400);
    let weekday = (day + 3).rem_euclid(7);
    let hour = ts.rem_euclid(86_400) / 3600;
    match weekday {
        4 => hour < 22,
        5 => false,
        6 => hour >= 22,
        _ => true,
    }
}

/// `n` hourly EURUSD-like bars starting at [`SYNTHETIC_START_TS`], skipping weekends.
pub fn random_walk_hourly(n: usize, seed: u64) -> Vec<Candle> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(n);
    let mut ts = SYNTHETIC_START_TS;
    let mut price: f64 = 1.10;
    while out.len() < n {
        if market_open(ts) {
            let hour = ts.rem_euclid(86_400) / 3600;
            // Busier during the London/New York overlap.
            let vol =
                0.0008 * (1.0 + 0.6 * (std::f64::consts::TAU * (hour as f64 - 14.0) / 24.0).cos());
            let open = price * (0.00005 * rng.normal()).exp();
            let close = open * (vol * rng.normal()).exp();
            let high = open.max(close) * (0.5 * vol * rng.normal().abs()).exp();
            let low = open.min(close) * (-0.5 * vol * rng.normal().abs()).exp();
            let volume = (1000.0 * (1.0 + rng.uniform())).round();
            out.push(Candle {
                ts,
                open,
                high,
                low,
                close,
                volume,
            });
            price = close;
        }
        ts += 3600;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_valid_ordered_and_skip_weekends() {
        let bars = random_walk_hourly(1000, 42);
        assert_eq!(bars.len(), 1000);
        assert!(bars.iter().all(|c| crate::candle::check_candle(c).is_ok()));
        assert!(bars.windows(2).all(|w| w[1].ts > w[0].ts));
        let gaps = crate::gaps::find_gaps(&bars, forexgpt_protocol::Timeframe::H1);
        assert!(!gaps.is_empty());
        assert!(
            gaps.iter()
                .all(|g| g.kind == forexgpt_protocol::GapKind::Weekend)
        );
        assert_eq!(random_walk_hourly(10, 42), bars[..10].to_vec(), "seeded");
    }
}
