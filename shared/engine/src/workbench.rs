//! The engine's handle: one store, its model directory and the machine's devices. Every job
//! (data, training, forecasts, benchmarks) is a method of [`Workbench`], in the module of its
//! kind.

use std::path::{Path, PathBuf};

use forexgpt_core::import::parse_candles_csv;
use forexgpt_core::sample::SAMPLE_SERIES;
use forexgpt_core::store::{ImportSource, SeedSeries, Store};
use forexgpt_device::Devices;

use crate::error::EngineError;

/// Metadata key set once the sample series were imported, so a user who deletes them does
/// not get them back on the next start.
const SAMPLES_SEEDED_KEY: &str = "samples_seeded";

/// Overrides where model files are kept (default: `models/` beside the database).
pub const MODELS_DIR_ENV: &str = "FOREXGPT_MODELS_DIR";

/// The engine's handle on one store, its model directory and the machine's devices.
pub struct Workbench {
    pub(crate) store: Store,
    models_dir: Option<PathBuf>,
    /// Probed on first use: probing wgpu and CUDA takes seconds and CPU-only work needs neither.
    pub(crate) devices: Devices,
}

impl Workbench {
    /// Opens the store at `db` (or the default location), seeding the samples on first run.
    pub fn open(db: Option<&Path>) -> Result<Workbench, EngineError> {
        let path = match db {
            Some(p) => p.to_path_buf(),
            None => Store::default_path()?,
        };
        let mut wb = Workbench::with_store(Store::open(&path)?)?;
        if wb.models_dir.is_none() {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            wb.models_dir = Some(dir.unwrap_or(Path::new(".")).join("models"));
        }
        Ok(wb)
    }

    /// Wraps an open store (in-memory ones in tests and benchmarks), seeding the samples.
    /// Models go to `FOREXGPT_MODELS_DIR` if set; otherwise set a directory before saving.
    pub fn with_store(store: Store) -> Result<Workbench, EngineError> {
        let models_dir = std::env::var_os(MODELS_DIR_ENV)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        let mut wb = Workbench {
            store,
            models_dir,
            devices: Devices::new(),
        };
        wb.seed_samples()?;
        Ok(wb)
    }

    /// Keeps model files in `dir` (created when the first model is saved).
    pub fn set_models_dir(&mut self, dir: PathBuf) {
        self.models_dir = Some(dir);
    }

    pub fn models_dir(&self) -> Result<&Path, EngineError> {
        self.models_dir.as_deref().ok_or_else(|| {
            EngineError::InvalidRequest(format!(
                "no model directory: the store is in memory and {MODELS_DIR_ENV} is not set"
            ))
        })
    }

    /// Shares `devices` (the app probes once, in the background from start-up).
    pub fn set_devices(&mut self, devices: Devices) {
        self.devices = devices;
    }

    pub fn db_path(&self) -> &str {
        self.store.path()
    }

    /// Imports the sample series once per database. The check and the imports share one
    /// write transaction, so connections opening a new database together seed it once.
    fn seed_samples(&mut self) -> Result<(), EngineError> {
        if self.store.meta(SAMPLES_SEEDED_KEY)?.is_some() {
            return Ok(());
        }
        let mut parsed = Vec::with_capacity(SAMPLE_SERIES.len());
        for sample in SAMPLE_SERIES {
            parsed.push(parse_candles_csv(
                sample.file_name,
                sample.csv,
                sample.format,
                sample.timeframe,
                &mut |_, _| true,
            )?);
        }
        let series: Vec<SeedSeries> = SAMPLE_SERIES
            .iter()
            .zip(&parsed)
            .map(|(sample, p)| SeedSeries {
                symbol: sample.symbol,
                timeframe: sample.timeframe,
                candles: &p.candles,
                source: ImportSource {
                    file: sample.file_name,
                    format: p.format.as_str(),
                    replace: false,
                },
            })
            .collect();
        let seeded =
            self.store
                .import_once(SAMPLES_SEEDED_KEY, env!("CARGO_PKG_VERSION"), &series)?;
        for (sample, outcome) in SAMPLE_SERIES.iter().zip(seeded.iter().flatten()) {
            tracing::info!(symbol = sample.symbol, timeframe = %sample.timeframe, bars = outcome.inserted, "imported sample series");
        }
        Ok(())
    }
}
