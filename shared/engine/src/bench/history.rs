//! Stored benchmark runs: each run goes into the database with the machine, build and
//! settings, so runs can be listed, shown, exported and compared side by side.

use forexgpt_device::probe::probe_cpu;
use forexgpt_protocol::{
    BenchComparison, BenchMachine, BenchResult, BenchRun, BenchSettings, auto_prefers_cpu,
};

use crate::Workbench;
use crate::error::EngineError;

impl Workbench {
    /// Stores the results of a run made now on this machine and returns the stored run.
    pub fn record_bench_run(
        &self,
        settings: BenchSettings,
        results: Vec<BenchResult>,
        failures: Vec<String>,
        git_rev: Option<&str>,
    ) -> Result<BenchRun, EngineError> {
        let cpu = probe_cpu();
        let mut devices: Vec<String> = Vec::new();
        for r in &results {
            if !devices.contains(&r.device) {
                devices.push(r.device.clone());
            }
        }
        let mut run = BenchRun {
            id: 0,
            created_ts: crate::data::unix_now(),
            app_version: env!("CARGO_PKG_VERSION").to_string(),
            git_rev: git_rev.map(str::to_string),
            machine: BenchMachine {
                os: format!("{} {}", std::env::consts::OS, cpu.arch),
                cpu: cpu.model,
                cpu_threads: cpu.logical_threads,
                devices,
                failures,
            },
            settings,
            results,
        };
        run.id = self.store.insert_bench_run(&run)?;
        Ok(run)
    }

    /// Stored runs, newest first.
    pub fn bench_runs(&self) -> Result<Vec<BenchRun>, EngineError> {
        Ok(self.store.bench_runs(None)?)
    }

    pub fn bench_run(&self, id: i64) -> Result<BenchRun, EngineError> {
        self.store
            .bench_runs(Some(id))?
            .pop()
            .ok_or_else(|| EngineError::InvalidRequest(format!("no benchmark run #{id} is stored")))
    }

    /// Adds peer results (scikit-learn, PyTorch: `bench/peers/*.py` output) to a stored run.
    pub fn add_bench_peers(
        &self,
        id: i64,
        peers: Vec<BenchResult>,
    ) -> Result<BenchRun, EngineError> {
        let mut run = self.bench_run(id)?;
        run.results.extend(peers);
        self.store.update_bench_results(id, &run.results)?;
        for d in run.results.iter().map(|r| &r.device) {
            if !run.machine.devices.contains(d) {
                run.machine.devices.push(d.clone());
            }
        }
        Ok(run)
    }

    pub fn delete_bench_run(&self, id: i64) -> Result<bool, EngineError> {
        Ok(self.store.delete_bench_run(id)?)
    }

    /// The operations (same name, size and device) that both runs measured.
    pub fn compare_bench_runs(&self, a: i64, b: i64) -> Result<Vec<BenchComparison>, EngineError> {
        let (ra, rb) = (self.bench_run(a)?, self.bench_run(b)?);
        Ok(compare(&ra.results, &rb.results))
    }
}

pub fn compare(a: &[BenchResult], b: &[BenchResult]) -> Vec<BenchComparison> {
    a.iter()
        .filter_map(|x| {
            let y = b.iter().find(|y| {
                (&y.operation, &y.size, &y.device) == (&x.operation, &x.size, &x.device)
            })?;
            Some(BenchComparison {
                operation: x.operation.clone(),
                size: x.size.clone(),
                device: x.device.clone(),
                a_median_ms: x.median_ms,
                b_median_ms: y.median_ms,
                speedup_b_over_a: x.median_ms / y.median_ms.max(f64::MIN_POSITIVE),
            })
        })
        .collect()
}

/// Reads a peer script's results file (a JSON list of benchmark results).
pub fn read_peers(path: &std::path::Path) -> Result<Vec<BenchResult>, EngineError> {
    let text = std::fs::read_to_string(path).map_err(|cause| EngineError::Io {
        context: format!("cannot read {}", path.display()),
        cause,
    })?;
    serde_json::from_str(&text).map_err(|e| {
        EngineError::InvalidRequest(format!(
            "{}: not a list of benchmark results ({e})",
            path.display()
        ))
    })
}

/// A markdown table of a run with, for every GPU row, its speedup over the CPU row of the same
/// operation and size, and "auto: cpu" where that job is one `auto` weighs and the GPU was
/// slower (so on the machine that measured it, `auto` runs it on the CPU).
pub fn markdown(run: &BenchRun) -> String {
    let mut out = format!(
        "Run #{} — {} — ForexGPT {}{} — {} ({} threads)\n\n",
        run.id,
        forexgpt_core::timestamp::format_ts(run.created_ts),
        run.app_version,
        run.git_rev
            .as_deref()
            .map_or(String::new(), |r| format!(" ({r})")),
        run.machine.cpu,
        run.machine.cpu_threads
    );
    out.push_str("| operation | size | device | cold ms | median ms | min ms | max ms | speed vs our CPU | result vs our CPU |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|\n");
    for r in &run.results {
        let cpu = run.results.iter().find(|c| {
            c.operation == r.operation && c.size == r.size && c.device.starts_with("cpu")
        });
        let speedup = match cpu {
            Some(c) if !r.device.starts_with("cpu") => format!(
                "{:.2}×{}",
                c.median_ms / r.median_ms.max(f64::MIN_POSITIVE),
                if auto_prefers_cpu(r, c.median_ms) {
                    " (auto: cpu)"
                } else {
                    ""
                }
            ),
            _ => String::new(),
        };
        let diff = r
            .max_rel_diff_vs_cpu
            .map_or(String::new(), |d| format!("{d:.1e}"));
        out.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {speedup} | {diff} |\n",
            r.operation, r.size, r.device, r.first_run_ms, r.median_ms, r.min_ms, r.max_ms
        ));
    }
    if !run.machine.failures.is_empty() {
        out.push_str("\nFailed on their GPU (not in the table):\n\n");
        for f in &run.machine.failures {
            out.push_str(&format!("- {f}\n"));
        }
    }
    out
}

