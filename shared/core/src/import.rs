//! Reading candle CSV files as real sources write them, with every row validated.
//!
//! The layout (delimiter, header, which column holds what) is detected from the first line or
//! taken from the format the user names; timestamps are recognised by shape (see
//! [`crate::timestamp`]). A file either parses completely or yields an error listing the rows
//! that are wrong, each with its line, field and value, so nothing partial is ever stored.

use std::fmt;
use std::path::Path;

use forexgpt_protocol::{CsvFormat, Timeframe};

use crate::candle::{Candle, CandleField, check_candle};
use crate::timestamp::{format_ts, parse_date_and_time, parse_timestamp};

/// At most this many row errors are kept (all are counted).
pub const MAX_ROW_ERRORS: usize = 100;
const PROGRESS_EVERY_ROWS: u64 = 65_536;

/// A row that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub field: String,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, field {}: {}",
            self.line, self.field, self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read '{file}': {cause}")]
    Read { file: String, cause: std::io::Error },
    #[error("'{file}' is empty")]
    Empty { file: String },
    #[error("'{file}', line 1: {reason}")]
    Layout { file: String, reason: String },
    #[error("'{file}' has a header but no data rows")]
    NoRows { file: String },
    #[error("{}", describe_invalid(file, errors, *total))]
    Invalid {
        file: String,
        errors: Vec<RowError>,
        total: usize,
    },
    #[error("import of '{file}' cancelled; nothing was stored")]
    Cancelled { file: String },
}

fn describe_invalid(file: &str, errors: &[RowError], total: usize) -> String {
    let mut out = format!("'{file}': {total} invalid row(s), nothing was imported");
    const SHOWN: usize = 10;
    for e in errors.iter().take(SHOWN) {
        out.push_str(&format!("\n  {e}"));
    }
    if total > SHOWN {
        out.push_str(&format!("\n  … and {} more", total - SHOWN));
    }
    out
}

/// Where the bar time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeColumns {
    Single(usize),
    DateAndTime(usize, usize),
}

/// Which column holds what.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    format: CsvFormat,
    delimiter: u8,
    has_header: bool,
    time: TimeColumns,
    prices: [usize; 4],
    volume: Option<usize>,
}

impl Layout {
    fn min_fields(&self) -> usize {
        let time_max = match self.time {
            TimeColumns::Single(i) => i,
            TimeColumns::DateAndTime(d, t) => d.max(t),
        };
        let price_max = self.prices.iter().copied().max().unwrap_or(0);
        time_max.max(price_max) + 1
    }

    /// Consecutive columns `time, o, h, l, c[, v]` starting at `first_price`.
    fn positional(
        format: CsvFormat,
        delimiter: u8,
        time: TimeColumns,
        first_price: usize,
        n_fields: usize,
    ) -> Layout {
        let p = first_price;
        Layout {
            format,
            delimiter,
            has_header: false,
            time,
            prices: [p, p + 1, p + 2, p + 3],
            volume: (n_fields > p + 4).then_some(p + 4),
        }
    }
}

/// The bars of one file, in time order, all valid.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCsv {
    pub format: CsvFormat,
    pub candles: Vec<Candle>,
}

/// Reads and validates a candle file. `progress(done_bytes, total_bytes)` is called now and
/// then; returning `false` cancels.
pub fn read_candles_csv(
    path: &Path,
    format: CsvFormat,
    timeframe: Timeframe,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<ParsedCsv, ImportError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|cause| ImportError::Read {
        file: file.clone(),
        cause,
    })?;
    parse_candles_csv(&file, &bytes, format, timeframe, progress)
}

