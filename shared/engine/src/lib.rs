//! The jobs behind every front end (CLI today, the desktop app later): opening the store and
//! seeding the sample data, importing CSV files, listing series and their gaps, building
//! feature matrices, and benchmarks. Front ends parse input, call these, and show results.

pub mod bench;
pub mod bench_models;
mod data;
mod error;
pub mod progress;

pub use data::{FeatureRequest, Workbench};
pub use error::EngineError;
pub use progress::{CancelToken, NoProgress, ProgressSink};
