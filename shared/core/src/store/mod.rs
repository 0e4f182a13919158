//! The embedded SQLite store: candles per symbol and timeframe, in one file in the user's
//! data directory (or wherever `--db` / `FOREXGPT_DB` points).
//!
//! WAL mode; the schema version lives in `PRAGMA user_version` and [`MIGRATIONS`] brings an
//! older file up to date inside one transaction (`migrations`). Every import is one transaction, so a
//! failed or cancelled import leaves the file as it was.

use std::path::{Path, PathBuf};

mod bench_runs;
mod migrations;
mod series;

use forexgpt_protocol::Timeframe;
use rusqlite::{Connection, OptionalExtension, params};

use crate::resample::ResampleError;
use crate::timestamp::format_ts;

pub use migrations::MIGRATIONS;
pub use series::{ImportSource, MergeOutcome, SeedSeries};

/// Environment variable that overrides the database path.
pub const DB_ENV: &str = "FOREXGPT_DB";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database '{path}': {cause}")]
    Sqlite {
        path: String,
        cause: rusqlite::Error,
    },
    #[error("cannot create the data directory '{path}': {cause}")]
    CreateDir { path: String, cause: std::io::Error },
    #[error("no data directory could be determined for this user; pass --db or set {DB_ENV}")]
    NoDataDir,
    #[error(
        "database '{path}' has schema version {found}, newer than this app understands ({supported}); upgrade ForexGPT Workbench"
    )]
    FutureSchema {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("no {timeframe} bars of {symbol} are stored{hint}")]
    SeriesNotFound {
        symbol: String,
        timeframe: Timeframe,
        hint: String,
    },
    #[error(
        "{symbol} {timeframe}: the bar at {} is stored with different values (close {stored} vs {new} in the file); nothing was imported. Use --replace to replace the stored series",
        format_ts(*ts)
    )]
    Conflict {
        symbol: String,
        timeframe: Timeframe,
        ts: i64,
        stored: f64,
        new: f64,
    },
    #[error(transparent)]
    Resample(#[from] ResampleError),
    #[error("database '{path}': {what} cannot be read back: {cause}")]
    BadRecord {
        path: String,
        what: String,
        cause: serde_json::Error,
    },
}

pub struct Store {
    conn: Connection,
    path: String,
}

impl Store {
    /// The database path: `FOREXGPT_DB` if set, else `forexgpt.sqlite` in the user's data dir.
    pub fn default_path() -> Result<PathBuf, StoreError> {
        if let Some(p) = std::env::var_os(DB_ENV).filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        Ok(Store::app_data_dir()
            .ok_or(StoreError::NoDataDir)?
            .join("forexgpt.sqlite"))
    }

    /// The app's own data directory (`~/.local/share/forexgpt` on Linux), where the default
    /// database lives; `None` when the system names no home directory.
    pub fn app_data_dir() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "forexgpt").map(|d| d.data_dir().to_path_buf())
    }

    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|cause| StoreError::CreateDir {
                path: dir.display().to_string(),
                cause,
            })?;
        }
        let label = path.display().to_string();
        let conn = Connection::open(path).map_err(|cause| StoreError::Sqlite {
            path: label.clone(),
            cause,
        })?;
        Store::init(conn, label)
    }

    /// A private in-memory database (tests, benchmarks).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let label = ":memory:".to_string();
        let conn = Connection::open_in_memory().map_err(|cause| StoreError::Sqlite {
            path: label.clone(),
            cause,
        })?;
        Store::init(conn, label)
    }

    fn init(conn: Connection, path: String) -> Result<Store, StoreError> {
        let mut store = Store { conn, path };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    fn sql<T>(&self, result: rusqlite::Result<T>) -> Result<T, StoreError> {
        result.map_err(|cause| StoreError::Sqlite {
            path: self.path.clone(),
            cause,
        })
    }

    fn configure(&self) -> Result<(), StoreError> {
        // First, so that a connection opened while another migrates waits instead of failing.
        self.sql(self.conn.busy_timeout(std::time::Duration::from_secs(5)))?;
        // journal_mode answers with a row, so it is queried rather than executed.
        let mode: String = self.sql(
            self.conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)),
        )?;
        tracing::debug!(path = %self.path, journal_mode = %mode, "opened store");
        self.sql(self.conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        ))
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// A value from the app metadata table.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.sql(
            self.conn
                .query_row("SELECT value FROM app_meta WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional(),
        )
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.sql(self.conn.execute(
            "INSERT INTO app_meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        ))
        .map(|_| ())
    }
}

