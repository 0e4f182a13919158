//! Property tests of the CSV importer: random candle series written in every layout real
//! sources use (with or without a BOM, CRLF or LF, a final newline or not) parse back to the
//! same bars, and random corruption (truncation, bad numbers, NaN/inf, missing or extra
//! columns, mixed separators, huge fields, non-UTF-8 bytes, rows out of order) never panics:
//! it is refused with a message naming the file and the line, or, for a truncation that still
//! reads as valid rows, keeps the bars before the cut. Case counts are capped so CI stays fast;
//! `docs/reliability.md` has the totals.
#![allow(clippy::unwrap_used)]

use forexgpt_core::import::{ImportError, parse_candles_csv};
use forexgpt_protocol::{CsvFormat, Timeframe};
use proptest::prelude::*;

/// Cases per property (each parses one file of up to 40 rows).
const CASES: u32 = 256;
const FILE: &str = "prop.csv";

/// A bar in whole pips (1e-5) and whole hours, so that every layout writes it exactly.
#[derive(Debug, Clone, Copy)]
struct Bar {
    ts: i64,
    open: i64,
    high: i64,
    low: i64,
    close: i64,
    volume: i64,
}

/// How a source writes its files.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    GenericIso,
    GenericEpochSeconds,
    GenericEpochMillis,
    Pandas,
    MetaTrader4,
    MetaTrader5,
    HistData,
    Dukascopy,
}

const LAYOUTS: [Layout; 8] = [
    Layout::GenericIso,
    Layout::GenericEpochSeconds,
    Layout::GenericEpochMillis,
    Layout::Pandas,
    Layout::MetaTrader4,
    Layout::MetaTrader5,
    Layout::HistData,
    Layout::Dukascopy,
];

impl Layout {
    fn separator(self) -> char {
        match self {
            Layout::MetaTrader5 => '\t',
            Layout::HistData => ';',
            _ => ',',
        }
    }

    fn header(self) -> Option<&'static str> {
        match self {
            Layout::GenericIso | Layout::GenericEpochSeconds | Layout::GenericEpochMillis => {
                Some("time,open,high,low,close,volume")
            }
            Layout::Pandas => Some(",Open,High,Low,Close,Volume"),
            Layout::MetaTrader5 => {
                Some("<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>")
            }
            Layout::Dukascopy => Some("Gmt time,Open,High,Low,Close,Volume"),
            Layout::MetaTrader4 | Layout::HistData => None,
        }
    }

    /// The fields of one bar, time first.
    fn fields(self, b: &Bar) -> Vec<String> {
        let t = chrono::DateTime::from_timestamp(b.ts, 0).unwrap();
        let price = |p: i64| format!("{:.5}", p as f64 / 1e5);
        let mut out = match self {
            Layout::GenericIso => vec![t.format("%Y-%m-%dT%H:%M:%SZ").to_string()],
            Layout::GenericEpochSeconds => vec![b.ts.to_string()],
            Layout::GenericEpochMillis => vec![(b.ts * 1000).to_string()],
            Layout::Pandas => vec![t.format("%Y-%m-%d %H:%M:%S").to_string()],
            Layout::MetaTrader4 => vec![
                t.format("%Y.%m.%d").to_string(),
                t.format("%H:%M").to_string(),
            ],
            Layout::MetaTrader5 => vec![
                t.format("%Y.%m.%d").to_string(),
                t.format("%H:%M:%S").to_string(),
            ],
            Layout::HistData => vec![t.format("%Y%m%d %H%M%S").to_string()],
            Layout::Dukascopy => vec![t.format("%d.%m.%Y %H:%M:%S.000").to_string()],
        };
        out.extend([b.open, b.high, b.low, b.close].map(price));
        out.push(b.volume.to_string());
        if self == Layout::MetaTrader5 {
            out.extend(["0".to_string(), "8".to_string()]);
        }
        out
    }

    /// 1-based line of data row `i`.
    fn line_of(self, i: usize) -> usize {
        i + 1 + usize::from(self.header().is_some())
    }
}

/// How the file's bytes are laid out around the rows.
#[derive(Debug, Clone, Copy)]
struct Framing {
    bom: bool,
    crlf: bool,
    final_newline: bool,
}

