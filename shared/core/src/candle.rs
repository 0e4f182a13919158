//! One OHLCV bar and the checks every stored bar passes.

pub use forexgpt_protocol::Candle;

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

/// Checks a bar on its own (not against its neighbours). Returns the offending field and a
/// message that names the values.
pub fn check_candle(bar: &Candle) -> Result<(), (CandleField, String)> {
    let prices = [
        (CandleField::Open, bar.open),
        (CandleField::High, bar.high),
        (CandleField::Low, bar.low),
        (CandleField::Close, bar.close),
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
    if !bar.volume.is_finite() || bar.volume < 0.0 {
        return Err((
            CandleField::Volume,
            format!("volume is {}; it must be a finite number ≥ 0", bar.volume),
        ));
    }
    let body_top = bar.open.max(bar.close);
    let body_bottom = bar.open.min(bar.close);
    if bar.high < body_top {
        return Err((
            CandleField::High,
            format!("high {} is below max(open, close) = {body_top}", bar.high),
        ));
    }
    if bar.low > body_bottom {
        return Err((
            CandleField::Low,
            format!("low {} is above min(open, close) = {body_bottom}", bar.low),
        ));
    }
    Ok(())
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
        assert!(check_candle(&bar(1.1, 1.2, 1.0, 1.15)).is_ok());
        assert!(check_candle(&bar(1.1, 1.1, 1.1, 1.1)).is_ok());
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        assert_eq!(
            check_candle(&bar(1.1, 1.12, 1.0, 1.15)).unwrap_err().0,
            CandleField::High
        );
        assert_eq!(
            check_candle(&bar(1.1, 1.2, 1.11, 1.15)).unwrap_err().0,
            CandleField::Low
        );
        assert_eq!(
            check_candle(&bar(f64::NAN, 1.2, 1.0, 1.15)).unwrap_err().0,
            CandleField::Open
        );
        assert_eq!(
            check_candle(&bar(1.1, 1.2, 1.0, f64::INFINITY))
                .unwrap_err()
                .0,
            CandleField::Close
        );
        assert_eq!(
            check_candle(&bar(1.1, 1.2, -1.0, 1.15)).unwrap_err().0,
            CandleField::Low
        );
        let mut c = bar(1.1, 1.2, 1.0, 1.15);
        c.volume = -3.0;
        assert_eq!(check_candle(&c).unwrap_err().0, CandleField::Volume);
    }
}
