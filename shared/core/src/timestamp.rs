//! Timestamps as candle files write them, recognised by their shape.
//!
//! Accepted (times without a zone are taken as UTC):
//! - ISO-8601: `2024-01-02`, `2024-01-02 13:00`, `2024-01-02T13:00:00.000Z`, `…+02:00`
//! - MetaTrader: `2024.01.02 13:00[:00]`, or date and time in two columns
//! - HistData: `20240102 130000`, `20240102`
//! - Dukascopy: `02.01.2024 13:00:00.000`, optionally followed by ` GMT+0200`
//! - US style `01/02/2024 13:00` (month first, as Excel writes it)
//! - epoch seconds (9–10 digits, optionally with a fraction) or milliseconds (11–13 digits)

use chrono::NaiveDate;

/// Parses one timestamp cell into Unix seconds (UTC).
pub fn parse_timestamp(cell: &str) -> Result<i64, String> {
    let s = cell.trim().trim_matches('"');
    if s.is_empty() {
        return Err("the time is empty".to_string());
    }
    if let Some(epoch) = parse_epoch(s)? {
        return Ok(epoch);
    }
    let mut cur = Cursor::new(s);
    let date = parse_date(&mut cur).ok_or_else(|| unrecognised(s))?;
    let seconds = if cur.at_end() {
        0
    } else {
        if !(cur.eat(b' ') || cur.eat(b'T') || cur.eat(b't')) {
            return Err(unrecognised(s));
        }
        while cur.eat(b' ') {}
        parse_time_of_day(&mut cur).ok_or_else(|| unrecognised(s))?
    };
    let offset = parse_zone(&mut cur).ok_or_else(|| unrecognised(s))?;
    if !cur.at_end() {
        return Err(unrecognised(s));
    }
    Ok(date + seconds - offset)
}

/// Parses a date cell and a time-of-day cell (MetaTrader's `<DATE>` and `<TIME>`).
pub fn parse_date_and_time(date_cell: &str, time_cell: &str) -> Result<i64, String> {
    let date_str = date_cell.trim().trim_matches('"');
    let time_str = time_cell.trim().trim_matches('"');
    let mut cur = Cursor::new(date_str);
    let date = parse_date(&mut cur)
        .filter(|_| cur.at_end())
        .ok_or_else(|| unrecognised(date_str))?;
    let mut cur = Cursor::new(time_str);
    let seconds = parse_time_of_day(&mut cur)
        .filter(|_| cur.at_end())
        .ok_or_else(|| format!("'{time_str}' is not a time of day (expected HH:MM or HH:MM:SS)"))?;
    Ok(date + seconds)
}

/// Formats Unix seconds as `2024-01-02 13:00:00` (UTC), for messages and tables.
pub fn format_ts(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|dt| dt.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| format!("{ts} (out of range)"))
}

fn unrecognised(s: &str) -> String {
    format!(
        "'{s}' is not a recognised timestamp (ISO-8601, YYYY.MM.DD HH:MM, YYYYMMDD HHMMSS, DD.MM.YYYY HH:MM:SS or epoch seconds/ms)"
    )
}

fn parse_epoch(s: &str) -> Result<Option<i64>, String> {
    let (int_part, frac_part) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    if let Some(frac) = frac_part
        && !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Ok(None);
    }
    let value: i64 = int_part.parse().map_err(|_| unrecognised(s))?;
    match (int_part.len(), frac_part) {
        // YYYYMMDD: a date, handled by the date parser.
        (8, None) => Ok(None),
        (9..=10, _) => Ok(Some(value)),
        (11..=13, None) => Ok(Some(value.div_euclid(1000))),
        _ => Err(unrecognised(s)),
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor {
            bytes: s.as_bytes(),
            pos: 0,
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, s: &str) -> bool {
        let end = self.pos + s.len();
        if end <= self.bytes.len() && self.bytes[self.pos..end].eq_ignore_ascii_case(s.as_bytes()) {
            self.pos = end;
            true
        } else {
            false
        }
    }

    /// Reads a run of ASCII digits; returns (value, digit count).
    fn digits(&mut self) -> Option<(i64, usize)> {
        let start = self.pos;
        let mut value: i64 = 0;
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
            self.pos += 1;
        }
        let n = self.pos - start;
        (n > 0).then_some((value, n))
    }

    fn eat_separator(&mut self) -> Option<u8> {
        match self.peek() {
            Some(b @ (b'-' | b'.' | b'/')) => {
                self.pos += 1;
                Some(b)
            }
            _ => None,
        }
    }
}

