//! Numbers and times as the UI prints them.

/// `2017-11-01 13:00` for a Unix time in seconds (UTC).
pub fn ts(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3_600,
        secs % 3_600 / 60
    )
}

/// `2017-11-01` for a Unix time in seconds (UTC).
pub fn date(seconds: i64) -> String {
    let (y, m, d) = civil_from_days(seconds.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Year, month and day of a count of days since 1970-01-01 (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A duration in milliseconds with a sensible number of digits.
pub fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0} ms")
    } else if value >= 1.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.3} ms")
    }
}

/// A price with five decimals (pips and a tenth).
pub fn price(value: f64) -> String {
    format!("{value:.5}")
}

/// A speedup with two significant digits at least: `12.3×`, `1.15×`, `0.004×`.
pub fn ratio(value: f64) -> String {
    if value >= 10.0 {
        format!("{value:.1}×")
    } else if value >= 0.1 {
        format!("{value:.2}×")
    } else {
        format!("{value:.2e}×")
    }
}

/// A device's speed against the CPU's, as a person says it: `12.3× faster`, `350× slower`
/// (`speedup` is the CPU's time over the device's).
pub fn vs_cpu(speedup: f64) -> String {
    if speedup >= 1.0 {
        format!("{} faster than cpu", ratio(speedup))
    } else {
        format!("{} slower than cpu", ratio(1.0 / speedup))
    }
}

pub fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

pub fn bytes(value: u64) -> String {
    let gib = value as f64 / f64::from(1u32 << 30);
    if gib >= 1.0 {
        format!("{gib:.1} GiB")
    } else {
        format!("{:.0} MiB", value as f64 / f64::from(1u32 << 20))
    }
}

/// Parses `1, 4,12` into numbers; names the part that is not one.
pub fn parse_list<T: std::str::FromStr>(text: &str, what: &str) -> Result<Vec<T>, String> {
    let items: Result<Vec<T>, String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| format!("{what}: '{s}' is not a valid number"))
        })
        .collect();
    let items = items?;
    if items.is_empty() {
        return Err(format!("{what}: give at least one value"));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_in_utc() {
        assert_eq!(ts(0), "1970-01-01 00:00");
        // 2017-11-01 13:00 UTC
        assert_eq!(ts(1_509_541_200), "2017-11-01 13:00");
        // a leap day, and a time before 1970
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(ts(-60), "1969-12-31 23:59");
    }

    #[test]
    fn parses_lists_and_names_bad_parts() {
        assert_eq!(parse_list::<u32>("1, 4,12", "horizons"), Ok(vec![1, 4, 12]));
        let err = parse_list::<u32>("1,x", "horizons").unwrap_err();
        assert!(err.contains("'x'"), "{err}");
        assert!(parse_list::<f64>(" , ", "alpha").is_err());
    }

    #[test]
    fn ratios_never_round_to_zero() {
        assert_eq!(ratio(12.34), "12.3×");
        assert_eq!(ratio(1.151), "1.15×");
        assert_eq!(ratio(0.0039), "3.90e-3×");
        assert_eq!(vs_cpu(12.34), "12.3× faster than cpu");
        assert_eq!(vs_cpu(1.0 / 350.0), "350.0× slower than cpu");
        assert_eq!(vs_cpu(0.8), "1.25× slower than cpu");
    }

    #[test]
    fn durations_keep_three_significant_digits() {
        assert_eq!(ms(1234.4), "1234 ms");
        assert_eq!(ms(12.34), "12.3 ms");
        assert_eq!(ms(0.1234), "0.123 ms");
    }
}
