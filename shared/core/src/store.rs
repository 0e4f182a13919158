//! The embedded SQLite store: candles per symbol and timeframe, in one file in the user's
//! data directory (or wherever `--db` / `FOREXGPT_DB` points).
//!
//! WAL mode; the schema version lives in `PRAGMA user_version` and [`MIGRATIONS`] brings an
//! older file up to date inside one transaction. Every import is one transaction, so a
//! failed or cancelled import leaves the file as it was.

use std::path::{Path, PathBuf};

use forexgpt_protocol::{BenchRun, SeriesInfo, Timeframe};
use rusqlite::{Connection, OptionalExtension, params};

use crate::candle::Candle;
use crate::resample::{ResampleError, resample};
use crate::timestamp::format_ts;

/// Environment variable that overrides the database path.
pub const DB_ENV: &str = "FOREXGPT_DB";

/// Schema migrations; entry `i` upgrades version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: series, candles, import log, app metadata.
    "CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        symbol TEXT NOT NULL,
        timeframe TEXT NOT NULL,
        source TEXT NOT NULL,
        updated_ts INTEGER NOT NULL,
        UNIQUE (symbol, timeframe)
    );
    CREATE TABLE candles (
        series_id INTEGER NOT NULL REFERENCES series(id) ON DELETE CASCADE,
        ts INTEGER NOT NULL,
        open REAL NOT NULL,
        high REAL NOT NULL,
        low REAL NOT NULL,
        close REAL NOT NULL,
        volume REAL NOT NULL,
        PRIMARY KEY (series_id, ts)
    ) WITHOUT ROWID;
    CREATE TABLE imports (
        id INTEGER PRIMARY KEY,
        series_id INTEGER NOT NULL REFERENCES series(id) ON DELETE CASCADE,
        file TEXT NOT NULL,
        format TEXT NOT NULL,
        rows INTEGER NOT NULL,
        inserted INTEGER NOT NULL,
        imported_ts INTEGER NOT NULL
    );
    CREATE TABLE app_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );",
    // 2: benchmark runs; machine, settings and results as JSON (protocol::BenchRun fields).
    "CREATE TABLE bench_runs (
        id INTEGER PRIMARY KEY,
        created_ts INTEGER NOT NULL,
        app_version TEXT NOT NULL,
        git_rev TEXT,
        machine TEXT NOT NULL,
        settings TEXT NOT NULL,
        results TEXT NOT NULL
    );",
];

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

/// How an import met the bars already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeOutcome {
    pub inserted: u64,
    pub unchanged: u64,
}

/// One series to seed with [`Store::import_once`].
pub struct SeedSeries<'a> {
    pub symbol: &'a str,
    pub timeframe: Timeframe,
    pub candles: &'a [Candle],
    pub source: ImportSource<'a>,
}

