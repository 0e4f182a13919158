//! The jobs behind every front end (the CLI and the desktop app): opening the store and
//! seeding the sample data, importing CSV files, listing series and their gaps, building
//! feature matrices, training models, forecasting and backtesting with them, and benchmarks.
//! Front ends parse input, call these, and show results.

pub mod artifact;
pub mod bench;
mod chains;
pub mod cuda_runtime;
mod data;
pub mod ensemble;
mod error;
mod forecast;
pub mod fused;
pub mod model;
pub mod neural;
pub mod progress;
pub mod train;
mod workbench;

pub use data::FeatureRequest;
pub use error::EngineError;
pub use progress::{CancelToken, NoProgress, ProgressSink};
pub use workbench::{MODELS_DIR_ENV, Workbench};
