//! `forexgpt`: the command line of ForexGPT Workbench. Parses arguments, calls the engine,
//! prints tables for people and JSON (`--json`) for scripts.

#[macro_use]
mod output;
mod bench;
mod commands;
mod dataset;
mod devices;
mod encoders;
mod models;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use forexgpt_core::store::DB_ENV;

#[derive(Parser, Debug)]
#[command(
    name = "forexgpt",
    version,
    about = "ForexGPT Workbench: forex data, features and forecasting models"
)]
pub struct Cli {
    /// SQLite database file (default: forexgpt.sqlite in the user's data directory).
    #[arg(long, global = true, env = DB_ENV, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Directory of model files (default: a folder named after the database, beside it: `x.sqlite` → `x.models/`).
    #[arg(long, global = true, env = forexgpt_engine::MODELS_DIR_ENV, value_name = "DIR")]
    models_dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Import OHLCV candles from a CSV file (MetaTrader, HistData, Dukascopy, pandas, generic).
    Import(commands::ImportArgs),
    /// List stored series; `data show|delete|resample` for one series.
    Data(commands::DataArgs),
    /// Build the feature matrix and targets of a stored series and summarise them.
    Features(commands::FeatureArgs),
    /// Train models (a grid of encoders × regressors × alphas) on a stored series and save them.
    Train(models::TrainArgs),
    /// List stored models; `models show|delete` for one.
    Models(models::ModelsArgs),
    /// Forecast returns and prices with quantile bands from one model or an ensemble.
    Forecast(models::ForecastArgs),
    /// Walk forward over the test period, forecasting from every bar, beside the naive forecast.
    Backtest(models::BacktestArgs),
    /// Benchmarks (CPU vs every GPU), stored in the database; `bench list|show|compare|delete`.
    Bench(bench::BenchArgs),
    /// Show CUDA GPUs, wgpu adapters and the CPU, and which device `auto` picks.
    Devices {
        /// Also run a small matmul and elementwise check on every usable device.
        #[arg(long)]
        check: bool,
        /// Download NVRTC and the CUDA headers that CUDA needs at run time (NVIDIA's
        /// redistributable packages from PyPI, 60–100 MB, SHA-256 checked) into this user's data
        /// directory, for the driver's CUDA version; used from the next start.
        #[arg(long)]
        fetch_cuda: bool,
        /// The CUDA version to fetch for (default: the driver's), e.g. 13.0.
        #[arg(long, requires = "fetch_cuda", value_name = "X.Y")]
        cuda_version: Option<String>,
    },
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FOREXGPT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// A command line clap refused: with `--json` anywhere on it, the error as `{"error": …}` on
/// stdout like every other error (exit status 2, clap's); help and version print as usual.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let shows_text = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    if shows_text || !json {
        e.exit();
    }
    let message = e.render().to_string();
    let message = message.trim().trim_start_matches("error: ");
    output::write_line(format_args!(
        "{}",
        serde_json::json!({ "error": message, "kind": "usage" })
    ));
    ExitCode::from(2)
}

#[allow(unsafe_code)] // one environment change before any thread exists
fn main() -> ExitCode {
    // SAFETY: first thing in `main`: no other thread exists yet.
    unsafe { forexgpt_device::probe::prepare_environment() };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    init_logging(cli.verbose);
    let json = cli.json;
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if json {
                output::write_line(format_args!(
                    "{}",
                    serde_json::json!({ "error": format!("{err:#}") })
                ));
            } else {
                eprintln!("error: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}