/// A description of one import, written to the import log.
#[derive(Debug, Clone)]
pub struct ImportSource<'a> {
    pub file: &'a str,
    pub format: &'a str,
    /// Replace the stored series instead of merging into it.
    pub replace: bool,
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
        let dirs =
            directories::ProjectDirs::from("", "", "forexgpt").ok_or(StoreError::NoDataDir)?;
        Ok(dirs.data_dir().join("forexgpt.sqlite"))
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

    /// The schema version this file is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.sql(self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let supported = MIGRATIONS.len() as i64;
        let found = self.schema_version()?;
        if found > supported {
            return Err(StoreError::FutureSchema {
                path: self.path.clone(),
                found,
                supported,
            });
        }
        if found == supported {
            return Ok(());
        }
        let path = self.path.clone();
        let wrap = |cause| StoreError::Sqlite {
            path: path.clone(),
            cause,
        };
        // Several connections may open a new file at once (the app's commands each open one):
        // take the write lock first, then read the version again under it.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(wrap)?;
        let found: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(wrap)?;
        for (version, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(found).unwrap_or(0))
        {
            tracing::info!(to = version + 1, "migrating store schema");
            tx.execute_batch(sql).map_err(wrap)?;
            tx.pragma_update(None, "user_version", version as i64 + 1)
                .map_err(wrap)?;
        }
        tx.commit().map_err(wrap)
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

    /// Stores a benchmark run and returns its id (the `id` field of `run` is ignored).
    pub fn insert_bench_run(&self, run: &BenchRun) -> Result<i64, StoreError> {
        let record = |what: &str, v: Result<String, serde_json::Error>| {
            v.map_err(|cause| StoreError::BadRecord {
                path: self.path.clone(),
                what: format!("benchmark {what}"),
                cause,
            })
        };
        let machine = record("machine", serde_json::to_string(&run.machine))?;
        let settings = record("settings", serde_json::to_string(&run.settings))?;
        let results = record("results", serde_json::to_string(&run.results))?;
        self.sql(self.conn.execute(
            "INSERT INTO bench_runs (created_ts, app_version, git_rev, machine, settings, results)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                run.created_ts,
                run.app_version,
                run.git_rev,
                machine,
                settings,
                results
            ],
        ))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Stored benchmark runs, newest first (all of them, or the one with `id`).
    pub fn bench_runs(&self, id: Option<i64>) -> Result<Vec<BenchRun>, StoreError> {
        let mut stmt = self.sql(self.conn.prepare(
            "SELECT id, created_ts, app_version, git_rev, machine, settings, results
             FROM bench_runs WHERE ?1 IS NULL OR id = ?1 ORDER BY id DESC",
        ))?;
        let rows = self.sql(
            stmt.query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>()),
        )?;
        rows.into_iter()
            .map(
                |(id, created_ts, app_version, git_rev, machine, settings, results)| {
                    let bad = |cause| StoreError::BadRecord {
                        path: self.path.clone(),
                        what: format!("benchmark run {id}"),
                        cause,
                    };
                    Ok(BenchRun {
                        id,
                        created_ts,
                        app_version,
                        git_rev,
                        machine: serde_json::from_str(&machine).map_err(bad)?,
                        settings: serde_json::from_str(&settings).map_err(bad)?,
                        results: serde_json::from_str(&results).map_err(bad)?,
                    })
                },
            )
            .collect()
    }

    /// Replaces the results of a stored run (peers added later); returns whether it existed.
    pub fn update_bench_results(
        &self,
        id: i64,
        results: &[forexgpt_protocol::BenchResult],
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(results).map_err(|cause| StoreError::BadRecord {
            path: self.path.clone(),
            what: "benchmark results".into(),
            cause,
        })?;
        Ok(self.sql(self.conn.execute(
            "UPDATE bench_runs SET results = ?2 WHERE id = ?1",
            params![id, json],
        ))? > 0)
    }

    /// Deletes a stored benchmark run; returns whether it existed.
    pub fn delete_bench_run(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self.sql(
            self.conn
                .execute("DELETE FROM bench_runs WHERE id = ?1", [id]),
        )? > 0)
    }

    /// Stores `candles` (valid, in time order) as `symbol`/`timeframe` in one transaction.
    /// Bars already stored with the same values are left alone; a stored bar with different
    /// values is a [`StoreError::Conflict`] unless `source.replace` is set.
    pub fn import_candles(
        &mut self,
        symbol: &str,
        timeframe: Timeframe,
        candles: &[Candle],
        source: &ImportSource,
    ) -> Result<MergeOutcome, StoreError> {
        let path = self.path.clone();
        let tx = write_transaction(&mut self.conn, &path)?;
        let outcome = merge_candles(&tx, &path, symbol, timeframe, candles, source)?;
        tx.commit().map_err(|cause| sqlite_error(&path, cause))?;
        Ok(outcome)
    }

    /// Imports `series` and sets `key` to `value` in one transaction, unless `key` is already
    /// set: how the sample series are seeded exactly once, even when several connections open
    /// a new database at the same time. `None` when another connection (or an earlier run)
    /// seeded them.
    pub fn import_once(
        &mut self,
        key: &str,
        value: &str,
        series: &[SeedSeries<'_>],
    ) -> Result<Option<Vec<MergeOutcome>>, StoreError> {
        let path = self.path.clone();
        let wrap = |cause| sqlite_error(&path, cause);
        let tx = write_transaction(&mut self.conn, &path)?;
        let seeded: Option<String> = tx
            .query_row("SELECT value FROM app_meta WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(wrap)?;
        if seeded.is_some() {
            return Ok(None);
        }
        let mut outcomes = Vec::with_capacity(series.len());
        for s in series {
            outcomes.push(merge_candles(
                &tx,
                &path,
                s.symbol,
                s.timeframe,
                s.candles,
                &s.source,
            )?);
        }
        tx.execute(
            "INSERT INTO app_meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )
        .map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        Ok(Some(outcomes))
    }

    /// Every stored series with its bar count and range.
    pub fn list_series(&self) -> Result<Vec<SeriesInfo>, StoreError> {
        let mut stmt = self.sql(self.conn.prepare(
            "SELECT s.symbol, s.timeframe, s.source, s.updated_ts, COUNT(c.ts), MIN(c.ts), MAX(c.ts)
             FROM series s JOIN candles c ON c.series_id = s.id
             GROUP BY s.id ORDER BY s.symbol, s.timeframe",
        ))?;
        let rows = self.sql(stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
            ))
        }))?;
        let mut out = Vec::new();
        for row in rows {
            let (symbol, tf, source, updated_ts, bars, first_ts, last_ts) = self.sql(row)?;
            // A timeframe this build does not know (written by a newer version) is skipped.
            let Ok(timeframe) = tf.parse::<Timeframe>() else {
                tracing::warn!(%symbol, timeframe = %tf, "skipping series with unknown timeframe");
                continue;
            };
            out.push(SeriesInfo {
                symbol,
                timeframe,
                bars: u64::try_from(bars).unwrap_or(0),
                first_ts,
                last_ts,
                source,
                updated_ts,
                gaps: None,
            });
        }
        out.sort_by(|a, b| (&a.symbol, a.timeframe).cmp(&(&b.symbol, b.timeframe)));
        Ok(out)
    }

    fn series_id(&self, symbol: &str, timeframe: Timeframe) -> Result<Option<i64>, StoreError> {
        self.sql(
            self.conn
                .query_row(
                    "SELECT id FROM series WHERE symbol = ?1 AND timeframe = ?2",
                    params![symbol, timeframe.as_str()],
                    |r| r.get(0),
                )
                .optional(),
        )
    }

    /// The stored bars of one series, in time order.
    pub fn load_candles(
        &self,
        symbol: &str,
        timeframe: Timeframe,
    ) -> Result<Vec<Candle>, StoreError> {
        let Some(id) = self.series_id(symbol, timeframe)? else {
            return Err(self.not_found(symbol, timeframe));
        };
        self.sql(load_range(&self.conn, id, i64::MIN, i64::MAX))
    }

    /// The bars of `symbol` at `timeframe`: stored ones, or else built from the finest stored
    /// timeframe that divides it. Returns the bars and the timeframe they came from.
    pub fn load_or_resample(
        &self,
        symbol: &str,
        timeframe: Timeframe,
    ) -> Result<(Vec<Candle>, Timeframe), StoreError> {
        if self.series_id(symbol, timeframe)?.is_some() {
            return Ok((self.load_candles(symbol, timeframe)?, timeframe));
        }
        // Finest first: the most detailed stored series gives the most faithful bars.
        for finer in Timeframe::ALL
            .iter()
            .copied()
            .filter(|f| *f < timeframe && timeframe.is_multiple_of(*f))
        {
            if self.series_id(symbol, finer)?.is_some() {
                let base = self.load_candles(symbol, finer)?;
                return Ok((resample(&base, finer, timeframe)?, finer));
            }
        }
        Err(self.not_found(symbol, timeframe))
    }

    /// Deletes a series and its import log; returns whether it existed.
    pub fn delete_series(
        &mut self,
        symbol: &str,
        timeframe: Timeframe,
    ) -> Result<bool, StoreError> {
        let n = self.sql(self.conn.execute(
            "DELETE FROM series WHERE symbol = ?1 AND timeframe = ?2",
            params![symbol, timeframe.as_str()],
        ))?;
        Ok(n > 0)
    }

    fn not_found(&self, symbol: &str, timeframe: Timeframe) -> StoreError {
        let stored: Vec<String> = self
            .list_series()
            .unwrap_or_default()
            .into_iter()
            .map(|s| format!("{} {}", s.symbol, s.timeframe))
            .collect();
        let hint = if stored.is_empty() {
            "; the store is empty (import a CSV with `forexgpt import`)".to_string()
        } else {
            format!(" (stored: {})", stored.join(", "))
        };
        StoreError::SeriesNotFound {
            symbol: symbol.to_string(),
            timeframe,
            hint,
        }
    }
}