/// CSV with a header row, one line per result.
pub fn csv(run: &BenchRun) -> String {
    let mut out = String::from(
        "run,operation,size,device,first_run_ms,median_ms,min_ms,max_ms,repeats,throughput_per_s,max_rel_diff_vs_cpu\n",
    );
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    for r in &run.results {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            run.id,
            quote(&r.operation),
            quote(&r.size),
            quote(&r.device),
            r.first_run_ms,
            r.median_ms,
            r.min_ms,
            r.max_ms,
            r.repeats,
            r.throughput_per_s,
            r.max_rel_diff_vs_cpu
                .map_or(String::new(), |d| d.to_string())
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use forexgpt_core::store::Store;

    fn result(device: &str, median_ms: f64) -> BenchResult {
        BenchResult {
            operation: "ridge".into(),
            size: "10×2→1".into(),
            device: device.into(),
            first_run_ms: median_ms * 2.0,
            median_ms,
            min_ms: median_ms,
            max_ms: median_ms,
            repeats: 3,
            throughput_per_s: 1.0,
            max_rel_diff_vs_cpu: (device != "cpu").then_some(1e-6),
        }
    }

    fn settings() -> BenchSettings {
        BenchSettings {
            suite: "regressors".into(),
            repeats: 3,
            rows: 10,
            features: 2,
            targets: 1,
            ..BenchSettings::default()
        }
    }

    #[test]
    fn runs_are_stored_compared_and_exported() {
        let wb = Workbench::with_store(Store::open_in_memory().unwrap()).unwrap();
        let a = wb
            .record_bench_run(
                settings(),
                vec![result("cpu", 10.0), result("wgpu:0 (x)", 4.0)],
                Vec::new(),
                None,
            )
            .unwrap();
        let b = wb
            .record_bench_run(
                settings(),
                vec![result("cpu", 5.0)],
                Vec::new(),
                Some("abc"),
            )
            .unwrap();
        assert_eq!(wb.bench_runs().unwrap().len(), 2);
        assert_eq!(wb.bench_run(b.id).unwrap().git_rev.as_deref(), Some("abc"));
        let cmp = wb.compare_bench_runs(a.id, b.id).unwrap();
        assert_eq!(cmp.len(), 1, "only operations both runs measured");
        assert_eq!(cmp[0].speedup_b_over_a, 2.0);
        let md = markdown(&a);
        assert!(
            md.contains("| ridge | 10×2→1 | wgpu:0 (x) |") && md.contains("2.50× |"),
            "{md}"
        );
        // A GPU slower than the CPU at a job `auto` weighs: the table says auto runs it on the CPU.
        let slow = wb
            .record_bench_run(
                settings(),
                vec![result("cpu", 5.0), result("wgpu:0 (x)", 20.0)],
                Vec::new(),
                None,
            )
            .unwrap();
        assert!(
            markdown(&slow).contains("| 0.25× (auto: cpu) |"),
            "{}",
            markdown(&slow)
        );
        // A peer slower than our CPU is not something auto places.
        let peer = wb
            .record_bench_run(
                settings(),
                vec![
                    result("cpu", 5.0),
                    result("scikit-learn 1.5.2 (2 threads)", 20.0),
                ],
                Vec::new(),
                None,
            )
            .unwrap();
        assert!(!markdown(&peer).contains("auto"), "{}", markdown(&peer));
        assert!(wb.delete_bench_run(peer.id).unwrap());
        assert!(wb.delete_bench_run(slow.id).unwrap());
        // Stored runs of this machine fit `auto`'s estimates (the CPU rows: same CPU).
        wb.calibrate_costs();
        assert!(wb.devices.cost_model().is_calibrated());
        assert_eq!(csv(&a).lines().count(), 3);
        assert!(wb.bench_run(999).is_err());
        let dir = tempfile::tempdir().unwrap();
        let peers = dir.path().join("sklearn_results.json");
        let mut peer = result("scikit-learn 1.5.2 (2 threads)", 20.0);
        peer.max_rel_diff_vs_cpu = Some(1e-15);
        std::fs::write(&peers, serde_json::to_string(&vec![peer]).unwrap()).unwrap();
        let with_peers = wb
            .add_bench_peers(a.id, read_peers(&peers).unwrap())
            .unwrap();
        assert_eq!(wb.bench_run(a.id).unwrap().results.len(), 3);
        assert!(
            markdown(&with_peers).contains("| scikit-learn 1.5.2 (2 threads) | 40.00 | 20.00 |")
        );
        std::fs::write(&peers, "{}").unwrap();
        let err = read_peers(&peers).unwrap_err().to_string();
        assert!(err.contains("not a list of benchmark results"), "{err}");
        assert!(wb.delete_bench_run(a.id).unwrap());
    }
}
