//! Building coarser bars from finer ones (1h → 4h → 1d), aligned to UTC multiples of the
//! coarser timeframe.

use forexgpt_protocol::Timeframe;

use crate::candle::Candle;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot build {to} bars from {from} bars: {to} is not a whole multiple of {from}")]
pub struct ResampleError {
    pub from: Timeframe,
    pub to: Timeframe,
}

/// Aggregates `candles` (in time order, of timeframe `from`) into `to` bars: first open,
/// highest high, lowest low, last close, summed volume. A bucket holding only some of its
/// finer bars (the forming bar at the end, a bar next to a gap) is kept as it is.
pub fn resample(
    candles: &[Candle],
    from: Timeframe,
    to: Timeframe,
) -> Result<Vec<Candle>, ResampleError> {
    if !to.is_multiple_of(from) {
        return Err(ResampleError { from, to });
    }
    let step = to.seconds();
    let mut out: Vec<Candle> =
        Vec::with_capacity(candles.len() / (step / from.seconds()).max(1) as usize + 1);
    for c in candles {
        let bucket = c.ts.div_euclid(step) * step;
        match out.last_mut() {
            Some(last) if last.ts == bucket => {
                last.high = last.high.max(c.high);
                last.low = last.low.min(c.low);
                last.close = c.close;
                last.volume += c.volume;
            }
            _ => out.push(Candle { ts: bucket, ..*c }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_hourly_from_hourly() {
        let base = 1_704_153_600; // 2024-01-02 00:00 UTC
        let candles: Vec<Candle> = (0..6)
            .map(|i| {
                let x = 1.0 + i as f64 * 0.01;
                Candle {
                    ts: base + 3600 * (i + 2),
                    open: x,
                    high: x + 0.005,
                    low: x - 0.02,
                    close: x + 0.001,
                    volume: 10.0,
                }
            })
            .collect();
        let out = resample(&candles, Timeframe::H1, Timeframe::H4).unwrap();
        assert_eq!(out.len(), 2);
        // 02:00 and 03:00 fall in the 00:00 bucket; 04:00..07:00 in the 04:00 bucket.
        assert_eq!(out[0].ts, base);
        assert_eq!(out[0].open, 1.0);
        assert!((out[0].close - 1.011).abs() < 1e-12);
        assert_eq!(out[0].volume, 20.0);
        assert_eq!(out[1].ts, base + 4 * 3600);
        assert!((out[1].high - 1.055).abs() < 1e-12);
        assert!((out[1].low - 1.0).abs() < 1e-12);
        assert_eq!(out[1].volume, 40.0);
    }

    #[test]
    fn refuses_finer_or_uneven_targets() {
        assert!(resample(&[], Timeframe::H4, Timeframe::H1).is_err());
        assert!(resample(&[], Timeframe::H1, Timeframe::D1).is_ok());
    }
}
