//! Benchmark runs: machine, settings and results stored as JSON beside their id and time.

use forexgpt_protocol::BenchRun;
use rusqlite::params;

use super::{Store, StoreError};

impl Store {
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
}
