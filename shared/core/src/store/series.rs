//! Candle series: imports (merged into the stored bars or replacing them, all or nothing),
//! listing, loading (or resampling from a finer stored series) and deleting.

use forexgpt_protocol::{SeriesInfo, Timeframe};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, StoreError, sqlite_error, write_transaction};
use crate::candle::Candle;
use crate::resample::resample;
use crate::sample::SAMPLE_SOURCE_PREFIX;

/// How an import met the bars already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergeOutcome {
    pub inserted: u64,
    pub unchanged: u64,
    /// The series held only the shipped sample, which the import replaced.
    pub replaced_sample: bool,
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

impl Store {
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

/// Merges `candles` into their series inside `tx`: new bars are inserted, equal ones counted,
/// and a bar that differs from the stored one is a conflict. A series that holds only the
/// shipped sample is replaced by a file of the user's instead: the sample is not their data.
/// The import is logged.
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
    let replaces_sample = !source.file.starts_with(SAMPLE_SOURCE_PREFIX)
        && holds_only_the_sample(tx, symbol, timeframe).map_err(wrap)?;
    let replace = source.replace || replaces_sample;
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
    if replace {
        tx.execute("DELETE FROM candles WHERE series_id = ?1", [series_id])
            .map_err(wrap)?;
    }
    let existing = match (candles.first(), candles.last(), replace) {
        (Some(first), Some(last), false) => {
            load_range(tx, series_id, first.ts, last.ts).map_err(wrap)?
        }
        _ => Vec::new(),
    };
    let mut outcome = MergeOutcome {
        replaced_sample: replaces_sample,
        ..MergeOutcome::default()
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

/// Whether the series exists and every import into it was a shipped sample.
fn holds_only_the_sample(
    tx: &rusqlite::Transaction<'_>,
    symbol: &str,
    timeframe: Timeframe,
) -> rusqlite::Result<bool> {
    let (imports, samples): (i64, i64) = tx.query_row(
        "SELECT COUNT(i.id), COALESCE(SUM(substr(i.file, 1, length(?3)) = ?3), 0)
         FROM series s JOIN imports i ON i.series_id = s.id
         WHERE s.symbol = ?1 AND s.timeframe = ?2",
        params![symbol, timeframe.as_str(), SAMPLE_SOURCE_PREFIX],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(imports > 0 && imports == samples)
}
