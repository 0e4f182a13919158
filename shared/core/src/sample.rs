//! The sample series shipped inside the binary, so the app works before any import.
//!
//! EURUSD hourly ask bars of 2017 (6,225 bars) from the `gym-anytrading` package
//! (MIT licence, © 2019 Mohammad Amin Haghpanah), shipped unmodified in its Dukascopy-style
//! layout; see `shared/core/data/README.md` for provenance and licence notes.

use forexgpt_protocol::{CsvFormat, Timeframe};

/// One shipped series.
#[derive(Debug, Clone, Copy)]
pub struct SampleSeries {
    pub symbol: &'static str,
    pub timeframe: Timeframe,
    pub file_name: &'static str,
    pub format: CsvFormat,
    pub csv: &'static [u8],
    pub attribution: &'static str,
}

/// How the store names the source of a shipped series (`sample:EURUSD_1h_2017.csv`): a series
/// whose every import has such a name holds only the sample, and the user's own file replaces
/// it instead of being refused for differing from it.
pub const SAMPLE_SOURCE_PREFIX: &str = "sample:";

pub const SAMPLE_SERIES: &[SampleSeries] = &[SampleSeries {
    symbol: "EURUSD",
    timeframe: Timeframe::H1,
    file_name: "sample:EURUSD_1h_2017.csv",
    format: CsvFormat::Auto,
    csv: include_bytes!("../data/EURUSD_1h_2017.csv"),
    attribution: "EURUSD 1h ask bars 2017, from gym-anytrading (MIT, (c) 2019 Mohammad Amin Haghpanah)",
}];

/// The series the CLI and the app use when none is named.
pub const DEFAULT_SYMBOL: &str = "EURUSD";
pub const DEFAULT_TIMEFRAME: Timeframe = Timeframe::H1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_is_named_as_a_sample() {
        assert!(
            SAMPLE_SERIES
                .iter()
                .all(|s| s.file_name.starts_with(SAMPLE_SOURCE_PREFIX))
        );
    }
}
