//! One OHLCV bar and the checks every stored bar passes.

use serde::{Deserialize, Serialize};

/// One bar: `ts` is the bar's opening time in Unix seconds (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// A field of a candle, as named in validation errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandleField {
    Time,
    Open,
    High,
    Low,
    Close,
    Volume,
}

impl CandleField {
    pub const fn name(self) -> &'static str {
        match self {
            CandleField::Time => "time",
            CandleField::Open => "open",
            CandleField::High => "high",
            CandleField::Low => "low",
            CandleField::Close => "close",
            CandleField::Volume => "volume",
        }
    }
}

impl Candle {
    /// Checks the bar on its own (not against its neighbours). Returns the offending field and
    /// a message that names the values.
    pub fn check(&self) -> Result<(), (CandleField, String)> {
        let prices = [
            (CandleField::Open, self.open),
            (CandleField::High, self.high),
            (CandleField::Low, self.low),
            (CandleField::Close, self.close),
        ];
        for (field, value) in prices {
            if !value.is_finite() {
                return Err((
                    field,
                    format!("{} is {value}, not a finite number", field.name()),
                ));
            }
            if value <= 0.0 {
                return Err((
                    field,
                    format!("{} is {value}; prices must be positive", field.name()),
                ));
            }
        }
        if !self.volume.is_finite() || self.volume < 0.0 {
            return Err((
                CandleField::Volume,
                format!("volume is {}; it must be a finite number ≥ 0", self.volume),
            ));
        }
        let body_top = self.open.max(self.close);
        let body_bottom = self.open.min(self.close);
        if self.high < body_top {
            return Err((
                CandleField::High,
                format!("high {} is below max(open, close) = {body_top}", self.high),
            ));
        }
        if self.low > body_bottom {
            return Err((
                CandleField::Low,
                format!("low {} is above min(open, close) = {body_bottom}", self.low),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(open: f64, high: f64, low: f64, close: f64) -> Candle {
        Candle {
            ts: 0,
            open,
            high,
            low,
            close,
            volume: 1.0,
        }
    }

    #[test]
    fn accepts_a_normal_bar_and_a_flat_one() {
        assert!(bar(1.1, 1.2, 1.0, 1.15).check().is_ok());
        assert!(bar(1.1, 1.1, 1.1, 1.1).check().is_ok());
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        assert_eq!(
            bar(1.1, 1.12, 1.0, 1.15).check().unwrap_err().0,
            CandleField::High
        );
        assert_eq!(
            bar(1.1, 1.2, 1.11, 1.15).check().unwrap_err().0,
            CandleField::Low
        );
        assert_eq!(
            bar(f64::NAN, 1.2, 1.0, 1.15).check().unwrap_err().0,
            CandleField::Open
        );
        assert_eq!(
            bar(1.1, 1.2, 1.0, f64::INFINITY).check().unwrap_err().0,
            CandleField::Close
        );
        assert_eq!(
            bar(1.1, 1.2, -1.0, 1.15).check().unwrap_err().0,
            CandleField::Low
        );
        let mut c = bar(1.1, 1.2, 1.0, 1.15);
        c.volume = -3.0;
        assert_eq!(c.check().unwrap_err().0, CandleField::Volume);
    }
}
