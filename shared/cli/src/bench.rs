//! `forexgpt bench`: run a suite (stored as a numbered run), and list, show, export, compare
//! or delete stored runs.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use forexgpt_core::timestamp::format_ts;
use forexgpt_engine::Workbench;
use forexgpt_engine::bench::BenchOutcome;
use forexgpt_engine::bench::history::{csv, markdown, read_peers};
use forexgpt_engine::bench::suite::bench_results;
use forexgpt_protocol::{BenchRequest, BenchSettings, BenchSize, BenchSuite};

use crate::output;
use crate::progress::{BarProgress, ctrl_c_token};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    action: Option<BenchAction>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum BenchAction {
    /// Stored runs, newest first.
    List,
    /// One stored run as a table, markdown (with speedups over the CPU), CSV or JSON.
    Show {
        id: i64,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// The operations two runs share, side by side, with B's speedup over A.
    Compare { a: i64, b: i64 },
    /// Add a peer script's results (bench/peers/*.py writes them) to a stored run.
    AddPeers {
        id: i64,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Delete a stored run.
    Delete { id: i64 },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Markdown,
    Csv,
    Json,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Which operations to time.
    #[arg(long, value_enum, default_value = "data")]
    suite: BenchSuite,
    /// Preset sizes (explicit size flags override them).
    #[arg(long, value_enum, default_value = "seed")]
    size: BenchSize,
    /// Rows of the regressor benchmark data.
    #[arg(long)]
    rows: Option<usize>,
    /// Feature columns of the regressor and encoder benchmark data.
    #[arg(long)]
    features: Option<usize>,
    /// Target columns (horizons) of the regressor benchmark data.
    #[arg(long)]
    targets: Option<usize>,
    /// Bars for the feature-matrix benchmark.
    #[arg(long)]
    bars: Option<usize>,
    /// Rows of the CSV import benchmark.
    #[arg(long)]
    csv_rows: Option<usize>,
    /// Timed runs per operation (after one cold run).
    #[arg(long)]
    repeats: Option<usize>,
    /// Rows of the autoencoder / VAE training benchmark.
    #[arg(long)]
    encoder_rows: Option<usize>,
    /// Epochs of the autoencoder / VAE training benchmark.
    #[arg(long)]
    epochs: Option<usize>,
    /// Training rows of the random-forest benchmark.
    #[arg(long)]
    forest_rows: Option<usize>,
    /// Trees of the random-forest benchmark.
    #[arg(long)]
    trees: Option<usize>,
    /// Rows the random-forest benchmark predicts.
    #[arg(long)]
    predict_rows: Option<usize>,
    /// Also write the regressor data and our CPU results here, for bench/peers/regressors_sklearn.py.
    #[arg(long, value_name = "DIR")]
    export_data: Option<PathBuf>,
    /// Peer results to put into the same table (e.g. DIR/sklearn_results.json).
    #[arg(long, value_name = "FILE")]
    peers: Vec<PathBuf>,
    /// Do not store the run in the database.
    #[arg(long)]
    no_store: bool,
    /// Time only these operations of the suite (comma-separated names as the table shows
    /// them, e.g. autoencoder_fit,autoencoder_grid_fit).
    #[arg(long, value_delimiter = ',')]
    operations: Vec<String>,
}

impl RunArgs {
    fn settings(&self) -> BenchSettings {
        BenchRequest {
            suite: self.suite,
            size: self.size,
            rows: self.rows,
            features: self.features,
            targets: self.targets,
            bars: self.bars,
            csv_rows: self.csv_rows,
            repeats: self.repeats,
            encoder_rows: self.encoder_rows,
            epochs: self.epochs,
            forest_rows: self.forest_rows,
            trees: self.trees,
            predict_rows: self.predict_rows,
            operations: self.operations.clone(),
        }
        .settings()
    }
}

/// The git revision the binary was built from (set by build.rs when built in a checkout).
const GIT_REV: Option<&str> = option_env!("FOREXGPT_GIT_REV");

pub fn bench(wb: &Workbench, json: bool, args: BenchArgs) -> Result<()> {
    match args.action {
        None => run(wb, json, &args.run),
        Some(BenchAction::List) => {
            let runs = wb.bench_runs()?;
            if json {
                return output::print_json(&runs);
            }
            if runs.is_empty() {
                outln!("no stored benchmark runs (run `forexgpt bench`)");
            }
            for r in &runs {
                outln!(
                    "#{:<4} {}  {:<10} {:>3} results  {} ({} threads), {}  v{}{}",
                    r.id,
                    format_ts(r.created_ts),
                    r.settings.suite,
                    r.results.len(),
                    r.machine.cpu,
                    r.machine.cpu_threads,
                    r.machine.devices.join(", "),
                    r.app_version,
                    r.git_rev
                        .as_deref()
                        .map_or(String::new(), |g| format!(" ({g})"))
                );
            }
            Ok(())
        }
        Some(BenchAction::Show { id, format }) => {
            let run = wb.bench_run(id)?;
            match (json, format) {
                (true, _) | (_, Format::Json) => output::print_json(&run),
                (_, Format::Markdown) => {
                    outln!("{}", markdown(&run));
                    Ok(())
                }
                (_, Format::Csv) => {
                    outln!("{}", csv(&run).trim_end());
                    Ok(())
                }
                (_, Format::Table) => {
                    output::print_bench(&run.results);
                    Ok(())
                }
            }
        }
        Some(BenchAction::Compare { a, b }) => {
            let rows = wb.compare_bench_runs(a, b)?;
            if json {
                return output::print_json(&rows);
            }
            if rows.is_empty() {
                bail!("runs #{a} and #{b} have no operation (name, size and device) in common");
            }
            outln!(
                "{:<12} {:>22} {:<34} {:>12} {:>12} {:>10}",
                "operation",
                "size",
                "device",
                format!("#{a} ms"),
                format!("#{b} ms"),
                format!("#{b} vs #{a}")
            );
            for r in rows {
                let device: String = r.device.chars().take(34).collect();
                outln!(
                    "{:<12} {:>22} {:<34} {:>12.2} {:>12.2} {:>9.2}×",
                    r.operation,
                    r.size,
                    device,
                    r.a_median_ms,
                    r.b_median_ms,
                    r.speedup_b_over_a
                );
            }
            Ok(())
        }
        Some(BenchAction::AddPeers { id, files }) => {
            let mut peers = Vec::new();
            for f in &files {
                peers.extend(read_peers(f)?);
            }
            let run = wb.add_bench_peers(id, peers)?;
            if json {
                return output::print_json(&run);
            }
            output::print_bench(&run.results);
            Ok(())
        }
        Some(BenchAction::Delete { id }) => {
            if !wb.delete_bench_run(id)? {
                bail!("no benchmark run #{id} is stored");
            }
            outln!("deleted run #{id}");
            Ok(())
        }
    }
}

fn run(wb: &Workbench, json: bool, args: &RunArgs) -> Result<()> {
    let settings = args.settings();
    // Read first: a bad peers file should not cost a whole run.
    let mut peers = Vec::new();
    for f in &args.peers {
        peers.extend(read_peers(f)?);
    }
    let progress = BarProgress::new(json);
    let cancel = ctrl_c_token();
    let results = bench_results(
        &settings,
        wb.bench_devices(args.suite),
        args.export_data.as_deref(),
        &progress,
        &cancel,
    );
    progress.finish();
    let BenchOutcome {
        mut results,
        failures,
    } = results?;
    results.extend(peers);
    let print_failures = || {
        for f in &failures {
            eprintln!("failed on its GPU (not in the table): {f}");
        }
    };
    if args.no_store {
        if json {
            return output::print_json(&serde_json::json!({
                "results": results,
                "failures": failures,
            }));
        }
        output::print_bench(&results);
        print_failures();
        return Ok(());
    }
    let stored = wb.record_bench_run(settings, results, failures.clone(), GIT_REV)?;
    if json {
        return output::print_json(&stored);
    }
    output::print_bench(&stored.results);
    print_failures();
    outln!(
        "stored as run #{} (`forexgpt bench show {} --format markdown`)",
        stored.id,
        stored.id
    );
    Ok(())
}