/// Parses and validates candle CSV text; `file` is only used in messages.
pub fn parse_candles_csv(
    file: &str,
    bytes: &[u8],
    format: CsvFormat,
    timeframe: Timeframe,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<ParsedCsv, ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first_line = first_nonblank_line(bytes).ok_or_else(|| ImportError::Empty {
        file: file.to_string(),
    })?;
    let first_line = std::str::from_utf8(first_line).map_err(|_| ImportError::Layout {
        file: file.to_string(),
        reason: "the first line is not UTF-8 text; is this a CSV file?".to_string(),
    })?;
    let layout = detect_layout(first_line, format).map_err(|reason| ImportError::Layout {
        file: file.to_string(),
        reason,
    })?;
    let rows = RowParser::new(file, &layout, timeframe).parse_all(bytes, progress)?;
    if rows.is_empty() {
        return Err(ImportError::NoRows {
            file: file.to_string(),
        });
    }
    Ok(ParsedCsv {
        format: layout.format,
        candles: rows,
    })
}

fn first_nonblank_line(bytes: &[u8]) -> Option<&[u8]> {
    bytes
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .find(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
}

fn detect_delimiter(line: &str) -> Result<u8, String> {
    let count = |d: char| line.matches(d).count();
    let candidates = [(b'\t', count('\t')), (b';', count(';')), (b',', count(','))];
    let (delimiter, n) = candidates
        .iter()
        .copied()
        .fold((b',', 0), |best, c| if c.1 > best.1 { c } else { best });
    if n == 0 {
        return Err(format!("no delimiter (tab, ';' or ',') in '{line}'"));
    }
    Ok(delimiter)
}

fn split_cells(line: &str, delimiter: u8) -> Vec<String> {
    line.split(char::from(delimiter))
        .map(|c| c.trim().trim_matches('"').trim().to_string())
        .collect()
}

/// Lowercase, without MetaTrader's angle brackets and surrounding spaces.
fn normalise_name(cell: &str) -> String {
    cell.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_ascii_lowercase()
}

fn detect_layout(first_line: &str, requested: CsvFormat) -> Result<Layout, String> {
    let delimiter = detect_delimiter(first_line)?;
    let cells = split_cells(first_line, delimiter);
    let names: Vec<String> = cells.iter().map(|c| normalise_name(c)).collect();
    let is_header = names
        .iter()
        .any(|n| matches!(n.as_str(), "open" | "high" | "low" | "close"));
    if is_header {
        header_layout(&cells, &names, delimiter, requested)
    } else {
        headerless_layout(&cells, delimiter, requested)
    }
}

fn header_layout(
    cells: &[String],
    names: &[String],
    delimiter: u8,
    requested: CsvFormat,
) -> Result<Layout, String> {
    let find = |wanted: &[&str]| -> Option<usize> {
        wanted
            .iter()
            .find_map(|w| names.iter().position(|n| n == w))
    };
    let column = |field: &str, wanted: &[&str]| {
        find(wanted).ok_or_else(|| {
            format!(
                "the header has no '{field}' column (found: {})",
                cells.join(", ")
            )
        })
    };
    let prices = [
        column("open", &["open", "o"])?,
        column("high", &["high", "h"])?,
        column("low", &["low", "l"])?,
        column("close", &["close", "c"])?,
    ];
    let volume = find(&[
        "volume",
        "tickvol",
        "tick_volume",
        "tick volume",
        "vol",
        "real_volume",
        "realvolume",
    ]);
    let is_time_name = |n: &str| {
        matches!(
            n,
            "time"
                | "timestamp"
                | "datetime"
                | "date_time"
                | "date time"
                | "gmt time"
                | "local time"
                | "utc"
                | "unnamed: 0"
        ) || n.starts_with("time (")
            || n.starts_with("gmt time")
            || n.starts_with("local time")
    };
    let date = find(&["date", "day"]);
    let time_of_day = names.iter().position(|n| n == "time");
    let time = match (date, time_of_day) {
        (Some(d), Some(t)) => TimeColumns::DateAndTime(d, t),
        _ => match names.iter().position(|n| is_time_name(n)).or(date) {
            Some(i) => TimeColumns::Single(i),
            // pandas `to_csv` writes the index (the time) under an empty first header cell.
            None if names.first().is_some_and(String::is_empty) => TimeColumns::Single(0),
            None => {
                return Err(format!(
                    "the header has no time column (expected time, date, datetime, timestamp or an empty first cell; found: {})",
                    cells.join(", ")
                ));
            }
        },
    };
    let detected = if cells.iter().any(|c| c.starts_with('<')) {
        CsvFormat::MetaTrader
    } else if names
        .iter()
        .any(|n| n.starts_with("gmt time") || n.starts_with("local time"))
    {
        CsvFormat::Dukascopy
    } else {
        CsvFormat::Generic
    };
    Ok(Layout {
        format: if requested == CsvFormat::Auto {
            detected
        } else {
            requested
        },
        delimiter,
        has_header: true,
        time,
        prices,
        volume,
    })
}

fn headerless_layout(
    cells: &[String],
    delimiter: u8,
    requested: CsvFormat,
) -> Result<Layout, String> {
    let n = cells.len();
    if n < 5 {
        return Err(format!(
            "expected a header naming open/high/low/close, or at least 5 fields (time, open, high, low, close); found {n} in '{}'",
            cells.join(&char::from(delimiter).to_string())
        ));
    }
    let looks_histdata = |c: &str| {
        c.len() == 15
            && c.as_bytes()[8] == b' '
            && c.bytes().filter(u8::is_ascii_digit).count() == 14
    };
    let date_then_time = parse_date_and_time(&cells[0], &cells[1]).is_ok();
    let format = match requested {
        CsvFormat::Auto if looks_histdata(&cells[0]) => CsvFormat::HistData,
        CsvFormat::Auto if date_then_time => CsvFormat::MetaTrader,
        CsvFormat::Auto if parse_timestamp(&cells[0]).is_ok() => CsvFormat::Generic,
        CsvFormat::Auto => {
            return Err(format!(
                "no header and no timestamp recognised in the first field '{}'; name the layout with --format or add a header",
                cells[0]
            ));
        }
        other => other,
    };
    let layout = match format {
        CsvFormat::MetaTrader => {
            if n < 6 {
                return Err(format!(
                    "a headerless MetaTrader file has date, time, open, high, low, close[, volume]; found {n} fields"
                ));
            }
            Layout::positional(format, delimiter, TimeColumns::DateAndTime(0, 1), 2, n)
        }
        _ => Layout::positional(format, delimiter, TimeColumns::Single(0), 1, n),
    };
    Ok(layout)
}

/// Parses data rows one by one, keeping the first [`MAX_ROW_ERRORS`] errors.
struct RowParser<'a> {
    file: &'a str,
    layout: &'a Layout,
    timeframe: Timeframe,
    errors: Vec<RowError>,
    error_count: usize,
    previous: Option<(i64, u64)>,
}

