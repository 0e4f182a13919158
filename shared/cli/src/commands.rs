//! Subcommand arguments and what each one runs.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use forexgpt_core::sample::{DEFAULT_SYMBOL, DEFAULT_TIMEFRAME};
use forexgpt_engine::{FeatureRequest, Workbench};
use forexgpt_protocol::{CsvFormat, ImportRequest, Timeframe};

use crate::dataset::{DatasetArgs, SeriesArgs};
use crate::output;
use crate::progress::{BarProgress, ctrl_c_token};
use crate::{Cli, Command};

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The CSV file.
    file: PathBuf,
    /// Instrument name, e.g. EURUSD.
    #[arg(long)]
    symbol: String,
    /// Bar length: 1m, 5m, 15m, 30m, 1h, 4h, 1d (MetaTrader's M1…D1 work too).
    #[arg(long)]
    timeframe: Timeframe,
    /// File layout: auto, metatrader, histdata, dukascopy, generic.
    #[arg(long, default_value = "auto")]
    format: CsvFormat,
    /// Replace the stored series instead of merging the file into it.
    #[arg(long)]
    replace: bool,
}

#[derive(Args, Debug)]
pub struct DataArgs {
    /// Count weekend, holiday and in-session gaps of every series.
    #[arg(long)]
    gaps: bool,
    #[command(subcommand)]
    action: Option<DataAction>,
}

#[derive(Subcommand, Debug)]
enum DataAction {
    /// One series with every gap in it.
    Show(SeriesArgs),
    /// Delete a series.
    Delete(SeriesArgs),
    /// Build coarser bars from a stored series and store them.
    Resample {
        #[arg(long, default_value = DEFAULT_SYMBOL)]
        symbol: String,
        /// The stored timeframe to build from.
        #[arg(long, default_value_t = DEFAULT_TIMEFRAME)]
        from: Timeframe,
        /// The coarser timeframe to build.
        #[arg(long)]
        to: Timeframe,
    },
}

#[derive(Args, Debug)]
pub struct FeatureArgs {
    #[command(flatten)]
    series: SeriesArgs,
    #[command(flatten)]
    dataset: DatasetArgs,
    /// Show every column (default: the first and last few).
    #[arg(long)]
    all_columns: bool,
    /// Write the matrix to FILE instead (`.csv` or `.parquet`): times, closes, every feature,
    /// the targets and each row's split part, for pandas or scikit-learn.
    #[arg(long, value_name = "FILE")]
    export: Option<PathBuf>,
}

pub fn run(cli: Cli) -> Result<()> {
    let json = cli.json;
    let cli_dirs = (cli.db.clone(), cli.models_dir.clone());
    match cli.command {
        Command::Import(args) => import(cli.db, json, args),
        Command::Data(args) => data(cli.db, json, args),
        Command::Features(args) => features(cli.db, json, args),
        Command::Train(args) => crate::models::train(&open_with_models(&cli_dirs)?, json, args),
        Command::Models(args) => crate::models::models(&open_with_models(&cli_dirs)?, json, args),
        Command::Forecast(args) => {
            crate::models::forecast(&open_with_models(&cli_dirs)?, json, args)
        }
        Command::Backtest(args) => {
            crate::models::backtest(&open_with_models(&cli_dirs)?, json, args)
        }
        Command::Bench(args) => crate::bench::bench(&open(cli.db)?, json, args),
        Command::Devices {
            fetch_cuda: true,
            cuda_version,
            ..
        } => crate::devices::fetch_cuda(json, cuda_version.as_deref()),
        Command::Devices { check, .. } => crate::devices::devices(json, check),
    }
}

fn open(db: Option<PathBuf>) -> Result<Workbench> {
    Ok(Workbench::open(db.as_deref())?)
}

fn open_with_models((db, models_dir): &(Option<PathBuf>, Option<PathBuf>)) -> Result<Workbench> {
    let mut wb = Workbench::open(db.as_deref())?;
    if let Some(dir) = models_dir {
        wb.set_models_dir(dir.clone());
    }
    Ok(wb)
}

fn import(db: Option<PathBuf>, json: bool, args: ImportArgs) -> Result<()> {
    let mut wb = open(db)?;
    let progress = BarProgress::new(json);
    let cancel = ctrl_c_token();
    let request = ImportRequest {
        path: args.file.display().to_string(),
        symbol: args.symbol,
        timeframe: args.timeframe,
        format: args.format,
        replace: args.replace,
    };
    let report = wb.import_csv(&request, &progress, &cancel);
    progress.finish();
    let report = report?;
    if json {
        output::print_json(&report)
    } else {
        output::print_import(&report);
        Ok(())
    }
}

fn data(db: Option<PathBuf>, json: bool, args: DataArgs) -> Result<()> {
    let mut wb = open(db)?;
    match args.action {
        None => {
            let list = wb.list_series(args.gaps)?;
            if json {
                return output::print_json(&list);
            }
            output::print_series_list(&list, wb.db_path());
        }
        Some(DataAction::Show(s)) => {
            let (info, gaps) = wb.series_gaps(&s.symbol, s.timeframe)?;
            if json {
                return output::print_json(&serde_json::json!({ "series": info, "gaps": gaps }));
            }
            output::print_series_detail(&info, &gaps);
        }
        Some(DataAction::Delete(s)) => {
            if !wb.delete_series(&s.symbol, s.timeframe)? {
                bail!(
                    "no {} series of {} is stored",
                    s.timeframe,
                    s.symbol.to_ascii_uppercase()
                );
            }
            if json {
                return output::print_json(
                    &serde_json::json!({ "deleted": { "symbol": s.symbol.to_ascii_uppercase(), "timeframe": s.timeframe } }),
                );
            }
            output::write_line(format_args!(
                "deleted {} {}",
                s.symbol.to_ascii_uppercase(),
                s.timeframe
            ));
        }
        Some(DataAction::Resample { symbol, from, to }) => {
            let report = wb
                .resample_series(&symbol, from, to)
                .with_context(|| format!("resampling {symbol} {from} → {to}"))?;
            if json {
                return output::print_json(&report);
            }
            output::print_resample(&report);
        }
    }
    Ok(())
}

fn features(db: Option<PathBuf>, json: bool, args: FeatureArgs) -> Result<()> {
    let wb = open(db)?;
    let (features, targets, split) = args.dataset.specs();
    let request = FeatureRequest {
        symbol: args.series.symbol,
        timeframe: args.series.timeframe,
        features,
        targets,
        split,
    };
    if let Some(path) = args.export {
        let written = wb
            .export_features(&request, &path)
            .with_context(|| format!("exporting features to {}", path.display()))?;
        if json {
            return output::print_json(&written);
        }
        outln!(
            "wrote {} rows × {} columns of {} {} to {} ({}) in {:.0} ms",
            written.rows,
            written.columns.len(),
            request.symbol,
            request.timeframe,
            written.path,
            written.format,
            written.elapsed_ms
        );
        outln!(
            "  columns: time (UTC), close, the features, target_h… (log returns; empty where \
             not yet known), split (train / validation / test; empty: purged or unlabelled)"
        );
        return Ok(());
    }
    let summary = wb.feature_summary(&request)?;
    if json {
        return output::print_json(&summary);
    }
    output::print_feature_summary(&summary, args.all_columns);
    Ok(())
}
