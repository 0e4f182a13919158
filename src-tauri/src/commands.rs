//! The IPC commands. Each parses nothing itself (the request types come from `protocol`), runs
//! the engine on a blocking thread and maps its error; jobs that take long report progress over
//! `on_progress` and stop when `cancel_job` is called with their id.

use forexgpt_engine::cuda_runtime;
use forexgpt_engine::{CancelToken, EngineError, Workbench};
use forexgpt_protocol::{
    AppError, BacktestReport, BacktestRequest, BenchComparison, BenchRequest, BenchRun, Candle,
    CandlesRequest, CudaFetchReport, CudaFetchRequest, DeviceInfo, Forecast, ForecastRequest,
    ImportReport, ImportRequest, JobId, ModelList, ProgressEvent, SeriesInfo, TrainReport,
    TrainRequest,
};
use tauri::ipc::Channel;
use tauri::{AppHandle, Manager, State};
use tauri_plugin_dialog::DialogExt;

use crate::AppState;
use crate::error::{from_engine, internal, not_found};
use crate::jobs::ChannelProgress;

/// The git revision the app was built from (set by build.rs in a checkout).
const GIT_REV: Option<&str> = option_env!("FOREXGPT_GIT_REV");

/// Runs `job` on a blocking thread with the app state; a panic comes back as an error.
async fn blocking<T: Send + 'static>(
    app: AppHandle,
    what: &'static str,
    job: impl FnOnce(&AppState) -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tauri::async_runtime::spawn_blocking(move || job(&app.state::<AppState>()))
        .await
        .map_err(|e| internal(what, e))?
}

