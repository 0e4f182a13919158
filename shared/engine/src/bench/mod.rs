//! The benchmark harness and the data-pipeline suite (feature matrix, CSV import).
//!
//! Each case does its own setup and returns the time of the part it measures, so fixture
//! work (generating data, creating a database file) never counts. One cold run is reported
//! separately; then `repeats` timed runs give median, min and max. Every run's output is
//! checked, so a fast wrong answer fails instead of winning.

pub mod encoders;
pub mod forecast;
pub mod forest;
pub mod history;
pub mod models;
pub mod suite;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use forexgpt_core::Candle;
use forexgpt_core::features::{build_features, build_targets};
use forexgpt_core::import::read_candles_csv;
use forexgpt_core::store::{ImportSource, Store};
use forexgpt_core::synthetic::random_walk_hourly;
use forexgpt_core::timestamp::format_ts;
use forexgpt_device::ComputeDevice;
use forexgpt_protocol::{
    BenchResult, CsvFormat, FeatureSpec, ProgressEvent, Stage, TargetSpec, Timeframe,
};

use crate::error::EngineError;
use crate::progress::{CancelToken, ProgressSink};

/// One measurable operation.
pub struct BenchCase {
    pub operation: String,
    pub size: String,
    pub device: String,
    /// Items processed per run, for throughput.
    pub items: usize,
    /// Runs once and returns the measured duration (setup excluded).
    pub run: Box<dyn FnMut() -> Result<Duration, EngineError>>,
    /// Set by the run: how far its result is from the CPU reference.
    pub diff_vs_cpu: Option<Arc<Mutex<f64>>>,
}

impl BenchCase {
    /// A case that runs on the CPU and has no reference result to compare with.
    pub fn on_cpu(
        operation: &str,
        size: String,
        items: usize,
        run: impl FnMut() -> Result<Duration, EngineError> + 'static,
    ) -> BenchCase {
        BenchCase {
            operation: operation.to_string(),
            size,
            device: "cpu".into(),
            items,
            run: Box::new(run),
            diff_vs_cpu: None,
        }
    }

