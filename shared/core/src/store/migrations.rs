//! The schema and its upgrades: `PRAGMA user_version` holds the version, and each entry of
//! [`MIGRATIONS`] brings a file one version up, all inside one write transaction.

use super::{Store, StoreError};

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

impl Store {
    /// The schema version this file is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.sql(self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)))
    }

    pub(super) fn migrate(&mut self) -> Result<(), StoreError> {
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
}
