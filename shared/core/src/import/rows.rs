//! Row parsing and validation: every row's time and prices, checked as bars (numbers,
//! finiteness, positive prices, high/low bounds) and against the previous bar (strictly
//! increasing times at least one bar apart), with up to [`MAX_ROW_ERRORS`] errors collected.

use forexgpt_protocol::Timeframe;

use super::layout::{Layout, TimeColumns};
use super::{ImportError, MAX_ROW_ERRORS, PROGRESS_EVERY_ROWS, RowError};
use crate::candle::{Candle, CandleField, check_candle};
use crate::timestamp::{format_ts, parse_date_and_time, parse_timestamp};

/// Parses data rows one by one, keeping the first [`MAX_ROW_ERRORS`] errors.
pub(super) struct RowParser<'a> {
    file: &'a str,
    layout: &'a Layout,
    timeframe: Timeframe,
    errors: Vec<RowError>,
    error_count: usize,
    previous: Option<(i64, u64)>,
}

impl<'a> RowParser<'a> {
    pub(super) fn new(file: &'a str, layout: &'a Layout, timeframe: Timeframe) -> Self {
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

    /// Reads every row; each error names its line as an editor would number it.
    pub(super) fn parse_all(
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
        let mut lines = LineCounter::new(bytes);
        loop {
            let at = reader.position().byte();
            match reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let line = lines.line_at(at);
                    self.fail(line, "row", format!("unreadable CSV: {e}"));
                    break;
                }
            }
            let line = lines.line_at(record.position().map_or(at, csv::Position::byte));
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
        // Every row has the first line's cells (empty ones at the end, from a trailing
        // separator, do not count): a decimal comma or a stray separator must not shift a
        // price into the volume unnoticed.
        let used = record.len() - record.iter().rev().take_while(|c| c.is_empty()).count();
        let expected = self.layout.fields;
        if record.len() < self.layout.min_fields() || record.len() < expected || used > expected {
            self.fail(
                line,
                "row",
                format!(
                    "{} field(s) separated by '{}' where line 1 has {expected} \
                     (a decimal comma, or a stray or missing separator?)",
                    record.len(),
                    char::from(self.layout.delimiter).escape_default()
                ),
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

/// Line numbers of byte offsets, counted as editors do (`\n`, `\r\n` or a lone `\r` ends a
/// line). The csv crate's own count lags behind after a `\r\n` ending (a record there starts
/// at the `\n`, before it is counted), so every error of a CRLF file named the line above the
/// one at fault, and it never counts lone `\r`s.
struct LineCounter<'a> {
    bytes: &'a [u8],
    /// Offset up to which newlines are counted, and how many there were.
    counted_to: usize,
    newlines: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            counted_to: 0,
            newlines: 0,
        }
    }

    /// The 1-based line of the record that begins at `offset` (any line ending in front of
    /// it belongs to the line before). Offsets only grow, so the whole file is scanned once.
    fn line_at(&mut self, offset: u64) -> u64 {
        let mut start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        // A line ends at `\n`, or at a `\r` that no `\n` follows (old Mac files).
        for i in self.counted_to..start {
            let next = self.bytes.get(i + 1);
            match self.bytes[i] {
                b'\n' => self.newlines += 1,
                b'\r' if next != Some(&b'\n') => self.newlines += 1,
                _ => {}
            }
        }
        self.counted_to = self.counted_to.max(start);
        self.newlines + 1
    }
}
