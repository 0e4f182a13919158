//! The five tabs of the window.

mod bench;
mod data;
mod devices;
mod forecast;
mod training;

pub use bench::BenchTab;
pub use data::DataTab;
pub use devices::DevicesTab;
pub use forecast::ForecastTab;
pub use training::TrainingTab;