impl<'a> RowParser<'a> {
    fn new(file: &'a str, layout: &'a Layout, timeframe: Timeframe) -> Self {
        RowParser {
            file,
            layout,
            timeframe,
            errors: Vec::new(),
            error_count: 0,
            previous: None,
        }
    }

    fn fail(&mut self, line: u64, field: &str, message: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_ROW_ERRORS {
            self.errors.push(RowError {
                line,
                field: field.to_string(),
                message,
            });
        }
    }

    fn parse_all(
        mut self,
        bytes: &[u8],
        progress: &mut dyn FnMut(u64, u64) -> bool,
    ) -> Result<Vec<Candle>, ImportError> {
        let total = bytes.len() as u64;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(self.layout.delimiter)
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let mut candles = Vec::with_capacity(bytes.len() / 48);
        let mut record = csv::ByteRecord::new();
        let mut skip_header = self.layout.has_header;
        let mut rows: u64 = 0;
        loop {
            let line = reader.position().line();
            match reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    self.fail(line, "row", format!("unreadable CSV: {e}"));
                    break;
                }
            }
            let line = record.position().map_or(line, csv::Position::line);
            if record.iter().all(|c| c.is_empty()) {
                continue;
            }
            if skip_header {
                skip_header = false;
                continue;
            }
            if let Some(candle) = self.parse_row(line, &record) {
                candles.push(candle);
            }
            rows += 1;
            if rows.is_multiple_of(PROGRESS_EVERY_ROWS) {
                let done = record.position().map_or(0, csv::Position::byte);
                if !progress(done, total) {
                    return Err(ImportError::Cancelled {
                        file: self.file.to_string(),
                    });
                }
            }
        }
        progress(total, total);
        if self.error_count > 0 {
            return Err(ImportError::Invalid {
                file: self.file.to_string(),
                errors: self.errors,
                total: self.error_count,
            });
        }
        Ok(candles)
    }

    fn parse_row(&mut self, line: u64, record: &csv::ByteRecord) -> Option<Candle> {
        let needed = self.layout.min_fields();
        if record.len() < needed {
            self.fail(
                line,
                "row",
                format!("{} field(s), expected at least {needed}", record.len()),
            );
            return None;
        }
        let cell = |i: usize| std::str::from_utf8(&record[i]).unwrap_or("\u{FFFD}");
        let ts = match self.layout.time {
            TimeColumns::Single(i) => parse_timestamp(cell(i)),
            TimeColumns::DateAndTime(d, t) => parse_date_and_time(cell(d), cell(t)),
        };
        let ts = match ts {
            Ok(ts) => ts,
            Err(message) => {
                self.fail(line, CandleField::Time.name(), message);
                return None;
            }
        };
        let fields = [
            CandleField::Open,
            CandleField::High,
            CandleField::Low,
            CandleField::Close,
        ];
        let mut prices = [0.0; 4];
        for (k, field) in fields.into_iter().enumerate() {
            match parse_number(cell(self.layout.prices[k])) {
                Ok(v) => prices[k] = v,
                Err(message) => {
                    self.fail(line, field.name(), message);
                    return None;
                }
            }
        }
        let volume = match self.layout.volume.filter(|&i| i < record.len()).map(cell) {
            None | Some("") => 0.0,
            Some(text) => match parse_number(text) {
                Ok(v) => v,
                Err(message) => {
                    self.fail(line, CandleField::Volume.name(), message);
                    return None;
                }
            },
        };
        let candle = Candle {
            ts,
            open: prices[0],
            high: prices[1],
            low: prices[2],
            close: prices[3],
            volume,
        };
        if let Err((field, message)) = check_candle(&candle) {
            self.fail(line, field.name(), message);
            return None;
        }
        self.check_order(line, ts)?;
        Some(candle)
    }

    fn check_order(&mut self, line: u64, ts: i64) -> Option<()> {
        let step = self.timeframe.seconds();
        let Some((prev_ts, prev_line)) = self.previous.replace((ts, line)) else {
            return Some(());
        };
        let message = if ts == prev_ts {
            format!("time {} duplicates line {prev_line}", format_ts(ts))
        } else if ts < prev_ts {
            format!(
                "time {} is earlier than line {prev_line} ({}); rows must be in increasing time order",
                format_ts(ts),
                format_ts(prev_ts)
            )
        } else if ts - prev_ts < step {
            format!(
                "time {} is only {} s after line {prev_line}, less than one {} bar (is --timeframe right?)",
                format_ts(ts),
                ts - prev_ts,
                self.timeframe
            )
        } else {
            return Some(());
        };
        // Keep the later of the two as the reference so one bad row reports once.
        if ts < prev_ts {
            self.previous = Some((prev_ts, prev_line));
        }
        self.fail(line, CandleField::Time.name(), message);
        None
    }
}