fn sqlite_error(path: &str, cause: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.to_string(),
        cause,
    }
}

/// A transaction that holds the write lock from its start, so a concurrent writer waits
/// (busy timeout) instead of failing when its read snapshot turns stale.
fn write_transaction<'c>(
    conn: &'c mut Connection,
    path: &str,
) -> Result<rusqlite::Transaction<'c>, StoreError> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|cause| sqlite_error(path, cause))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle::Candle;
    use forexgpt_protocol::BenchRun;

    fn bars(start: i64, n: i64, price: f64) -> Vec<Candle> {
        (0..n)
            .map(|i| Candle {
                ts: start + i * 3600,
                open: price,
                high: price + 0.01,
                low: price - 0.01,
                close: price,
                volume: 1.0,
            })
            .collect()
    }

    const SRC: ImportSource = ImportSource {
        file: "test.csv",
        format: "generic",
        replace: false,
    };

    #[test]
    fn import_once_imports_the_first_time_only_even_from_many_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.sqlite");
        let candles = bars(1_700_000_000, 50, 1.1);
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let (path, candles) = (path.clone(), candles.clone());
                std::thread::spawn(move || {
                    let mut store = Store::open(&path).unwrap();
                    let series = [SeedSeries {
                        symbol: "EURUSD",
                        timeframe: Timeframe::H1,
                        candles: &candles,
                        source: SRC,
                    }];
                    store.import_once("seeded", "1", &series).unwrap()
                })
            })
            .collect();
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let seeded: Vec<_> = outcomes.iter().flatten().collect();
        assert_eq!(seeded.len(), 1, "{outcomes:?}");
        assert_eq!(seeded[0][0].inserted, 50);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.meta("seeded").unwrap().as_deref(), Some("1"));
        let imports: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM imports", [], |r| r.get(0))
            .unwrap();
        assert_eq!(imports, 1, "the import log shows one seeding");
    }

    #[test]
    fn benchmark_runs_are_stored_listed_and_deleted() {
        let store = Store::open_in_memory().unwrap();
        let run = BenchRun {
            id: 0,
            created_ts: 1_700_000_000,
            app_version: "0.1.0".into(),
            git_rev: Some("abc1234".into()),
            machine: forexgpt_protocol::BenchMachine {
                os: "linux".into(),
                cpu: "test".into(),
                cpu_threads: 2,
                devices: vec!["cpu".into()],
                failures: Vec::new(),
            },
            settings: forexgpt_protocol::BenchSettings {
                suite: "data".into(),
                repeats: 3,
                rows: 10,
                features: 2,
                targets: 1,
                bars: 100,
                csv_rows: 100,
                encoder_rows: 0,
                encoder_features: 0,
                epochs: 0,
                forest_rows: 0,
                forest_features: 0,
                trees: 0,
                predict_rows: 0,
                ensemble_models: 0,
                operations: Vec::new(),
            },
            results: Vec::new(),
        };
        let a = store.insert_bench_run(&run).unwrap();
        let b = store.insert_bench_run(&run).unwrap();
        let all = store.bench_runs(None).unwrap();
        assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b, a]);
        assert_eq!(
            BenchRun { id: a, ..run },
            store.bench_runs(Some(a)).unwrap()[0]
        );
        assert!(store.delete_bench_run(a).unwrap());
        assert!(!store.delete_bench_run(a).unwrap());
        assert_eq!(store.bench_runs(None).unwrap().len(), 1);
    }

    #[test]
    fn migrates_once_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/x.sqlite");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    }

    #[test]
    fn refuses_a_database_from_the_future() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite");
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(&path).err().unwrap();
        assert!(
            matches!(err, StoreError::FutureSchema { found: 99, .. }),
            "{err}"
        );
    }

    #[test]
    fn the_users_file_replaces_a_series_that_holds_only_the_sample() {
        let mut store = Store::open_in_memory().unwrap();
        let sample = ImportSource {
            file: "sample:EURUSD_1h_2017.csv",
            format: "dukascopy",
            replace: false,
        };
        store
            .import_candles(
                "EURUSD",
                Timeframe::H1,
                &bars(1_704_067_200, 10, 1.1),
                &sample,
            )
            .unwrap();
        // The user's own bars differ from the sample's at the same times: not a conflict,
        // the sample goes, theirs stay, and the outcome says so.
        let theirs = bars(1_704_067_200 + 5 * 3600, 8, 1.2);
        let out = store
            .import_candles("EURUSD", Timeframe::H1, &theirs, &SRC)
            .unwrap();
        assert_eq!(
            out,
            MergeOutcome {
                inserted: 8,
                unchanged: 0,
                replaced_sample: true,
            }
        );
        assert_eq!(store.load_candles("EURUSD", Timeframe::H1).unwrap(), theirs);
        // From now on the series is the user's data: a differing file is refused again.
        let clash = bars(1_704_067_200 + 5 * 3600, 2, 1.3);
        let err = store
            .import_candles("EURUSD", Timeframe::H1, &clash, &SRC)
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
        assert_eq!(store.load_candles("EURUSD", Timeframe::H1).unwrap(), theirs);
        // Another series of the same symbol is not touched by any of this.
        assert!(store.load_candles("EURUSD", Timeframe::H4).is_err());
    }

    #[test]
    fn import_merge_and_conflict() {
        let mut store = Store::open_in_memory().unwrap();
        let first = bars(1_704_067_200, 10, 1.1);
        let out = store
            .import_candles("EURUSD", Timeframe::H1, &first, &SRC)
            .unwrap();
        assert_eq!(
            out,
            MergeOutcome {
                inserted: 10,
                unchanged: 0,
                replaced_sample: false,
            }
        );
        // Overlapping, identical bars plus 5 new ones.
        let more = bars(1_704_067_200 + 5 * 3600, 10, 1.1);
        let out = store
            .import_candles("EURUSD", Timeframe::H1, &more, &SRC)
            .unwrap();
        assert_eq!(
            out,
            MergeOutcome {
                inserted: 5,
                unchanged: 5,
                replaced_sample: false,
            }
        );
        // Different values for a stored bar: refused, nothing changes.
        let clash = bars(1_704_067_200 + 14 * 3600, 3, 1.2);
        let err = store
            .import_candles("EURUSD", Timeframe::H1, &clash, &SRC)
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
        assert_eq!(
            store.load_candles("EURUSD", Timeframe::H1).unwrap().len(),
            15
        );
        // --replace swaps the series.
        let replace = ImportSource {
            replace: true,
            ..SRC
        };
        let out = store
            .import_candles("EURUSD", Timeframe::H1, &clash, &replace)
            .unwrap();
        assert_eq!(out.inserted, 3);
        let stored = store.load_candles("EURUSD", Timeframe::H1).unwrap();
        assert_eq!(stored, clash);
    }

    #[test]
    fn lists_resamples_and_deletes() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .import_candles("EURUSD", Timeframe::H1, &bars(1_704_067_200, 48, 1.1), &SRC)
            .unwrap();
        let list = store.list_series().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].bars, list[0].first_ts, list[0].last_ts),
            (48, 1_704_067_200, 1_704_067_200 + 47 * 3600)
        );
        let (daily, from) = store.load_or_resample("EURUSD", Timeframe::D1).unwrap();
        assert_eq!((daily.len(), from), (2, Timeframe::H1));
        // With 4h bars stored too, the finest series (1h) is still the source.
        let four: Vec<Candle> = bars(1_704_067_200, 12, 2.0)
            .into_iter()
            .enumerate()
            .map(|(i, c)| Candle {
                ts: c.ts + 3 * 3600 * i as i64,
                ..c
            })
            .collect();
        store
            .import_candles("EURUSD", Timeframe::H4, &four, &SRC)
            .unwrap();
        let (daily, from) = store.load_or_resample("EURUSD", Timeframe::D1).unwrap();
        assert_eq!((from, daily[0].close), (Timeframe::H1, 1.1));
        assert!(store.delete_series("EURUSD", Timeframe::H4).unwrap());
        assert!(matches!(
            store.load_or_resample("EURUSD", Timeframe::M15),
            Err(StoreError::SeriesNotFound { .. })
        ));
        let err = store
            .load_candles("GBPUSD", Timeframe::H1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("stored: EURUSD 1h"), "{err}");
        assert!(store.delete_series("EURUSD", Timeframe::H1).unwrap());
        assert!(store.list_series().unwrap().is_empty());
        let count: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM candles", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 0);
    }

    #[test]
    fn meta_round_trips() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.meta("k").unwrap(), None);
        store.set_meta("k", "v1").unwrap();
        store.set_meta("k", "v2").unwrap();
        assert_eq!(store.meta("k").unwrap().as_deref(), Some("v2"));
    }
}