    /// A case on `device` (the CPU when `None`), labelled with it; `run` gets the device and
    /// the slot where it writes how far its result is from the CPU's (reported for devices
    /// only).
    pub fn on_device(
        operation: &str,
        size: String,
        items: usize,
        device: Option<ComputeDevice>,
        mut run: impl FnMut(Option<&ComputeDevice>, &Mutex<f64>) -> Result<Duration, EngineError>
        + 'static,
    ) -> BenchCase {
        let diff = Arc::new(Mutex::new(0.0));
        let slot = Arc::clone(&diff);
        BenchCase {
            operation: operation.to_string(),
            size,
            device: device
                .as_ref()
                .map_or_else(|| "cpu".to_string(), |d| d.label().to_string()),
            items,
            diff_vs_cpu: device.is_some().then_some(diff),
            run: Box::new(move || run(device.as_ref(), &slot)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    pub repeats: usize,
}

/// Runs one case: a cold run, then `repeats` timed runs.
pub fn run_case(case: &mut BenchCase, options: BenchOptions) -> Result<BenchResult, EngineError> {
    let first = (case.run)()?;
    let mut times: Vec<f64> = (0..options.repeats.max(1))
        .map(|_| (case.run)().map(|d| d.as_secs_f64() * 1e3))
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    Ok(BenchResult {
        operation: case.operation.clone(),
        size: case.size.clone(),
        device: case.device.clone(),
        first_run_ms: first.as_secs_f64() * 1e3,
        median_ms: median,
        min_ms: times[0],
        max_ms: times[times.len() - 1],
        repeats: times.len(),
        throughput_per_s: case.items as f64 / (median / 1e3),
        max_rel_diff_vs_cpu: case
            .diff_vs_cpu
            .as_ref()
            .map(|d| *d.lock().unwrap_or_else(|e| e.into_inner())),
    })
}

/// What a suite measured, and the GPU cases that failed on their device.
#[derive(Debug, Default)]
pub struct BenchOutcome {
    pub results: Vec<BenchResult>,
    /// "operation (size) on device: reason", one per GPU case its device failed.
    pub failures: Vec<String>,
}

/// Runs every case in order, reporting progress; stops early when cancelled. A case whose GPU
/// fails (out of memory, a lost device) becomes a failure of the outcome and the suite goes
/// on; any other error, and every error on the CPU, ends it.
pub fn run_suite(
    cases: &mut [BenchCase],
    options: BenchOptions,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<BenchOutcome, EngineError> {
    let total = cases.len() as u64;
    let mut results = Vec::with_capacity(cases.len());
    let mut failures = Vec::new();
    for (i, case) in cases.iter_mut().enumerate() {
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        progress.report(ProgressEvent::new(
            Stage::Benchmark,
            i as u64,
            Some(total),
            Some(format!("{} ({})", case.operation, case.size)),
        ));
        let result = match run_case(case, options) {
            Ok(result) => result,
            Err(e) if !case.device.starts_with("cpu") && e.device_failure().is_some() => {
                let failure = format!("{} ({}) on {}: {e}", case.operation, case.size, case.device);
                tracing::warn!("benchmark case failed on its GPU: {failure}");
                failures.push(failure);
                continue;
            }
            Err(e) => return Err(e),
        };
        // Logged as it finishes, so a run that is stopped part-way still leaves its numbers.
        tracing::info!(
            "{} ({}) on {}: median {:.2} ms, cold {:.2} ms, {:.0} items/s",
            result.operation,
            result.size,
            result.device,
            result.median_ms,
            result.first_run_ms,
            result.throughput_per_s
        );
        results.push(result);
    }
    progress.report(ProgressEvent::new(
        Stage::Benchmark,
        total,
        Some(total),
        None,
    ));
    Ok(BenchOutcome { results, failures })
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), EngineError> {
    if ok {
        Ok(())
    } else {
        Err(EngineError::Io {
            context: "benchmark result check".into(),
            cause: std::io::Error::other(what()),
        })
    }
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |cause| EngineError::Io {
        context: context.to_string(),
        cause,
    }
}

/// A new SQLite file for one benchmark run, removed with its WAL files when dropped.
struct ScratchDb(PathBuf);

impl ScratchDb {
    fn new(dir: &Path, name: String) -> ScratchDb {
        ScratchDb(dir.join(name))
    }

    fn open(&self) -> Result<Store, EngineError> {
        Ok(Store::open(&self.0)?)
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

fn check_stored(inserted: u64, rows: usize) -> Result<(), EngineError> {
    check(inserted as usize == rows, || {
        format!("stored {inserted} of {rows} rows")
    })
}

/// Writes `candles` as a plain ISO-8601 CSV (the most common export).
pub fn write_generic_csv(path: &Path, candles: &[Candle]) -> Result<(), EngineError> {
    use std::io::Write;
    let file = std::fs::File::create(path).map_err(io("create benchmark CSV"))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "time,open,high,low,close,volume").map_err(io("write benchmark CSV"))?;
    for c in candles {
        writeln!(
            w,
            "{},{:.5},{:.5},{:.5},{:.5},{}",
            format_ts(c.ts),
            c.open,
            c.high,
            c.low,
            c.close,
            c.volume
        )
        .map_err(io("write benchmark CSV"))?;
    }
    w.flush().map_err(io("write benchmark CSV"))
}

/// Feature matrix and targets on `bars` synthetic hourly bars.
pub fn features_case(bars: usize) -> BenchCase {
    let candles = random_walk_hourly(bars, 1);
    let spec = FeatureSpec::default();
    let targets = TargetSpec::default();
    BenchCase::on_cpu("features", format!("{bars} bars"), bars, move || {
        let started = Instant::now();
        let fm = build_features(&candles, &spec)?;
        let t = build_targets(&fm, &targets)?;
        let elapsed = started.elapsed();
        check(
            fm.rows() == bars - fm.warmup && t.rows == fm.rows() - 24,
            || format!("unexpected shape {}×{}", fm.rows(), fm.n_columns()),
        )?;
        Ok(elapsed)
    })
}

/// CSV import (parse + validate + store into a new SQLite file) of `rows` rows.
pub fn import_case(rows: usize, dir: &Path) -> Result<BenchCase, EngineError> {
    let csv = dir.join(format!("bench_{rows}.csv"));
    write_generic_csv(&csv, &random_walk_hourly(rows, 2))?;
    let dir = dir.to_path_buf();
    let mut run_no = 0usize;
    Ok(BenchCase::on_cpu(
        "import_csv",
        format!("{rows} rows"),
        rows,
        move || {
            run_no += 1;
            let db = ScratchDb::new(&dir, format!("bench_{run_no}.sqlite"));
            let mut store = db.open()?;
            let started = Instant::now();
            let parsed = read_candles_csv(&csv, CsvFormat::Auto, Timeframe::H1, &mut |_, _| true)?;
            let source = ImportSource {
                file: "bench.csv",
                format: parsed.format.as_str(),
                replace: false,
            };
            let outcome = store.import_candles("BENCH", Timeframe::H1, &parsed.candles, &source)?;
            let elapsed = started.elapsed();
            check_stored(outcome.inserted, rows)?;
            Ok(elapsed)
        },
    ))
}

/// The two halves of an import measured apart: parse + validate, and the SQLite insert.
pub fn import_parts_cases(rows: usize, dir: &Path) -> Result<Vec<BenchCase>, EngineError> {
    let csv = dir.join(format!("bench_parts_{rows}.csv"));
    let candles = random_walk_hourly(rows, 3);
    write_generic_csv(&csv, &candles)?;
    let parse = BenchCase::on_cpu("csv_parse", format!("{rows} rows"), rows, move || {
        let started = Instant::now();
        let parsed = read_candles_csv(&csv, CsvFormat::Auto, Timeframe::H1, &mut |_, _| true)?;
        let elapsed = started.elapsed();
        check(parsed.candles.len() == rows, || {
            format!("parsed {} of {rows} rows", parsed.candles.len())
        })?;
        Ok(elapsed)
    });
    let dir = dir.to_path_buf();
    let mut run_no = 0usize;
    let insert = BenchCase::on_cpu("store_insert", format!("{rows} rows"), rows, move || {
        run_no += 1;
        let db = ScratchDb::new(&dir, format!("bench_insert_{run_no}.sqlite"));
        let mut store = db.open()?;
        let source = ImportSource {
            file: "bench",
            format: "generic",
            replace: false,
        };
        let started = Instant::now();
        let outcome = store.import_candles("BENCH", Timeframe::H1, &candles, &source)?;
        let elapsed = started.elapsed();
        check_stored(outcome.inserted, rows)?;
        Ok(elapsed)
    });
    Ok(vec![parse, insert])
}

/// The data-pipeline suite: features on `bars` bars, import of `csv_rows` rows, and the
/// import's two halves; files go to `dir`.
pub fn data_suite(bars: usize, csv_rows: usize, dir: &Path) -> Result<Vec<BenchCase>, EngineError> {
    let mut cases = vec![features_case(bars), import_case(csv_rows, dir)?];
    cases.extend(import_parts_cases(csv_rows, dir)?);
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    #[test]
    fn small_suite_runs_and_reports_sane_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let mut cases = data_suite(2_000, 3_000, dir.path()).unwrap();
        let results = run_suite(
            &mut cases,
            BenchOptions { repeats: 3 },
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap()
        .results;
        assert_eq!(results.len(), 4);
        for r in &results {
            assert_eq!(r.repeats, 3);
            assert!(r.min_ms <= r.median_ms && r.median_ms <= r.max_ms, "{r:?}");
            assert!(r.throughput_per_s > 0.0);
        }
        // Only the two CSV files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
