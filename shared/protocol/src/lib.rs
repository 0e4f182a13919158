//! Types that cross the boundary between the engine and its front ends (CLI, desktop app).
//!
//! Everything here is plain serde data and compiles for `wasm32-unknown-unknown`: no file
//! system, no threads, no numerics. Times are Unix seconds in UTC (`*_ts` fields).

mod app;
mod bench;
mod data;
mod device;
mod features;
mod forecast;
mod progress;
mod spec;
mod timeframe;
mod train;

pub use app::{AppError, AppErrorKind, JobId, ModelList};
pub use bench::{
    AUTO_WEIGHED_OPERATIONS, BenchComparison, BenchMachine, BenchRequest, BenchResult, BenchRun,
    BenchSettings, BenchSize, BenchSuite, auto_prefers_cpu,
};
pub use data::{
    Candle, CandlesRequest, CsvFormat, Gap, GapKind, GapSummary, ImportReport, ImportRequest,
    SeriesInfo,
};
pub use device::{
    AdapterType, BackendKind, CpuInfo, CudaDeviceInfo, CudaFetchReport, CudaFetchRequest,
    CudaStatus, DeviceInfo, DevicePreference, DeviceRequest, FetchedPackage, ParseDeviceError,
    ResolvedDevice, WgpuAdapterInfo, WgpuStatus,
};
pub use features::{
    ColumnSummary, FeatureExport, FeatureSpec, FeatureSummary, MacdSpec, RegressionMetrics,
    SplitSpec, SplitSummary, TargetSpec,
};
pub use forecast::{
    BacktestHorizon, BacktestReport, BacktestRequest, Combine, Forecast, ForecastRequest,
    HorizonForecast, ModelSelection,
};
pub use progress::{EpochProgress, ProgressEvent, Stage};
pub use spec::{
    Activation, EncoderSpec, ForestSpec, MaxFeatures, NeuralEncoderSpec, RegressorKind,
    RegressorSpec,
};
pub use timeframe::{ParseTimeframeError, Timeframe};

/// `1 model`, `6 models`: a count with its noun in the right number.
pub fn counted<N>(n: N, singular: &str, plural: &str) -> String
where
    N: std::fmt::Display + PartialEq + From<u8>,
{
    if n == N::from(1) {
        format!("1 {singular}")
    } else {
        format!("{n} {plural}")
    }
}
pub use train::{
    BaselineMetrics, ErrorUnit, HorizonMetrics, ModelConfig, ModelGrid, ModelInfo, SplitTimes,
    StoredModel, TrainReport, TrainRequest,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_the_right_number() {
        assert_eq!(counted(1, "model", "models"), "1 model");
        assert_eq!(counted(0, "model", "models"), "0 models");
        assert_eq!(counted(50, "bar", "bars"), "50 bars");
    }

    #[test]
    fn metrics_without_a_unit_are_log_returns() {
        let old = r#"{"horizon":1,"validation":{"mae":1e-3,"rmse":2e-3,"r2":0.0,"directional_accuracy":0.5,"n":10},
            "test":{"mae":1e-3,"rmse":2e-3,"r2":0.0,"directional_accuracy":0.5,"n":10},
            "baseline_validation":{"mae":1e-3,"rmse":2e-3,"r2":0.0},
            "baseline_test":{"mae":1e-3,"rmse":2e-3,"r2":0.0}}"#;
        let m: HorizonMetrics = serde_json::from_str(old).unwrap();
        assert_eq!(m.unit, ErrorUnit::LogReturn);
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains(r#""unit":"log_return""#), "{text}");
    }
}
