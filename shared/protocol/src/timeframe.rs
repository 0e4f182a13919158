//! Bar timeframes and their spellings (`1h`, `H1`, `60m`, `daily`, …).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The duration one candle covers. Bars are aligned to UTC multiples of this duration
/// (daily bars start at 00:00 UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Timeframe {
    #[serde(rename = "1m")]
    M1,
    #[serde(rename = "5m")]
    M5,
    #[serde(rename = "15m")]
    M15,
    #[serde(rename = "30m")]
    M30,
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "4h")]
    H4,
    #[serde(rename = "1d")]
    D1,
}

impl Timeframe {
    pub const ALL: [Timeframe; 7] = [
        Timeframe::M1,
        Timeframe::M5,
        Timeframe::M15,
        Timeframe::M30,
        Timeframe::H1,
        Timeframe::H4,
        Timeframe::D1,
    ];

    /// Length of one bar in seconds.
    pub const fn seconds(self) -> i64 {
        match self {
            Timeframe::M1 => 60,
            Timeframe::M5 => 300,
            Timeframe::M15 => 900,
            Timeframe::M30 => 1_800,
            Timeframe::H1 => 3_600,
            Timeframe::H4 => 14_400,
            Timeframe::D1 => 86_400,
        }
    }

    /// The canonical short name (`1h`), as stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Timeframe::M1 => "1m",
            Timeframe::M5 => "5m",
            Timeframe::M15 => "15m",
            Timeframe::M30 => "30m",
            Timeframe::H1 => "1h",
            Timeframe::H4 => "4h",
            Timeframe::D1 => "1d",
        }
    }

    /// Whether bars of `self` can be built exactly from bars of `finer`.
    pub fn is_multiple_of(self, finer: Timeframe) -> bool {
        self.seconds() >= finer.seconds() && self.seconds() % finer.seconds() == 0
    }
}

impl fmt::Display for Timeframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown timeframe '{0}' (expected one of 1m, 5m, 15m, 30m, 1h, 4h, 1d; MetaTrader names M1…H4, D1 work too)"
)]
pub struct ParseTimeframeError(pub String);

impl FromStr for Timeframe {
    type Err = ParseTimeframeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let tf = match lower.as_str() {
            "1m" | "m1" | "1min" => Timeframe::M1,
            "5m" | "m5" | "5min" => Timeframe::M5,
            "15m" | "m15" | "15min" => Timeframe::M15,
            "30m" | "m30" | "30min" => Timeframe::M30,
            "1h" | "h1" | "60m" | "60min" | "hourly" => Timeframe::H1,
            "4h" | "h4" | "240m" => Timeframe::H4,
            "1d" | "d1" | "d" | "daily" | "1440m" => Timeframe::D1,
            _ => return Err(ParseTimeframeError(s.to_string())),
        };
        Ok(tf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_spellings() {
        assert_eq!("H1".parse::<Timeframe>(), Ok(Timeframe::H1));
        assert_eq!("60m".parse::<Timeframe>(), Ok(Timeframe::H1));
        assert_eq!("daily".parse::<Timeframe>(), Ok(Timeframe::D1));
        assert_eq!(" m15 ".parse::<Timeframe>(), Ok(Timeframe::M15));
        assert!("2h".parse::<Timeframe>().is_err());
    }

    #[test]
    fn display_round_trips_and_serde_uses_short_names() {
        for tf in Timeframe::ALL {
            assert_eq!(tf.to_string().parse::<Timeframe>(), Ok(tf));
            let json = serde_json::to_string(&tf).unwrap();
            assert_eq!(json, format!("\"{tf}\""));
        }
    }

    #[test]
    fn multiples() {
        assert!(Timeframe::H4.is_multiple_of(Timeframe::H1));
        assert!(Timeframe::D1.is_multiple_of(Timeframe::M15));
        assert!(!Timeframe::H1.is_multiple_of(Timeframe::H4));
    }
}