fn render(layout: Layout, rows: &[Vec<String>], framing: Framing) -> Vec<u8> {
    let eol = if framing.crlf { "\r\n" } else { "\n" };
    let sep = layout.separator().to_string();
    let mut lines: Vec<String> = layout.header().map(str::to_string).into_iter().collect();
    lines.extend(rows.iter().map(|r| r.join(&sep)));
    let mut text = lines.join(eol);
    if framing.final_newline {
        text.push_str(eol);
    }
    let mut bytes = if framing.bom {
        b"\xEF\xBB\xBF".to_vec()
    } else {
        Vec::new()
    };
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

fn bars() -> impl Strategy<Value = Vec<Bar>> {
    // Start somewhere in 2017–2019 on the hour; steps of 1–3 hours (gaps are allowed).
    let start = (0_i64..20_000).prop_map(|h| 1_483_228_800 + h * 3600);
    let steps = prop::collection::vec(
        (
            1_i64..=3,
            100_000_i64..150_000,
            0_i64..40,
            0_i64..40,
            0_i64..5000,
        ),
        2..40,
    );
    (start, steps).prop_map(|(start, steps)| {
        let mut ts = start;
        let mut open = 110_000;
        steps
            .into_iter()
            .map(|(step, close, up, down, volume)| {
                ts += step * 3600;
                let bar = Bar {
                    ts,
                    open,
                    high: open.max(close) + up,
                    low: open.min(close) - down,
                    close,
                    volume,
                };
                open = close;
                bar
            })
            .collect()
    })
}

fn framing() -> impl Strategy<Value = Framing> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(bom, crlf, final_newline)| Framing {
        bom,
        crlf,
        final_newline,
    })
}

fn parse(bytes: &[u8]) -> Result<forexgpt_core::ParsedCsv, ImportError> {
    parse_candles_csv(FILE, bytes, CsvFormat::Auto, Timeframe::H1, &mut |_, _| {
        true
    })
}

fn same_prices(parsed: &forexgpt_core::Candle, bar: &Bar) -> bool {
    let p = |v: i64| v as f64 / 1e5;
    parsed.ts == bar.ts
        && parsed.open == p(bar.open)
        && parsed.high == p(bar.high)
        && parsed.low == p(bar.low)
        && parsed.close == p(bar.close)
}

/// What to do to a valid file.
#[derive(Debug, Clone)]
enum Corruption {
    /// Keep only the first `share` of the bytes.
    Truncate { share: f64 },
    /// Replace a price field of a row with a value no price can have.
    BadNumber {
        row: usize,
        field: usize,
        text: &'static str,
    },
    /// Drop the last field of a row.
    MissingField { row: usize },
    /// Add a field to a row.
    ExtraField { row: usize },
    /// Join a row's fields with another separator.
    MixedSeparator { row: usize },
    /// Replace a price field with 20,000 characters.
    HugeField { row: usize, field: usize },
    /// Put bytes that are not UTF-8 into a price field.
    NotUtf8 { row: usize, field: usize },
    /// Swap a row with the next one (times go backwards).
    OutOfOrder { row: usize },
}

impl Corruption {
    /// The data row it breaks, when it breaks exactly one.
    fn row(&self) -> Option<usize> {
        match self {
            Corruption::Truncate { .. } => None,
            Corruption::BadNumber { row, .. }
            | Corruption::MissingField { row }
            | Corruption::ExtraField { row }
            | Corruption::MixedSeparator { row }
            | Corruption::HugeField { row, .. }
            | Corruption::NotUtf8 { row, .. } => Some(*row),
            Corruption::OutOfOrder { row } => Some(*row + 1),
        }
    }

    /// Whether every file it produces must be refused.
    fn must_fail(&self) -> bool {
        !matches!(
            self,
            Corruption::Truncate { .. } | Corruption::ExtraField { .. }
        )
    }
}

const BAD_NUMBERS: [&str; 10] = [
    "", "abc", "NaN", "nan", "inf", "-inf", "1e999", "-1.05", "0", "1,05",
];

fn corruption(rows: usize) -> impl Strategy<Value = Corruption> {
    let row = 0..rows;
    prop_oneof![
        (0.0..1.0_f64).prop_map(|share| Corruption::Truncate { share }),
        (
            row.clone(),
            0_usize..4,
            prop::sample::select(BAD_NUMBERS.to_vec())
        )
            .prop_map(|(row, field, text)| Corruption::BadNumber { row, field, text }),
        row.clone().prop_map(|row| Corruption::MissingField { row }),
        row.clone().prop_map(|row| Corruption::ExtraField { row }),
        row.clone()
            .prop_map(|row| Corruption::MixedSeparator { row }),
        (row.clone(), 0_usize..4).prop_map(|(row, field)| Corruption::HugeField { row, field }),
        (row.clone(), 0_usize..4).prop_map(|(row, field)| Corruption::NotUtf8 { row, field }),
        (0..rows.saturating_sub(1).max(1)).prop_map(|row| Corruption::OutOfOrder { row }),
    ]
}

