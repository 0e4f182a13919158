//! The desktop shell: window, state and the IPC commands. Commands are thin adapters that run
//! the engine off the main thread, stream progress over a channel and map errors to
//! `AppError`s for the UI; everything they do is in `forexgpt-engine`.

mod commands;
mod error;
mod jobs;

use std::path::PathBuf;

use forexgpt_device::{DeviceManager, Devices};
use forexgpt_engine::Workbench;
use forexgpt_protocol::AppError;

use crate::error::from_engine;
use crate::jobs::Jobs;

/// Environment variable naming the database (as `FOREXGPT_DB` for the CLI).
pub const DB_ENV: &str = "FOREXGPT_DB";

/// What every command shares: where the store is, the devices (probed once, in the
/// background from start-up), and the running jobs.
pub struct AppState {
    db: Option<PathBuf>,
    devices: Devices,
    jobs: Jobs,
}

impl AppState {
    pub fn from_env() -> AppState {
        AppState {
            db: std::env::var_os(DB_ENV)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            devices: Devices::new(),
            jobs: Jobs::default(),
        }
    }

    /// The probed devices; waits for the start-up probe if it is still running.
    pub fn devices(&self) -> &DeviceManager {
        self.devices.probed()
    }

    /// A workbench on its own SQLite connection, so that a long job does not hold up the
    /// listing commands. It shares the app's devices, which a CPU-only job never waits for.
    pub fn workbench(&self) -> Result<Workbench, AppError> {
        let mut wb = Workbench::open(self.db.as_deref()).map_err(from_engine)?;
        wb.set_devices(self.devices.clone());
        Ok(wb)
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FOREXGPT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// `forexgpt-workbench --devices`: what the Devices tab shows (CUDA, wgpu, the CPU and what
/// `auto` picks, each with why it is unavailable where it is) as JSON on stdout, from the
/// same probe, without opening a window: for support, and for checking an installed build on
/// a machine without a display.
pub const DEVICES_FLAG: &str = "--devices";

/// Probes the devices as the app does at start-up and prints [`DeviceInfo`] as JSON
/// ([`DEVICES_FLAG`]).
///
/// [`DeviceInfo`]: forexgpt_protocol::DeviceInfo
pub fn print_devices() -> std::process::ExitCode {
    init_tracing();
    let devices = DeviceManager::probe();
    match serde_json::to_string_pretty(devices.info()) {
        Ok(json) => {
            println!("{json}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("forexgpt-workbench: the device report: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Starts the app; returns when its window is closed.
pub fn run() {
    init_tracing();
    let state = AppState::from_env();
    // Probing CUDA and wgpu takes seconds: start it now so the Devices tab is ready sooner.
    state.devices.probe_in_background();
    let result = tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .manage(state)
        .invoke_handler(tauri::generate_handler![
            commands::device_info,
            commands::fetch_cuda_runtime,
            commands::list_series,
            commands::series_candles,
            commands::pick_csv_file,
            commands::import_csv,
            commands::train_models,
            commands::list_models,
            commands::delete_model,
            commands::forecast,
            commands::backtest,
            commands::run_benchmark,
            commands::bench_runs,
            commands::compare_bench_runs,
            commands::delete_bench_run,
            commands::cancel_job,
        ])
        .run(tauri::generate_context!());
    if let Err(e) = result {
        eprintln!("forexgpt-workbench: {e}");
        std::process::exit(1);
    }
}