fn parse_number(text: &str) -> Result<f64, String> {
    if text.is_empty() {
        return Err("the value is empty".to_string());
    }
    text.parse::<f64>()
        .map_err(|_| format!("'{text}' is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ParsedCsv, ImportError> {
        parse_candles_csv(
            "test.csv",
            text.as_bytes(),
            CsvFormat::Auto,
            Timeframe::H1,
            &mut |_, _| true,
        )
    }

    fn invalid(text: &str) -> Vec<RowError> {
        match parse(text) {
            Err(ImportError::Invalid { errors, .. }) => errors,
            other => panic!("expected invalid rows, got {other:?}"),
        }
    }

    const T0: i64 = 1_704_200_400; // 2024-01-02 13:00 UTC

    #[test]
    fn metatrader5_tab_export() {
        let text = "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n\
                    2024.01.02\t13:00:00\t1.10\t1.12\t1.09\t1.11\t120\t0\t5\n\
                    2024.01.02\t14:00:00\t1.11\t1.13\t1.10\t1.12\t130\t0\t5\n";
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.format, CsvFormat::MetaTrader);
        assert_eq!(parsed.candles.len(), 2);
        assert_eq!(parsed.candles[0].ts, T0);
        assert_eq!(parsed.candles[1].volume, 130.0);
    }

    #[test]
    fn metatrader4_headerless_history_center() {
        let text = "2024.01.02,13:00,1.10,1.12,1.09,1.11,120\r\n2024.01.02,14:00,1.11,1.13,1.10,1.12,130\r\n";
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.format, CsvFormat::MetaTrader);
        assert_eq!(parsed.candles[1].ts, T0 + 3600);
        assert_eq!(parsed.candles[1].close, 1.12);
    }

    #[test]
    fn histdata_ascii() {
        let text = "20240102 130000;1.10;1.12;1.09;1.11;0\n20240102 140000;1.11;1.13;1.10;1.12;0\n";
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.format, CsvFormat::HistData);
        assert_eq!(parsed.candles[0].ts, T0);
    }

    #[test]
    fn dukascopy_export() {
        let text = "Gmt time,Open,High,Low,Close,Volume\n02.01.2024 13:00:00.000,1.10,1.12,1.09,1.11,1234.5\n";
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.format, CsvFormat::Dukascopy);
        assert_eq!(parsed.candles[0].ts, T0);
        assert_eq!(parsed.candles[0].volume, 1234.5);
    }

    #[test]
    fn pandas_to_csv_with_empty_first_header_cell() {
        let text = ",Open,High,Low,Close,Volume\n2024-01-02 13:00:00,1.10,1.12,1.09,1.11,10\n2024-01-02 14:00:00,1.11,1.13,1.10,1.12,11\n";
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.format, CsvFormat::Generic);
        assert_eq!(parsed.candles.len(), 2);
        assert_eq!(parsed.candles[0].ts, T0);
    }

    #[test]
    fn generic_epoch_seconds_and_millis_without_volume() {
        let text = format!(
            "time,open,high,low,close\n{},1.1,1.2,1.0,1.15\n{}000,1.1,1.2,1.0,1.15\n",
            T0,
            T0 + 3600
        );
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.candles[1].ts, T0 + 3600);
        assert_eq!(parsed.candles[1].volume, 0.0);
    }

    #[test]
    fn semicolon_generic_with_bom_and_iso_zone() {
        let text = "\u{FEFF}timestamp;open;high;low;close;volume\n2024-01-02T15:00:00+02:00;1.1;1.2;1.0;1.15;3\n";
        assert_eq!(parse(text).unwrap().candles[0].ts, T0);
    }

    #[test]
    fn each_bad_row_names_line_and_field() {
        let text = "time,open,high,low,close,volume\n\
                    2024-01-02 13:00,1.10,1.12,1.09,1.11,1\n\
                    2024-01-02 14:00,abc,1.12,1.09,1.11,1\n\
                    2024-01-02 15:00,1.10,1.10,1.09,1.11,1\n\
                    2024-01-02 16:00,1.10,1.12,1.105,1.11,1\n\
                    2024-01-02 17:00,NaN,1.12,1.09,1.11,1\n\
                    2024-01-02 18:00,1.10,1.12,0,1.11,1\n\
                    2024-01-02 18:00,1.10,1.12,1.09,1.11,1\n\
                    2024-01-02 18:00,1.10,1.12,1.09,1.11,1\n\
                    2024-01-02 17:30,1.10,1.12,1.09,1.11,1\n\
                    not a time,1.10,1.12,1.09,1.11,1\n\
                    2024-01-02 20:00,1.10,1.12,1.09,1.11,-1\n\
                    2024-01-02 21:00,1.10,1.12,1.09\n\
                    2024-01-02 22:00,1.10,1.12,1.09,inf,1\n";
        let errors = invalid(text);
        let got: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (3, "open"),
                (4, "high"),
                (5, "low"),
                (6, "open"),
                (7, "low"),
                (9, "time"),
                (10, "time"),
                (11, "time"),
                (12, "volume"),
                (13, "row"),
                (14, "close"),
            ]
        );
        assert!(errors[0].message.contains("'abc' is not a number"));
        assert!(
            errors[5].message.contains("duplicates line 8"),
            "{}",
            errors[5].message
        );
        assert!(
            errors[6].message.contains("earlier than line 9"),
            "{}",
            errors[6].message
        );
    }

    #[test]
    fn the_error_message_names_the_file_and_counts_rows() {
        let err =
            parse("time,open,high,low,close\n2024-01-02 13:00,1.1,1.0,1.05,1.2\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("'test.csv': 1 invalid row(s), nothing was imported"),
            "{text}"
        );
        assert!(text.contains("line 2, field high"), "{text}");
    }

    #[test]
    fn bars_closer_than_the_timeframe_are_rejected() {
        let errors = invalid(
            "time,open,high,low,close\n2024-01-02 13:00,1.1,1.2,1.0,1.15\n2024-01-02 13:01,1.1,1.2,1.0,1.15\n",
        );
        assert_eq!(errors[0].field, "time");
        assert!(
            errors[0].message.contains("is --timeframe right?"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn layout_problems_are_named() {
        assert!(matches!(parse(""), Err(ImportError::Empty { .. })));
        assert!(matches!(parse("\n \n"), Err(ImportError::Empty { .. })));
        let err = parse("time,open,high,low\n").unwrap_err().to_string();
        assert!(err.contains("no 'close' column"), "{err}");
        let err = parse("open,high,low,close\n1,2,0.5,1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no time column"), "{err}");
        let err = parse("hello world\n").unwrap_err().to_string();
        assert!(err.contains("no delimiter"), "{err}");
        let err = parse("a,b,c,d,e\n").unwrap_err().to_string();
        assert!(err.contains("no header and no timestamp"), "{err}");
        assert!(matches!(
            parse("time,open,high,low,close\n"),
            Err(ImportError::NoRows { .. })
        ));
    }

    #[test]
    fn a_named_format_decides_a_headerless_layout() {
        let text = "20240102 130000,1.10,1.12,1.09,1.11\n";
        let parsed = parse_candles_csv(
            "x.csv",
            text.as_bytes(),
            CsvFormat::HistData,
            Timeframe::H1,
            &mut |_, _| true,
        )
        .unwrap();
        assert_eq!(parsed.format, CsvFormat::HistData);
        assert_eq!(parsed.candles[0].ts, T0);
    }

    #[test]
    fn cancel_stops_with_nothing() {
        let mut text = String::from("time,open,high,low,close\n");
        for i in 0..70_000 {
            text.push_str(&format!("{},1.1,1.2,1.0,1.15\n", T0 + i * 3600));
        }
        let result = parse_candles_csv(
            "big.csv",
            text.as_bytes(),
            CsvFormat::Auto,
            Timeframe::H1,
            &mut |_, _| false,
        );
        assert!(matches!(result, Err(ImportError::Cancelled { .. })));
    }
}
