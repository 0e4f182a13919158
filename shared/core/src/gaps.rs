//! Finding missing bars and telling the normal ones (weekends, year-end holidays) from holes
//! inside a trading session.
//!
//! Spot FX closes from Friday ~21:00 UTC to Sunday ~21:00 UTC. Files come in UTC or in a
//! broker's zone (often UTC+2/+3, sometimes New York time) written without an offset, so the
//! weekend window is taken generously: Friday 15:00 to Monday 06:00 UTC. A gap is a weekend
//! gap when every missing bar falls in that window; a holiday gap when the rest fall on
//! 24–26 December or 31 December – 2 January; anything else is a session hole.

use chrono::{DateTime, Datelike, Timelike, Weekday};
use forexgpt_protocol::{Gap, GapKind, GapSummary, Timeframe};

use crate::candle::Candle;

fn in_weekend_window(ts: i64) -> bool {
    let Some(t) = DateTime::from_timestamp(ts, 0) else {
        return false;
    };
    match t.weekday() {
        Weekday::Fri => t.hour() >= 15,
        Weekday::Sat | Weekday::Sun => true,
        Weekday::Mon => t.hour() < 6,
        _ => false,
    }
}

fn in_holiday_window(ts: i64) -> bool {
    let Some(t) = DateTime::from_timestamp(ts, 0) else {
        return false;
    };
    matches!((t.month(), t.day()), (12, 24..=26) | (12, 31) | (1, 1..=2))
}

fn classify(after_ts: i64, before_ts: i64, step: i64) -> GapKind {
    let mut holiday = false;
    let mut ts = after_ts + step;
    while ts < before_ts {
        if !in_weekend_window(ts) {
            if in_holiday_window(ts) {
                holiday = true;
            } else {
                return GapKind::SessionHole;
            }
        }
        ts += step;
    }
    if holiday {
        GapKind::Holiday
    } else {
        GapKind::Weekend
    }
}

/// Every run of missing bars between consecutive candles (which must be in time order).
pub fn find_gaps(candles: &[Candle], timeframe: Timeframe) -> Vec<Gap> {
    let step = timeframe.seconds();
    candles
        .windows(2)
        .filter(|w| w[1].ts - w[0].ts > step)
        .map(|w| {
            let (after_ts, before_ts) = (w[0].ts, w[1].ts);
            Gap {
                after_ts,
                before_ts,
                missing_bars: u64::try_from((before_ts - after_ts) / step - 1).unwrap_or(0),
                kind: classify(after_ts, before_ts, step),
            }
        })
        .filter(|g| g.missing_bars > 0)
        .collect()
}

/// Counts gaps by kind and lists the session holes (up to [`GapSummary::MAX_LISTED`]).
pub fn summarize_gaps(gaps: &[Gap]) -> GapSummary {
    let mut summary = GapSummary::default();
    for gap in gaps {
        match gap.kind {
            GapKind::Weekend => summary.weekend_gaps += 1,
            GapKind::Holiday => summary.holiday_gaps += 1,
            GapKind::SessionHole => {
                summary.session_hole_count += 1;
                summary.missing_bars_in_holes += gap.missing_bars;
                if summary.session_holes.len() < GapSummary::MAX_LISTED {
                    summary.session_holes.push(gap.clone());
                }
            }
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(ts: i64) -> Candle {
        Candle {
            ts,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 0.0,
        }
    }

    fn ts(s: &str) -> i64 {
        crate::timestamp::parse_timestamp(s).unwrap()
    }

    #[test]
    fn weekend_in_utc_and_in_broker_time_is_normal() {
        // UTC: last bar Fri 21:00, first bar Sun 22:00.
        let utc = [bar(ts("2024-01-05 21:00")), bar(ts("2024-01-07 22:00"))];
        let gaps = find_gaps(&utc, Timeframe::H1);
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].kind, GapKind::Weekend);
        assert_eq!(gaps[0].missing_bars, 48);
        // Broker time UTC+2 written without an offset: Fri 23:00 → Mon 00:00.
        let broker = [bar(ts("2024-01-05 23:00")), bar(ts("2024-01-08 00:00"))];
        assert_eq!(find_gaps(&broker, Timeframe::H1)[0].kind, GapKind::Weekend);
        // Daily bars: Friday → Monday.
        let daily = [bar(ts("2024-01-05")), bar(ts("2024-01-08"))];
        let gaps = find_gaps(&daily, Timeframe::D1);
        assert_eq!((gaps[0].kind, gaps[0].missing_bars), (GapKind::Weekend, 2));
    }

    #[test]
    fn a_hole_on_a_wednesday_is_reported() {
        let candles = [
            bar(ts("2024-01-10 10:00")),
            bar(ts("2024-01-10 11:00")),
            bar(ts("2024-01-10 15:00")),
        ];
        let gaps = find_gaps(&candles, Timeframe::H1);
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].kind, GapKind::SessionHole);
        assert_eq!(gaps[0].missing_bars, 3);
        let summary = summarize_gaps(&gaps);
        assert_eq!(summary.session_hole_count, 1);
        assert_eq!(summary.missing_bars_in_holes, 3);
        assert_eq!(summary.session_holes[0].after_ts, ts("2024-01-10 11:00"));
    }

    #[test]
    fn christmas_and_a_weekend_that_runs_into_monday_noon() {
        // Christmas 2023 fell on a Monday: Fri 22 Dec 21:00 → Tue 26 Dec 22:00.
        let xmas = [bar(ts("2023-12-22 21:00")), bar(ts("2023-12-26 22:00"))];
        assert_eq!(find_gaps(&xmas, Timeframe::H1)[0].kind, GapKind::Holiday);
        let long = [bar(ts("2024-01-05 21:00")), bar(ts("2024-01-08 12:00"))];
        assert_eq!(
            find_gaps(&long, Timeframe::H1)[0].kind,
            GapKind::SessionHole
        );
    }

    #[test]
    fn contiguous_bars_have_no_gaps() {
        let candles: Vec<Candle> = (0..10)
            .map(|i| bar(ts("2024-01-10 00:00") + i * 3600))
            .collect();
        assert!(find_gaps(&candles, Timeframe::H1).is_empty());
    }
}
