//! The series and dataset arguments that `data`, `features` and `train` share.

use clap::Args;
use forexgpt_core::sample::{DEFAULT_SYMBOL, DEFAULT_TIMEFRAME};
use forexgpt_protocol::{FeatureSpec, SplitSpec, TargetSpec, Timeframe};

/// One stored series.
#[derive(Args, Debug, Clone)]
pub struct SeriesArgs {
    #[arg(long, default_value = DEFAULT_SYMBOL)]
    pub symbol: String,
    #[arg(long, default_value_t = DEFAULT_TIMEFRAME)]
    pub timeframe: Timeframe,
}

/// Features, targets and split of a series (`features` and `train`).
#[derive(Args, Debug, Clone)]
pub struct DatasetArgs {
    /// Bars of windowed OHLC.
    #[arg(long, default_value_t = FeatureSpec::default().window)]
    window: u32,
    /// Target horizons in bars, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = TargetSpec::default().horizons)]
    horizons: Vec<u32>,
    /// Share of labelled rows for training (in time order).
    #[arg(long, default_value_t = SplitSpec::default().train_fraction)]
    train: f64,
    /// Share of labelled rows for validation; the rest is the test part.
    #[arg(long, default_value_t = SplitSpec::default().validation_fraction)]
    validation: f64,
    /// Rows dropped between parts (default: window + largest horizon).
    #[arg(long)]
    purge: Option<u32>,
}

impl DatasetArgs {
    pub fn specs(&self) -> (FeatureSpec, TargetSpec, SplitSpec) {
        (
            FeatureSpec {
                window: self.window,
                ..FeatureSpec::default()
            },
            TargetSpec {
                horizons: self.horizons.clone(),
            },
            SplitSpec {
                train_fraction: self.train,
                validation_fraction: self.validation,
                purge: self.purge,
            },
        )
    }
}
