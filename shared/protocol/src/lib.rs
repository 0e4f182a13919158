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
    BenchComparison, BenchMachine, BenchRequest, BenchResult, BenchRun, BenchSettings, BenchSize,
    BenchSuite,
};
pub use data::{
    Candle, CandlesRequest, CsvFormat, Gap, GapKind, GapSummary, ImportReport, ImportRequest,
    SeriesInfo,
};
pub use device::{
    AdapterType, BackendKind, CpuInfo, CudaDeviceInfo, CudaStatus, DeviceInfo, DevicePreference,
    DeviceRequest, ParseDeviceError, ResolvedDevice, WgpuAdapterInfo, WgpuStatus,
};
pub use features::{
    ColumnSummary, FeatureSpec, FeatureSummary, MacdSpec, RegressionMetrics, SplitSpec,
    SplitSummary, TargetSpec,
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
pub use train::{
    BaselineMetrics, HorizonMetrics, ModelConfig, ModelGrid, ModelInfo, SplitTimes, StoredModel,
    TrainReport, TrainRequest,
};