/// Returns the date as Unix seconds at 00:00 UTC.
fn parse_date(cur: &mut Cursor) -> Option<i64> {
    let (first, first_len) = cur.digits()?;
    let (y, m, d) = if first_len == 8 {
        (first / 10_000, (first / 100) % 100, first % 100)
    } else {
        let sep = cur.eat_separator()?;
        let (second, second_len) = cur.digits()?;
        if cur.eat_separator()? != sep {
            return None;
        }
        let (third, third_len) = cur.digits()?;
        match (first_len, second_len, third_len) {
            (4, 1..=2, 1..=2) => (first, second, third),
            (1..=2, 1..=2, 4) if sep == b'/' => (third, first, second),
            (1..=2, 1..=2, 4) => (third, second, first),
            _ => return None,
        }
    };
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(y).ok()?,
        u32::try_from(m).ok()?,
        u32::try_from(d).ok()?,
    )?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp())
}

/// Returns seconds since midnight: `HH:MM[:SS[.fff]]`, `HHMMSS` or `HHMM`.
fn parse_time_of_day(cur: &mut Cursor) -> Option<i64> {
    let (first, first_len) = cur.digits()?;
    let (h, m, s) = match first_len {
        6 => (first / 10_000, (first / 100) % 100, first % 100),
        4 => (first / 100, first % 100, 0),
        1..=2 => {
            if !cur.eat(b':') {
                return None;
            }
            let (m, m_len) = cur.digits()?;
            if m_len != 2 {
                return None;
            }
            let s = if cur.eat(b':') {
                let (s, s_len) = cur.digits()?;
                if s_len != 2 {
                    return None;
                }
                s
            } else {
                0
            };
            (first, m, s)
        }
        _ => return None,
    };
    if cur.eat(b'.') || cur.eat(b',') {
        // Sub-second part: bars start on whole seconds, so it is dropped.
        cur.digits()?;
    }
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(h * 3600 + m * 60 + s.min(59))
}

/// Returns the zone offset in seconds east of UTC (0 when no zone is written).
fn parse_zone(cur: &mut Cursor) -> Option<i64> {
    while cur.eat(b' ') {}
    if cur.at_end() || cur.eat(b'Z') || cur.eat(b'z') {
        return Some(0);
    }
    if (cur.eat_str("GMT") || cur.eat_str("UTC")) && cur.at_end() {
        return Some(0);
    }
    let sign = match cur.peek()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    cur.pos += 1;
    let (first, first_len) = cur.digits()?;
    let (h, m) = match first_len {
        1..=2 => {
            let m = if cur.eat(b':') { cur.digits()?.0 } else { 0 };
            (first, m)
        }
        4 => (first / 100, first % 100),
        _ => return None,
    };
    if h > 14 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_704_200_400; // 2024-01-02 13:00:00 UTC

    #[test]
    fn iso_forms() {
        assert_eq!(parse_timestamp("2024-01-02 13:00:00"), Ok(T));
        assert_eq!(parse_timestamp("2024-01-02T13:00:00Z"), Ok(T));
        assert_eq!(parse_timestamp("2024-01-02T13:00"), Ok(T));
        assert_eq!(parse_timestamp("2024-01-02T15:00:00+02:00"), Ok(T));
        assert_eq!(parse_timestamp("2024-01-02T08:00:00-0500"), Ok(T));
        assert_eq!(parse_timestamp("2024-01-02 13:00:00.000"), Ok(T));
        assert_eq!(parse_timestamp("2024-01-02"), Ok(T - 13 * 3600));
    }

    #[test]
    fn platform_forms() {
        assert_eq!(parse_timestamp("2024.01.02 13:00"), Ok(T));
        assert_eq!(parse_timestamp("20240102 130000"), Ok(T));
        assert_eq!(parse_timestamp("02.01.2024 13:00:00.000"), Ok(T));
        assert_eq!(parse_timestamp("02.01.2024 15:00:00.000 GMT+0200"), Ok(T));
        assert_eq!(parse_timestamp("01/02/2024 13:00"), Ok(T));
        assert_eq!(parse_date_and_time("2024.01.02", "13:00"), Ok(T));
        assert_eq!(parse_date_and_time("2024.01.02", "13:00:00"), Ok(T));
    }

    #[test]
    fn epochs() {
        assert_eq!(parse_timestamp("1704200400"), Ok(T));
        assert_eq!(parse_timestamp("1704200400000"), Ok(T));
        assert_eq!(parse_timestamp("1704200400.0"), Ok(T));
        assert_eq!(parse_timestamp("\"1704200400\""), Ok(T));
    }

    #[test]
    fn rejects_nonsense_with_the_value_in_the_message() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "2024-02-30 10:00",
            "2024-01-02 25:00",
            "12345",
            "2024-01-02 13:00 garbage",
            "2024-01.02",
        ] {
            let err = parse_timestamp(bad).unwrap_err();
            assert!(err.contains(bad.trim()), "{bad}: {err}");
        }
        assert!(parse_date_and_time("2024.01.02", "1300x").is_err());
    }

    #[test]
    fn formats_back() {
        assert_eq!(format_ts(T), "2024-01-02 13:00:00");
    }
}
