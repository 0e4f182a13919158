//! The data side of ForexGPT Workbench: candles, CSV import and validation, gaps, the
//! SQLite store, resampling, features and targets, splits, scaling and metrics.
//!
//! No GPU code and no UI here; `engine` puts these pieces together into jobs.

pub mod candle;
pub mod export;
pub mod features;
pub mod gaps;
pub mod import;
pub mod indicators;
pub mod metrics;
pub mod resample;
pub mod sample;
pub mod scaler;
pub mod split;
pub mod store;
pub mod synthetic;
pub mod timestamp;

pub use candle::Candle;
pub use features::{FeatureError, FeatureMatrix, Targets, build_features, build_targets};
pub use import::{ImportError, ParsedCsv, RowError, read_candles_csv};
pub use store::{Store, StoreError};
