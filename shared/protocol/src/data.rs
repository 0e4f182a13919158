//! Stored series, CSV imports and the gaps found in them.

use serde::{Deserialize, Serialize};

use crate::Timeframe;

/// The layout of a candle CSV file. `Auto` inspects the header and the first rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CsvFormat {
    /// Detect the layout from the header and the first data row.
    #[default]
    Auto,
    /// MetaTrader 4/5 exports: `<DATE> <TIME> <OPEN> …` headers (tab or comma) or the headerless
    /// History Center form `2024.01.02,13:00,o,h,l,c,v`.
    #[serde(rename = "metatrader")]
    MetaTrader,
    /// HistData.com ASCII: headerless `20240102 130000;o;h;l;c;v`.
    #[serde(rename = "histdata")]
    HistData,
    /// Dukascopy exports: `Gmt time,Open,High,Low,Close,Volume` with `02.01.2024 13:00:00.000`.
    Dukascopy,
    /// A header naming `time` (or `date`/`datetime`/`timestamp`, or an empty first cell as pandas
    /// writes it), `open`, `high`, `low`, `close` and optionally `volume`; ISO-8601 or epoch
    /// seconds/milliseconds.
    Generic,
}

impl CsvFormat {
    pub const ALL: [CsvFormat; 5] = [
        CsvFormat::Auto,
        CsvFormat::MetaTrader,
        CsvFormat::HistData,
        CsvFormat::Dukascopy,
        CsvFormat::Generic,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            CsvFormat::Auto => "auto",
            CsvFormat::MetaTrader => "metatrader",
            CsvFormat::HistData => "histdata",
            CsvFormat::Dukascopy => "dukascopy",
            CsvFormat::Generic => "generic",
        }
    }
}

impl std::fmt::Display for CsvFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CsvFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        CsvFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == lower || (lower == "mt4" || lower == "mt5") && *f == CsvFormat::MetaTrader)
            .ok_or_else(|| {
                format!("unknown CSV format '{s}' (expected auto, metatrader, histdata, dukascopy or generic)")
            })
    }
}

/// Why bars are missing between two stored bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GapKind {
    /// The weekly market close (Friday evening to Sunday evening, UTC, with broker offsets).
    Weekend,
    /// Christmas or New Year closures.
    Holiday,
    /// Bars missing while the market was open: worth a look.
    SessionHole,
}

/// One run of missing bars between `after_ts` and `before_ts` (both stored bars).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub after_ts: i64,
    pub before_ts: i64,
    pub missing_bars: u64,
    pub kind: GapKind,
}

/// Gaps of a series, counted by kind; `session_holes` lists the unexpected ones (the first
/// `MAX_LISTED`, with the total in `session_hole_count`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GapSummary {
    pub weekend_gaps: u64,
    pub holiday_gaps: u64,
    pub session_hole_count: u64,
    pub missing_bars_in_holes: u64,
    pub session_holes: Vec<Gap>,
}

impl GapSummary {
    pub const MAX_LISTED: usize = 50;
}

/// A CSV file to import, as the CLI and the app ask for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportRequest {
    pub path: String,
    pub symbol: String,
    pub timeframe: Timeframe,
    #[serde(default)]
    pub format: CsvFormat,
    /// Replace the stored series instead of merging the file into it.
    #[serde(default)]
    pub replace: bool,
}

/// What an import did. An import either stores every row or none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub file: String,
    pub symbol: String,
    pub timeframe: Timeframe,
    pub format: CsvFormat,
    pub rows_read: u64,
    /// Bars that were not stored before.
    pub inserted: u64,
    /// Bars already stored with identical values.
    pub unchanged: u64,
    /// Whether an existing series was replaced (`--replace`).
    pub replaced: bool,
    /// The series held only the built-in sample, which this import replaced (the sample is
    /// not the user's data, so no `--replace` is needed for it).
    #[serde(default)]
    pub replaced_sample: bool,
    pub first_ts: i64,
    pub last_ts: i64,
    pub gaps: GapSummary,
}

/// One stored series (symbol × timeframe).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesInfo {
    pub symbol: String,
    pub timeframe: Timeframe,
    pub bars: u64,
    pub first_ts: i64,
    pub last_ts: i64,
    /// Where the bars came from: a file name, `sample`, or `resampled from 1h`.
    pub source: String,
    pub updated_ts: i64,
    /// Filled when gaps were asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gaps: Option<GapSummary>,
}

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

/// The latest bars of a stored series (or of one resampled from a finer stored series).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandlesRequest {
    pub symbol: String,
    pub timeframe: Timeframe,
    /// At most this many bars, the latest ones.
    pub last: usize,
}
