//! The engine's handle: one store, its model directory and the machine's devices. Every job
//! (data, training, forecasts, benchmarks) is a method of [`Workbench`], in the module of its
//! kind.

use std::path::{Path, PathBuf};

use forexgpt_core::import::parse_candles_csv;
use forexgpt_core::sample::SAMPLE_SERIES;
use forexgpt_core::store::{ImportSource, SeedSeries, Store};
use forexgpt_device::probe::probe_cpu;
use forexgpt_device::{CostModel, Devices};
use forexgpt_protocol::{DevicePreference, DeviceRequest};

use crate::error::EngineError;

/// Metadata key set once the sample series were imported, so a user who deletes them does
/// not get them back on the next start.
const SAMPLES_SEEDED_KEY: &str = "samples_seeded";

/// Overrides where model files are kept (default: `<database name>.models/` beside the
/// database).
pub const MODELS_DIR_ENV: &str = "FOREXGPT_MODELS_DIR";

/// Where models of the database at `db` are kept: a folder named after it, beside it
/// (`/tmp/x.sqlite` → `/tmp/x.models`), so two databases in one folder never share models.
pub(crate) fn models_dir_beside(db: &Path) -> PathBuf {
    let stem = db
        .file_stem()
        .map_or_else(|| "forexgpt".into(), |s| s.to_string_lossy().into_owned());
    db.with_file_name(format!("{stem}.models"))
}

/// Earlier builds kept models in `models/` beside the database. In the app's own data
/// directory that folder can only be ours, so it is renamed once; anywhere else it may belong
/// to other files and is left alone (the README says how to move it).
fn adopt_legacy_models_dir(db: &Path, dir: &Path, app_data_dir: Option<&Path>) {
    let Some(parent) = db.parent() else { return };
    let legacy = parent.join("models");
    let ours = app_data_dir.is_some_and(|d| d == parent);
    if ours
        && legacy.is_dir()
        && !dir.exists()
        && let Err(e) = std::fs::rename(&legacy, dir)
    {
        tracing::warn!(
            "could not move {} to {}: {e}",
            legacy.display(),
            dir.display()
        );
    }
}

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
            let dir = models_dir_beside(&path);
            adopt_legacy_models_dir(&path, &dir, Store::app_data_dir().as_deref());
            wb.models_dir = Some(dir);
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

    /// Before a job placed by `request`: fits `auto`'s cost model to this database's
    /// benchmark runs when `auto` will weigh devices, so no other command (and no start-up)
    /// reads them, and a run stored or deleted counts from the next job on.
    pub(crate) fn calibrate_costs_for(&self, request: DeviceRequest) {
        if request.preference == DevicePreference::Auto {
            self.calibrate_costs();
        }
    }

    /// Fits `auto`'s cost model to the benchmark runs stored in this database
    /// (`forexgpt_device::cost`); with none, or when they cannot be read, the built-in
    /// estimates stay (logged, never an error: placement works without them).
    pub fn calibrate_costs(&self) {
        match self.store.bench_runs(None) {
            Ok(runs) => self
                .devices
                .set_cost_model(CostModel::calibrated(&runs, &probe_cpu())),
            Err(e) => {
                tracing::warn!(
                    "auto keeps its built-in estimates: reading the benchmark runs failed: {e}"
                );
                self.devices.set_cost_model(CostModel::built_in());
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_live_in_a_folder_named_after_the_database() {
        assert_eq!(
            models_dir_beside(Path::new("/tmp/x.sqlite")),
            Path::new("/tmp/x.models")
        );
        assert_eq!(models_dir_beside(Path::new("db")), Path::new("db.models"));
    }

    #[test]
    fn the_old_models_folder_is_adopted_only_in_the_apps_own_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("forexgpt.sqlite");
        let legacy = tmp.path().join("models");
        std::fs::create_dir(&legacy).unwrap();
        std::fs::write(legacy.join("a.fxm"), b"model").unwrap();
        let dir = models_dir_beside(&db);

        // Elsewhere `models/` may be anyone's: left alone.
        adopt_legacy_models_dir(&db, &dir, Some(Path::new("/somewhere/else")));
        assert!(legacy.join("a.fxm").is_file() && !dir.exists());

        adopt_legacy_models_dir(&db, &dir, Some(tmp.path()));
        assert!(!legacy.exists());
        assert_eq!(std::fs::read(dir.join("a.fxm")).unwrap(), b"model");
    }
}