/// Rows per multi-row INSERT: one statement per row costs more than the row itself.
const INSERT_BATCH: usize = 128;

fn insert_statement(rows: usize) -> String {
    let mut sql =
        String::from("INSERT INTO candles (series_id, ts, open, high, low, close, volume) VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?,?,?)");
    }
    sql
}

/// Binds `chunk` to a statement made by [`insert_statement`] for `chunk.len()` rows and runs it.
fn insert_chunk(
    stmt: &mut rusqlite::Statement,
    series_id: i64,
    chunk: &[&Candle],
) -> rusqlite::Result<()> {
    for (i, c) in chunk.iter().enumerate() {
        let at = i * 7;
        stmt.raw_bind_parameter(at + 1, series_id)?;
        stmt.raw_bind_parameter(at + 2, c.ts)?;
        stmt.raw_bind_parameter(at + 3, c.open)?;
        stmt.raw_bind_parameter(at + 4, c.high)?;
        stmt.raw_bind_parameter(at + 5, c.low)?;
        stmt.raw_bind_parameter(at + 6, c.close)?;
        stmt.raw_bind_parameter(at + 7, c.volume)?;
    }
    stmt.raw_execute().map(|_| ())
}

fn insert_candles(conn: &Connection, series_id: i64, candles: &[&Candle]) -> rusqlite::Result<()> {
    let mut chunks = candles.chunks_exact(INSERT_BATCH);
    if chunks.len() > 0 {
        let mut batch = conn.prepare_cached(&insert_statement(INSERT_BATCH))?;
        for chunk in &mut chunks {
            insert_chunk(&mut batch, series_id, chunk)?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        insert_chunk(
            &mut conn.prepare(&insert_statement(rest.len()))?,
            series_id,
            rest,
        )?;
    }
    Ok(())
}

fn load_range(
    conn: &Connection,
    series_id: i64,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<Candle>> {
    let mut stmt = conn.prepare_cached(
        "SELECT ts, open, high, low, close, volume FROM candles
         WHERE series_id = ?1 AND ts BETWEEN ?2 AND ?3 ORDER BY ts",
    )?;
    let rows = stmt.query_map(params![series_id, from, to], |r| {
        Ok(Candle {
            ts: r.get(0)?,
            open: r.get(1)?,
            high: r.get(2)?,
            low: r.get(3)?,
            close: r.get(4)?,
            volume: r.get(5)?,
        })
    })?;
    rows.collect()
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

/// Merges `candles` into their series inside `tx`: new bars are inserted, equal ones counted,
/// and a bar that differs from the stored one is a conflict. The import is logged.
fn merge_candles(
    tx: &rusqlite::Transaction<'_>,
    path: &str,
    symbol: &str,
    timeframe: Timeframe,
    candles: &[Candle],
    source: &ImportSource,
) -> Result<MergeOutcome, StoreError> {
    let wrap = |cause| sqlite_error(path, cause);
    let now = chrono::Utc::now().timestamp();
    tx.execute(
        "INSERT INTO series (symbol, timeframe, source, updated_ts) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (symbol, timeframe) DO UPDATE SET source = excluded.source, updated_ts = excluded.updated_ts",
        params![symbol, timeframe.as_str(), source.file, now],
    )
    .map_err(wrap)?;
    let series_id: i64 = tx
        .query_row(
            "SELECT id FROM series WHERE symbol = ?1 AND timeframe = ?2",
            params![symbol, timeframe.as_str()],
            |r| r.get(0),
        )
        .map_err(wrap)?;
    if source.replace {
        tx.execute("DELETE FROM candles WHERE series_id = ?1", [series_id])
            .map_err(wrap)?;
    }
    let existing = match (candles.first(), candles.last(), source.replace) {
        (Some(first), Some(last), false) => {
            load_range(tx, series_id, first.ts, last.ts).map_err(wrap)?
        }
        _ => Vec::new(),
    };
    let mut outcome = MergeOutcome {
        inserted: 0,
        unchanged: 0,
    };
    let mut fresh: Vec<&Candle> = Vec::with_capacity(candles.len());
    let mut stored = existing.iter().peekable();
    for c in candles {
        while stored.next_if(|s| s.ts < c.ts).is_some() {}
        match stored.next_if(|s| s.ts == c.ts) {
            None => fresh.push(c),
            Some(s) if s == c => outcome.unchanged += 1,
            Some(s) => {
                return Err(StoreError::Conflict {
                    symbol: symbol.to_string(),
                    timeframe,
                    ts: c.ts,
                    stored: s.close,
                    new: c.close,
                });
            }
        }
    }
    insert_candles(tx, series_id, &fresh).map_err(wrap)?;
    outcome.inserted = fresh.len() as u64;
    tx.execute(
        "INSERT INTO imports (series_id, file, format, rows, inserted, imported_ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![series_id, source.file, source.format, candles.len() as i64, outcome.inserted as i64, now],
    )
    .map_err(wrap)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

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
                unchanged: 0
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
                unchanged: 5
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
