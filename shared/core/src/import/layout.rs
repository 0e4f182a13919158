//! Which column holds what: the delimiter, the header's names (MetaTrader's `<…>` brackets
//! stripped) or, for headerless files, the shape of the first fields (HistData, MetaTrader's
//! date and time in two fields, any timestamp), or the layout the user names.

use forexgpt_protocol::CsvFormat;

use crate::timestamp::{parse_date_and_time, parse_timestamp};

/// Where the bar time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimeColumns {
    Single(usize),
    DateAndTime(usize, usize),
}

/// Which column holds what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) format: CsvFormat,
    pub(super) delimiter: u8,
    pub(super) has_header: bool,
    pub(super) time: TimeColumns,
    pub(super) prices: [usize; 4],
    pub(super) volume: Option<usize>,
    /// Cells of the first line (the header, or the first row): every row has as many, so a
    /// decimal comma or a stray separator cannot shift a price into the volume unnoticed.
    pub(super) fields: usize,
}

impl Layout {
    pub(super) fn min_fields(&self) -> usize {
        let time_max = match self.time {
            TimeColumns::Single(i) => i,
            TimeColumns::DateAndTime(d, t) => d.max(t),
        };
        let price_max = self.prices.iter().copied().max().unwrap_or(0);
        time_max.max(price_max) + 1
    }

    /// Consecutive columns `time, o, h, l, c[, v]` starting at `first_price`.
    pub(super) fn positional(
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
            fields: n_fields,
        }
    }
}

/// The first line with text; lines end at `\n`, `\r\n` or a lone `\r`, as the csv reader
/// splits them.
pub(super) fn first_nonblank_line(bytes: &[u8]) -> Option<&[u8]> {
    bytes
        .split(|&b| b == b'\n' || b == b'\r')
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

pub(super) fn split_cells(line: &str, delimiter: u8) -> Vec<String> {
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

pub(super) fn detect_layout(first_line: &str, requested: CsvFormat) -> Result<Layout, String> {
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
        fields: cells.len(),
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