/// The file with `c` applied.
fn corrupt(layout: Layout, bars: &[Bar], framing: Framing, c: &Corruption) -> Vec<u8> {
    let mut rows: Vec<Vec<String>> = bars.iter().map(|b| layout.fields(b)).collect();
    // Index of the first price field (after one or two time fields).
    let price0 = match layout {
        Layout::MetaTrader4 | Layout::MetaTrader5 => 2,
        _ => 1,
    };
    let mut not_utf8 = None;
    match c {
        Corruption::Truncate { .. } | Corruption::OutOfOrder { .. } => {}
        Corruption::BadNumber { row, field, text } => rows[*row][price0 + field] = text.to_string(),
        Corruption::MissingField { row } => {
            rows[*row].pop();
        }
        Corruption::ExtraField { row } => rows[*row].push("1.23456".into()),
        Corruption::MixedSeparator { row } => {
            let other = if layout.separator() == ';' { "," } else { ";" };
            rows[*row] = vec![rows[*row].join(other)];
        }
        Corruption::HugeField { row, field } => rows[*row][price0 + field] = "9".repeat(20_000),
        Corruption::NotUtf8 { row, field } => {
            rows[*row][price0 + field] = "\u{1}MARK\u{1}".into();
            not_utf8 = Some(());
        }
    }
    if let Corruption::OutOfOrder { row } = c {
        rows.swap(*row, *row + 1);
    }
    let mut bytes = render(layout, &rows, framing);
    if not_utf8.is_some() {
        let at = bytes.windows(6).position(|w| w == b"\x01MARK\x01").unwrap();
        bytes.splice(at..at + 6, [0xFF, 0xFE, 0x31]);
    }
    if let Corruption::Truncate { share } = c {
        bytes.truncate((bytes.len() as f64 * share) as usize);
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn every_layout_reads_back_the_bars_it_was_written_with(
        bars in bars(),
        layout in prop::sample::select(LAYOUTS.to_vec()),
        framing in framing(),
    ) {
        let rows: Vec<Vec<String>> = bars.iter().map(|b| layout.fields(b)).collect();
        let bytes = render(layout, &rows, framing);
        let parsed = parse(&bytes).map_err(|e| TestCaseError::fail(format!("{layout:?}: {e}")))?;
        prop_assert_eq!(parsed.candles.len(), bars.len());
        for (c, b) in parsed.candles.iter().zip(&bars) {
            prop_assert!(same_prices(c, b), "{:?}: {:?} vs {:?}", layout, c, b);
        }
    }

    #[test]
    fn a_corrupted_file_is_refused_by_line_or_keeps_the_bars_before_the_cut(
        (bars, c) in bars().prop_flat_map(|b| { let n = b.len(); (Just(b), corruption(n)) }),
        layout in prop::sample::select(LAYOUTS.to_vec()),
        framing in framing(),
    ) {
        let bytes = corrupt(layout, &bars, framing, &c);
        match parse(&bytes) {
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.contains(FILE), "no file name: {}", message);
                if let (ImportError::Invalid { errors, .. }, Some(row)) = (&e, c.row()) {
                    let line = layout.line_of(row) as u64;
                    // Without a header the first row sets the field count: when it is the odd
                    // one, the other rows are named against "line 1".
                    let named = errors.iter().any(|r| r.line == line)
                        || (line == 1 && message.contains("line 1 has"));
                    prop_assert!(named, "{:?} of line {} not named: {}", c, line, message);
                }
            }
            Ok(parsed) => {
                prop_assert!(!c.must_fail(), "{:?} in {:?} was accepted", c, layout);
                // A cut file keeps whole rows; the last one may have lost digits.
                let keep = parsed.candles.len().saturating_sub(1);
                prop_assert!(parsed.candles.len() <= bars.len());
                for (p, b) in parsed.candles[..keep].iter().zip(&bars) {
                    prop_assert!(same_prices(p, b), "{:?}: {:?} vs {:?}", c, p, b);
                }
            }
        }
    }
}
