//! One benchmark run as every front end makes it: the cases of a suite on the CPU and every
//! usable GPU, timed in a scratch folder that is removed afterwards, then stored.

use std::path::Path;

use forexgpt_device::DeviceManager;
use forexgpt_device::testing::test_devices;
use forexgpt_protocol::{BenchRequest, BenchRun, BenchSettings, BenchSuite, DeviceRequest};

use crate::Workbench;
use crate::bench::encoders::encoder_cases;
use crate::bench::forecast::{
    BATCH_BARS, ENSEMBLE_KINDS, ENSEMBLE_SIZES, forecast_cases, kind_operations,
};
use crate::bench::forest::forest_cases;
use crate::bench::models::regressor_cases;
use crate::bench::{BenchOptions, BenchOutcome, data_suite, run_suite};
use crate::error::EngineError;
use crate::progress::{CancelToken, ProgressSink};

/// Times the cases of `settings.suite` on the CPU and on every GPU `devices` can use (the
/// data suite runs on the CPU only). With `export_data`, the regressor data and our CPU
/// results are also written there for the peer scripts in `bench/peers/`.
pub fn bench_results(
    settings: &BenchSettings,
    devices: &DeviceManager,
    export_data: Option<&Path>,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<BenchOutcome, EngineError> {
    let suite = BenchSuite::parse(&settings.suite).ok_or_else(|| {
        EngineError::InvalidRequest(format!(
            "unknown benchmark suite '{}'; expected data, regressors, forecast, encoders, forest or all",
            settings.suite
        ))
    })?;
    if settings.repeats == 0 {
        return Err(EngineError::InvalidRequest(
            "a benchmark needs at least one timed repeat".into(),
        ));
    }
    let scratch = tempfile::Builder::new()
        .prefix("forexgpt-bench-")
        .tempdir()
        .map_err(|cause| EngineError::Io {
            context: "creating the benchmark scratch folder".into(),
            cause,
        })?;
    let mut cases = Vec::new();
    if suite.includes(BenchSuite::Data) {
        cases.extend(data_suite(
            settings.bars,
            settings.csv_rows,
            scratch.path(),
        )?);
    }
    let devices = if suite == BenchSuite::Data {
        Vec::new()
    } else {
        let (devices, skipped) = test_devices(devices);
        for reason in skipped {
            tracing::info!("benchmark skips {reason}");
        }
        devices
    };
    if suite.includes(BenchSuite::Regressors) {
        cases.extend(regressor_cases(
            settings.rows,
            settings.features,
            settings.targets,
            &devices,
            export_data,
        )?);
    }
    // The ensemble kinds asked for (each trains its models before the clock starts).
    let kinds: Vec<&str> = ENSEMBLE_KINDS
        .iter()
        .copied()
        .filter(|k| {
            settings.operations.is_empty()
                || settings
                    .operations
                    .iter()
                    .any(|o| kind_operations(k).contains(&o.as_str()))
        })
        .collect();
    if suite.includes(BenchSuite::Forecast) {
        // The seed's ensemble sizes up to the run's largest (0: a run stored before that
        // setting, which went to the last).
        let largest = match settings.ensemble_models {
            0 => ENSEMBLE_SIZES[ENSEMBLE_SIZES.len() - 1],
            n => n,
        };
        let sizes: Vec<usize> = ENSEMBLE_SIZES
            .iter()
            .copied()
            .filter(|&n| n < largest)
            .chain([largest])
            .collect();
        cases.extend(forecast_cases(
            &devices,
            &scratch.path().join("models"),
            &kinds,
            &sizes,
            BATCH_BARS,
        )?);
    }
    if suite.includes(BenchSuite::Encoders) {
        cases.extend(encoder_cases(
            settings.encoder_rows,
            settings.encoder_features,
            settings.epochs,
            &devices,
            export_data,
        )?);
    }
    if suite.includes(BenchSuite::Forest) {
        cases.extend(forest_cases(
            settings.forest_rows,
            settings.forest_features,
            settings.targets,
            settings.trees,
            settings.predict_rows,
            &devices,
            export_data,
        )?);
    }
    if !settings.operations.is_empty() {
        if let Some(unknown) = settings
            .operations
            .iter()
            .find(|name| !cases.iter().any(|c| &c.operation == *name))
        {
            let mut known: Vec<&str> = Vec::new();
            if suite.includes(BenchSuite::Forecast) {
                known.extend(ENSEMBLE_KINDS.iter().flat_map(|k| kind_operations(k)));
            }
            for case in &cases {
                if !known.contains(&case.operation.as_str()) {
                    known.push(&case.operation);
                }
            }
            return Err(EngineError::InvalidRequest(format!(
                "the {} suite has no operation '{unknown}'; it has {}",
                settings.suite,
                known.join(", ")
            )));
        }
        cases.retain(|c| settings.operations.contains(&c.operation));
    }
    let options = BenchOptions {
        repeats: settings.repeats,
    };
    run_suite(&mut cases, options, progress, cancel)
}

impl Workbench {
    /// The devices a suite needs: the data suite runs on the CPU only, so it probes no GPU.
    pub fn bench_devices(&self, suite: BenchSuite) -> &DeviceManager {
        self.devices.for_request(if suite == BenchSuite::Data {
            DeviceRequest::CPU
        } else {
            DeviceRequest::default()
        })
    }

    /// Runs `request` on this machine's devices and stores it as a new run.
    pub fn run_benchmark(
        &self,
        request: &BenchRequest,
        git_rev: Option<&str>,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<BenchRun, EngineError> {
        let settings = request.settings();
        let devices = self.bench_devices(request.suite);
        let outcome = bench_results(&settings, devices, None, progress, cancel)?;
        self.record_bench_run(settings, outcome.results, outcome.failures, git_rev)
    }
}

#[cfg(test)]
mod tests {
    use forexgpt_core::store::Store;
    use forexgpt_protocol::BenchSize;

    use super::*;
    use crate::progress::NoProgress;

    fn tiny_data_run() -> BenchRequest {
        BenchRequest {
            suite: BenchSuite::Data,
            size: BenchSize::Small,
            bars: Some(2_000),
            csv_rows: Some(2_000),
            repeats: Some(1),
            ..BenchRequest::default()
        }
    }

    #[test]
    fn a_run_is_timed_stored_and_listed() {
        let wb = Workbench::with_store(Store::open_in_memory().unwrap()).unwrap();
        let run = wb
            .run_benchmark(
                &tiny_data_run(),
                Some("abc123"),
                &NoProgress,
                &CancelToken::new(),
            )
            .unwrap();
        assert_eq!(run.settings.suite, "data");
        assert_eq!((run.settings.bars, run.settings.repeats), (2_000, 1));
        assert_eq!(run.results.len(), 4, "{:?}", run.results);
        assert!(run.results.iter().all(|r| r.device == "cpu"));
        assert_eq!(run.git_rev.as_deref(), Some("abc123"));
        assert_eq!(wb.bench_runs().unwrap(), vec![run]);
    }

    #[test]
    fn a_run_can_time_only_some_operations_and_names_unknown_ones() {
        let wb = Workbench::with_store(Store::open_in_memory().unwrap()).unwrap();
        let all = wb
            .run_benchmark(&tiny_data_run(), None, &NoProgress, &CancelToken::new())
            .unwrap();
        let wanted = all.results[1].operation.clone();
        let request = BenchRequest {
            operations: vec![wanted.clone()],
            ..tiny_data_run()
        };
        let run = wb
            .run_benchmark(&request, None, &NoProgress, &CancelToken::new())
            .unwrap();
        assert_eq!(
            run.results.iter().map(|r| &r.operation).collect::<Vec<_>>(),
            vec![&wanted]
        );
        assert_eq!(run.settings.operations, vec![wanted]);

        let request = BenchRequest {
            operations: vec!["no_such_thing".into()],
            ..tiny_data_run()
        };
        let err = wb
            .run_benchmark(&request, None, &NoProgress, &CancelToken::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no operation 'no_such_thing'"), "{err}");
        assert!(err.contains(&all.results[0].operation), "{err}");
    }

    /// A GPU that fails every job (as one out of memory does): its rows are reported as
    /// failures by device and case, the CPU rows stand, and the stored run keeps both.
    #[test]
    fn gpu_rows_that_fail_are_named_and_the_cpu_rows_stand() {
        let wb = Workbench::with_store(Store::open_in_memory().unwrap()).unwrap();
        let manager = forexgpt_device::testing::described_machine(true).with_failing_gpus();
        let settings = BenchRequest {
            suite: BenchSuite::Regressors,
            size: BenchSize::Small,
            rows: Some(400),
            features: Some(6),
            targets: Some(2),
            repeats: Some(1),
            ..BenchRequest::default()
        }
        .settings();
        let outcome =
            bench_results(&settings, &manager, None, &NoProgress, &CancelToken::new()).unwrap();
        assert!(!outcome.results.is_empty());
        assert!(
            outcome.results.iter().all(|r| r.device == "cpu"),
            "{:?}",
            outcome.results
        );
        assert_eq!(
            outcome.failures.len(),
            outcome.results.len(),
            "one GPU row per CPU row"
        );
        for f in &outcome.failures {
            assert!(
                f.contains("on wgpu:0 (Test GPU, Vulkan)") && f.contains("simulated GPU fault"),
                "{f}"
            );
        }
        let run = wb
            .record_bench_run(settings, outcome.results, outcome.failures, None)
            .unwrap();
        let stored = wb.bench_run(run.id).unwrap();
        assert_eq!(stored.machine.failures, run.machine.failures);
        let table = crate::bench::history::markdown(&stored);
        assert!(table.contains("Failed on their GPU"), "{table}");
    }

    #[test]
    fn a_cancelled_run_stores_nothing_and_bad_settings_are_refused() {
        let wb = Workbench::with_store(Store::open_in_memory().unwrap()).unwrap();
        let cancel = CancelToken::new();
        cancel.cancel();
        let err = wb
            .run_benchmark(&tiny_data_run(), None, &NoProgress, &cancel)
            .unwrap_err();
        assert!(matches!(err, EngineError::Cancelled), "{err}");
        assert!(wb.bench_runs().unwrap().is_empty());
        let mut settings = tiny_data_run().settings();
        settings.suite = "everything".into();
        let devices = wb
            .devices
            .for_request(forexgpt_protocol::DeviceRequest::CPU);
        let err =
            bench_results(&settings, devices, None, &NoProgress, &CancelToken::new()).unwrap_err();
        assert!(err.to_string().contains("everything"), "{err}");
    }
}