/// Runs a long engine job on a blocking thread: its own workbench (sharing the app's
/// devices), a cancel token registered under `job` for `cancel_job`, and progress over
/// `on_progress` (held events are flushed when the job ends).
async fn long_job<T: Send + 'static>(
    app: AppHandle,
    what: &'static str,
    job: JobId,
    on_progress: Channel<ProgressEvent>,
    work: impl FnOnce(&mut Workbench, &ChannelProgress, &CancelToken) -> Result<T, EngineError>
    + Send
    + 'static,
) -> Result<T, AppError> {
    blocking(app, what, move |s| {
        let mut wb = s.workbench()?;
        let running = s.jobs.start(job);
        let progress = ChannelProgress::new(on_progress);
        work(&mut wb, &progress, &running.token).map_err(from_engine)
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn device_info(app: AppHandle) -> Result<DeviceInfo, AppError> {
    blocking(app, "probing devices", |s| Ok(s.devices().info().clone())).await
}

/// Downloads NVRTC and the CUDA headers for this user (the Devices tab's button); CUDA uses
/// them from the next start (the CUDA backend reads their location only before any thread
/// exists). Cancel stops it with nothing installed.
#[tauri::command(rename_all = "snake_case")]
pub async fn fetch_cuda_runtime(
    app: AppHandle,
    request: CudaFetchRequest,
    job: JobId,
    on_progress: Channel<ProgressEvent>,
) -> Result<CudaFetchReport, AppError> {
    blocking(app, "fetching the CUDA runtime", move |s| {
        let running = s.jobs.start(job);
        let progress = ChannelProgress::new(on_progress);
        // The driver's version comes from the app's own device probe (already made).
        let fetched = cuda_runtime::cuda_version_for(request.cuda_version.as_deref(), || {
            let cuda = &s.devices().info().cuda;
            cuda.driver_version
                .clone()
                .ok_or_else(|| cuda.reason.clone().unwrap_or_default())
        })
        .and_then(|cuda| cuda_runtime::fetch_for_user(&cuda, &progress, &running.token));
        let (plan, nvrtc) = fetched.map_err(|e| from_engine(e.into()))?;
        Ok(cuda_runtime::report(&plan, &nvrtc))
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn list_series(app: AppHandle) -> Result<Vec<SeriesInfo>, AppError> {
    blocking(app, "listing series", |s| {
        s.workbench()?.list_series(true).map_err(from_engine)
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn series_candles(
    app: AppHandle,
    request: CandlesRequest,
) -> Result<Vec<Candle>, AppError> {
    blocking(app, "loading candles", move |s| {
        let mut candles = s
            .workbench()?
            .candles(&request.symbol, request.timeframe)
            .map_err(from_engine)?;
        let skip = candles.len().saturating_sub(request.last);
        candles.drain(..skip);
        Ok(candles)
    })
    .await
}

/// Opens the system file dialog for a CSV file; `None` when the user closes it.
#[tauri::command(rename_all = "snake_case")]
pub async fn pick_csv_file(app: AppHandle) -> Result<Option<String>, AppError> {
    let dialog = app.clone();
    blocking(app, "the file dialog", move |_| {
        Ok(dialog
            .dialog()
            .file()
            .set_title("Import candles from a CSV file")
            .add_filter("Candle CSV", &["csv", "txt"])
            .blocking_pick_file()
            .map(|path| path.to_string()))
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn import_csv(
    app: AppHandle,
    request: ImportRequest,
    job: JobId,
    on_progress: Channel<ProgressEvent>,
) -> Result<ImportReport, AppError> {
    long_job(
        app,
        "the import",
        job,
        on_progress,
        move |wb, progress, cancel| wb.import_csv(&request, progress, cancel),
    )
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn train_models(
    app: AppHandle,
    request: TrainRequest,
    job: JobId,
    on_progress: Channel<ProgressEvent>,
) -> Result<TrainReport, AppError> {
    long_job(
        app,
        "training",
        job,
        on_progress,
        move |wb, progress, cancel| wb.train(&request, progress, cancel),
    )
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn list_models(app: AppHandle) -> Result<ModelList, AppError> {
    blocking(app, "listing models", |s| {
        let (models, unreadable) = s.workbench()?.list_models().map_err(from_engine)?;
        Ok(ModelList {
            models,
            unreadable: unreadable.iter().map(ToString::to_string).collect(),
        })
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn delete_model(app: AppHandle, id: String) -> Result<(), AppError> {
    blocking(app, "deleting a model", move |s| {
        if s.workbench()?.delete_model(&id).map_err(from_engine)? {
            Ok(())
        } else {
            Err(not_found(format!("no model '{id}' is stored")))
        }
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn forecast(app: AppHandle, request: ForecastRequest) -> Result<Forecast, AppError> {
    blocking(app, "the forecast", move |s| {
        s.workbench()?.forecast(&request).map_err(from_engine)
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn backtest(
    app: AppHandle,
    request: BacktestRequest,
    job: JobId,
    on_progress: Channel<ProgressEvent>,
) -> Result<BacktestReport, AppError> {
    long_job(
        app,
        "the backtest",
        job,
        on_progress,
        move |wb, progress, cancel| wb.backtest(&request, progress, cancel),
    )
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn run_benchmark(
    app: AppHandle,
    request: BenchRequest,
    job: JobId,
    on_progress: Channel<ProgressEvent>,
) -> Result<BenchRun, AppError> {
    long_job(
        app,
        "the benchmark",
        job,
        on_progress,
        move |wb, progress, cancel| wb.run_benchmark(&request, GIT_REV, progress, cancel),
    )
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn bench_runs(app: AppHandle) -> Result<Vec<BenchRun>, AppError> {
    blocking(app, "listing benchmark runs", |s| {
        s.workbench()?.bench_runs().map_err(from_engine)
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn compare_bench_runs(
    app: AppHandle,
    a: i64,
    b: i64,
) -> Result<Vec<BenchComparison>, AppError> {
    blocking(app, "comparing benchmark runs", move |s| {
        s.workbench()?.compare_bench_runs(a, b).map_err(from_engine)
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn delete_bench_run(app: AppHandle, id: i64) -> Result<(), AppError> {
    blocking(app, "deleting a benchmark run", move |s| {
        if s.workbench()?.delete_bench_run(id).map_err(from_engine)? {
            Ok(())
        } else {
            Err(not_found(format!("no benchmark run #{id} is stored")))
        }
    })
    .await
}

/// Asks a running job to stop; it ends with a "cancelled" error and keeps nothing.
#[tauri::command(rename_all = "snake_case")]
pub fn cancel_job(state: State<'_, AppState>, job: JobId) -> bool {
    state.jobs.cancel(job)
}
