//! Reading candle CSV files as real sources write them, with every row validated.
//!
//! The layout (delimiter, header, which column holds what) is detected from the first line or
//! taken from the format the user names; timestamps are recognised by shape (see
//! [`crate::timestamp`]). A file either parses completely or yields an error listing the rows
//! that are wrong, each with its line, field and value, so nothing partial is ever stored.

mod layout;
mod rows;

use std::fmt;
use std::path::Path;

use forexgpt_protocol::{CsvFormat, Timeframe};

use crate::candle::Candle;
use layout::{detect_layout, first_nonblank_line};
use rows::RowParser;

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
    fn errors_name_the_same_line_whatever_the_line_endings() {
        // Found by the property tests: after CRLF endings every line was named one too low.
        let rows = [
            "time,open,high,low,close,volume",
            "2017-01-02 13:00,1.1,1.2,1.0,1.1,5",
            "",
            "2017-01-02 14:00;1.1;1.2;1.0;1.1;5",
            "2017-01-02 15:00,1.1,1.2,1.0,abc,5",
        ];
        for eol in ["\n", "\r\n", "\r"] {
            let lines: Vec<u64> = invalid(&rows.join(eol)).iter().map(|e| e.line).collect();
            assert_eq!(lines, [4, 5], "line endings {eol:?}");
        }
    }

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
