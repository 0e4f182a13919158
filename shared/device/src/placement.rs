//! The one placement path. Every fit, encode, forecast and backtest hands its
//! [`DeviceRequest`] (unchanged from the checkbox or `--device`), what the job can run on, and
//! the work to [`DeviceManager::place`], which resolves the request, runs the work, moves it to
//! the CPU where the request allows (saying why), and returns where it ran.
//!
//! The rules, the same for every job:
//! - an explicit device (`cuda`, `wgpu`, `cpu`) that is missing or cannot serve the job is an
//!   error naming the reason;
//! - "if available" and `auto` run on the CPU instead, with the reason, when the GPU is
//!   missing, cannot serve the job, or fails mid-way (the work then reruns on the CPU);
//! - for a job that says its size ([`JobSupport::sized`]), `auto` (and "if available") run it
//!   where the cost model ([`crate::cost`]) expects it to take least time, the CPU included,
//!   and the device's `choice` says what was expected where.

use std::sync::{Arc, OnceLock, RwLock};

use forexgpt_protocol::{BackendKind, CudaStatus, DevicePreference, DeviceRequest, WgpuStatus};

use crate::compute_device::ComputeDevice;
use crate::cost::{CostModel, Estimate, EstimateSource, Workload, format_ms};
use crate::error::DeviceError;
use crate::manager::DeviceManager;

/// What a job has GPU implementations for; every job runs on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSupport {
    /// The job as the user would name it, e.g. "growing a random forest".
    pub job: &'static str,
    pub cuda: bool,
    pub wgpu: bool,
    /// The job's size, when known: `auto` then weighs the devices by the cost model.
    pub workload: Option<Workload>,
}

impl JobSupport {
    /// A job with a path on every backend.
    pub const fn everywhere(job: &'static str) -> JobSupport {
        JobSupport {
            job,
            cuda: true,
            wgpu: true,
            workload: None,
        }
    }

    /// A job whose GPU path exists for CUDA only.
    pub const fn cuda_only(job: &'static str) -> JobSupport {
        JobSupport {
            job,
            cuda: true,
            wgpu: false,
            workload: None,
        }
    }

    /// A job that runs on the CPU only (a GPU named for it is refused with
    /// [`refusal`](Self::refusal); "if available" and `auto` run it on the CPU and say why).
    pub const fn cpu_only(job: &'static str) -> JobSupport {
        JobSupport {
            job,
            cuda: false,
            wgpu: false,
            workload: None,
        }
    }

    /// The same job, of this size.
    pub const fn sized(self, workload: Workload) -> JobSupport {
        JobSupport {
            workload: Some(workload),
            ..self
        }
    }

    pub fn serves(&self, backend: BackendKind) -> bool {
        match backend {
            BackendKind::Cpu => true,
            BackendKind::Cuda => self.cuda,
            BackendKind::Wgpu => self.wgpu,
        }
    }

    /// Why `device` cannot serve this job: the error for a request that names it.
    pub fn refusal(&self, device: &ComputeDevice) -> DeviceError {
        DeviceError::Unsupported {
            job: self.job.to_string(),
            device: device.label().to_string(),
            why: format!("it runs on {}", self.where_it_runs()),
        }
    }

    fn where_it_runs(&self) -> &'static str {
        match (self.cuda, self.wgpu) {
            (true, true) => "CUDA, wgpu or the CPU",
            (true, false) => "CUDA or the CPU",
            (false, true) => "wgpu or the CPU",
            (false, false) => "the CPU only",
        }
    }
}

/// Work placed by a request: its result, where it ran, and why that is not the device the
/// request named (a GPU missing or unable to serve the job, or one that failed mid-way).
#[derive(Debug, Clone)]
pub struct Placed<T> {
    pub value: T,
    pub device: ComputeDevice,
    pub fell_back: Option<String>,
}

impl<T> Placed<T> {
    /// The same placement around another form of the value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Placed<U> {
        Placed {
            value: f(self.value),
            device: self.device,
            fell_back: self.fell_back,
        }
    }
}

impl DeviceManager {
    /// Where `request` sends `job` before anything runs: the device, and why it is the CPU
    /// when a GPU was wanted. An explicit device that is missing or cannot serve the job is an
    /// error.
    pub fn placement(
        &self,
        request: DeviceRequest,
        job: JobSupport,
    ) -> Result<(ComputeDevice, Option<String>), DeviceError> {
        let device = match request.preference {
            DevicePreference::Auto => {
                if let Some(workload) = job.workload
                    && let Some(chosen) = self.cheapest(request, job, workload)
                {
                    return Ok(chosen);
                }
                self.resolve_auto(request.gpu_if_available)
            }
            preference => match self.resolve(preference) {
                Ok(device) => device,
                Err(e) if request.may_fall_back() => {
                    return Ok(self.fallback(format!("running on the CPU: {e}")));
                }
                Err(e) => return Err(e),
            },
        };
        if device.is_gpu() && !job.serves(device.backend()) {
            let unsupported = job.refusal(&device);
            if !request.may_fall_back() {
                return Err(unsupported);
            }
            return Ok(self.fallback(format!("running on the CPU: {unsupported}")));
        }
        let why = device
            .resolved
            .fell_back
            .then(|| device.resolved.notice.clone())
            .flatten();
        Ok((device, why))
    }

    /// Runs `work` where `request` places `job` ([`placement`](Self::placement)). Under
    /// "if available" or `auto`, a GPU whose backend fails (`device_error` finds a
    /// [`DeviceError`] in the error) hands the work to the CPU and records why; any other
    /// error, and any error of an explicit device, is returned as it is.
    pub fn place<T, E>(
        &self,
        request: DeviceRequest,
        job: JobSupport,
        mut work: impl FnMut(&ComputeDevice) -> Result<T, E>,
        device_error: impl Fn(&E) -> Option<&DeviceError>,
    ) -> Result<Placed<T>, E>
    where
        E: From<DeviceError>,
    {
        let (device, fell_back) = self.placement(request, job)?;
        match work(&device) {
            Ok(value) => Ok(Placed {
                value,
                device,
                fell_back,
            }),
            Err(e) if request.may_fall_back() && device.is_gpu() => {
                let Some(failure) = device_error(&e) else {
                    return Err(e);
                };
                let reason = format!("{} failed ({failure}); ran on the CPU", device.label());
                tracing::warn!("{reason}");
                let (cpu, _) = self.fallback(reason.clone());
                Ok(Placed {
                    value: work(&cpu)?,
                    device: cpu,
                    fell_back: Some(reason),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// `auto`'s choice for a job of a known size: the device the cost model expects to take
    /// least time, among the CPU and the GPUs `auto` may pick that can serve the job, with
    /// the estimates in its `choice`. A GPU is picked only when it is expected to be faster.
    /// `None` (today's order of preference then decides) when no such GPU has an estimate.
    fn cheapest(
        &self,
        request: DeviceRequest,
        job: JobSupport,
        workload: Workload,
    ) -> Option<(ComputeDevice, Option<String>)> {
        let costs = self.costs().read().unwrap_or_else(|e| e.into_inner());
        let threads = self.info().cpu.logical_threads;
        let cpu = self.cpu();
        let on_cpu = costs.estimate(workload, &cpu, threads)?;
        let (mut gpu, on_gpu) = self
            .auto_gpus()
            .into_iter()
            .filter(|d| job.serves(d.backend()))
            .filter_map(|d| costs.estimate(workload, &d, threads).map(|e| (d, e)))
            .min_by(|a, b| a.1.ms.total_cmp(&b.1.ms))?;
        let what = format!("{} ({})", workload.op.name(), workload.describe());
        let sources = sources_in_words(&on_gpu, &on_cpu);
        if on_gpu.ms < on_cpu.ms {
            gpu.resolved.choice = Some(format!(
                "auto chose {} for the {what}: about {} there against {} on the CPU ({sources})",
                gpu.label(),
                format_ms(on_gpu.ms),
                format_ms(on_cpu.ms),
            ));
            return Some((gpu, None));
        }
        let why = format!(
            "auto chose the CPU for the {what}: about {} there against {} on {} ({sources})",
            format_ms(on_cpu.ms),
            format_ms(on_gpu.ms),
            gpu.label(),
        );
        // Under "if available" the user asked for a GPU: the CPU stands in, and says why.
        let (mut cpu, fell_back) = if request.gpu_if_available {
            self.fallback(why.clone())
        } else {
            (cpu, None)
        };
        cpu.resolved.choice = Some(why);
        Some((cpu, fell_back))
    }

    /// The CPU, marked as standing in for a wanted GPU, and why.
    fn fallback(&self, why: String) -> (ComputeDevice, Option<String>) {
        let mut cpu = self.cpu();
        cpu.resolved.fell_back = true;
        cpu.resolved.notice = Some(why.clone());
        (cpu, Some(why))
    }
}

/// Where two estimates came from, in words.
fn sources_in_words(a: &Estimate, b: &Estimate) -> String {
    let run = |e: &Estimate| match e.source {
        EstimateSource::Benchmark { run } => Some(run),
        EstimateSource::BuiltIn => None,
    };
    match (run(a), run(b)) {
        (None, None) => "built-in estimates; `forexgpt bench` fits them to this machine".into(),
        (Some(x), Some(y)) if x == y => {
            format!("estimates from benchmark run #{x} on this machine")
        }
        (Some(x), Some(y)) => {
            format!("estimates from benchmark runs #{x} and #{y} on this machine")
        }
        (Some(x), None) | (None, Some(x)) => {
            format!("estimates from benchmark run #{x} on this machine and built-in ones")
        }
    }
}

/// The machine's devices, probed once when first needed: a request for the CPU alone never
/// probes a GPU. Clones share the probe, so the app starts it in the background at start-up
/// and every job reuses it.
#[derive(Debug, Clone, Default)]
pub struct Devices {
    probed: Arc<OnceLock<DeviceManager>>,
    cpu_only: Arc<OnceLock<DeviceManager>>,
    /// The cost model every manager made here weighs devices with.
    costs: Arc<RwLock<CostModel>>,
}

impl Devices {
    /// Devices not probed yet.
    pub fn new() -> Devices {
        Devices::default()
    }

    /// Devices described by an already built manager (tests; machines described by hand).
    pub fn from_manager(manager: DeviceManager) -> Devices {
        Devices {
            costs: Arc::clone(manager.costs()),
            probed: Arc::new(OnceLock::from(manager)),
            cpu_only: Arc::default(),
        }
    }

    /// Starts probing on a background thread (probing CUDA and wgpu takes seconds).
    pub fn probe_in_background(&self) {
        let probed = Arc::clone(&self.probed);
        let costs = Arc::clone(&self.costs);
        std::thread::spawn(move || {
            probed.get_or_init(|| DeviceManager::probe().sharing_costs(costs));
        });
    }

    /// Every device of the machine; probes (or waits for the probe) on first use.
    pub fn probed(&self) -> &DeviceManager {
        self.probed
            .get_or_init(|| DeviceManager::probe().sharing_costs(Arc::clone(&self.costs)))
    }

    /// Replaces the cost model `auto` weighs devices with, for every job from now on
    /// (the engine calibrates it from the database's benchmark runs).
    pub fn set_cost_model(&self, model: CostModel) {
        *self.costs.write().unwrap_or_else(|e| e.into_inner()) = model;
    }

    /// The cost model `auto` weighs devices with.
    pub fn cost_model(&self) -> CostModel {
        self.costs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The devices `request` is resolved against: the probed ones, or, for a CPU request when
    /// nothing was probed yet, a description of the CPU alone.
    pub fn for_request(&self, request: DeviceRequest) -> &DeviceManager {
        match (request.preference, self.probed.get()) {
            (_, Some(probed)) => probed,
            (DevicePreference::Cpu, None) => self.cpu_only.get_or_init(|| {
                let not_probed = Some("not probed: the CPU was requested".to_string());
                DeviceManager::from_parts(
                    CudaStatus {
                        reason: not_probed.clone(),
                        ..CudaStatus::default()
                    },
                    WgpuStatus {
                        reason: not_probed,
                        ..WgpuStatus::default()
                    },
                    None,
                )
            }),
            _ => self.probed(),
        }
    }

    /// [`DeviceManager::place`] on the devices of `request`.
    pub fn place<T, E>(
        &self,
        request: DeviceRequest,
        job: JobSupport,
        work: impl FnMut(&ComputeDevice) -> Result<T, E>,
        device_error: impl Fn(&E) -> Option<&DeviceError>,
    ) -> Result<Placed<T>, E>
    where
        E: From<DeviceError>,
    {
        self.for_request(request)
            .place(request, job, work, device_error)
    }
}

#[cfg(test)]
mod tests {
    use forexgpt_protocol::BackendKind;

    use super::*;
    use crate::testing::described_machine;

    const ANY: JobSupport = JobSupport::everywhere("the test job");
    const CUDA: JobSupport = JobSupport::cuda_only("the CUDA job");

    /// Places an empty job (a failing GPU fails it as any kernel launch there would),
    /// counting the runs.
    fn place(
        machine: &DeviceManager,
        request: DeviceRequest,
        job: JobSupport,
    ) -> Result<Placed<()>, DeviceError> {
        let mut runs = 0;
        let placed = machine.place(
            request,
            job,
            |device| {
                runs += 1;
                probe(device)
            },
            |e| Some(e),
        );
        assert!(runs <= 2, "a job runs at most twice (GPU, then the CPU)");
        placed
    }

    /// A job that does nothing where it runs; on a failing GPU it fails as `run_cube_job`
    /// and `run_job` do there.
    fn probe(device: &ComputeDevice) -> Result<(), DeviceError> {
        match device.target {
            crate::compute_device::Target::Failing => {
                Err(crate::backend::simulated_fault(device.label()))
            }
            _ => Ok(()),
        }
    }

    #[test]
    fn explicit_devices_that_cannot_serve_a_job_are_errors() {
        let none = described_machine(false);
        let cuda = DeviceRequest::exactly(DevicePreference::Cuda(None));
        assert_eq!(
            place(&none, cuda, ANY).unwrap_err(),
            DeviceError::CudaUnavailable("no NVIDIA driver".into())
        );
        let gpu = described_machine(true);
        let wgpu = DeviceRequest::exactly(DevicePreference::Wgpu(Some(0)));
        let err = place(&gpu, wgpu, CUDA).unwrap_err().to_string();
        assert_eq!(
            err,
            "the CUDA job cannot run on wgpu:0 (Test GPU, Vulkan): it runs on CUDA or the CPU"
        );
    }

    /// A run on `machine` that measured a ridge fit of 1M × 128 → 8 at `ms` on its wgpu
    /// adapter (and nothing on its CPU).
    fn wgpu_measured(machine: &DeviceManager, ms: f64) -> CostModel {
        use forexgpt_protocol::{BenchMachine, BenchResult, BenchRun, BenchSettings};
        let wgpu = machine.resolve(DevicePreference::Wgpu(Some(0))).unwrap();
        let run = BenchRun {
            id: 7,
            created_ts: 0,
            app_version: "test".into(),
            git_rev: None,
            machine: BenchMachine {
                os: "linux".into(),
                cpu: "elsewhere".into(),
                cpu_threads: 1,
                devices: vec![wgpu.label().to_string()],
                failures: Vec::new(),
            },
            settings: BenchSettings {
                suite: "regressors".into(),
                repeats: 1,
                rows: 1_000_000,
                features: 128,
                targets: 8,
                ..BenchSettings::default()
            },
            results: vec![BenchResult {
                operation: "ridge".into(),
                size: "1000000×128→8".into(),
                device: wgpu.label().to_string(),
                first_run_ms: ms,
                median_ms: ms,
                min_ms: ms,
                max_ms: ms,
                repeats: 1,
                throughput_per_s: 0.0,
                max_rel_diff_vs_cpu: None,
            }],
        };
        CostModel::calibrated(&[run], &machine.info().cpu)
    }

    #[test]
    fn auto_runs_a_sized_job_where_it_is_expected_to_take_least_time() {
        let gpu = described_machine(true);
        let linear = JobSupport::everywhere("fitting a linear model");
        // The sample's fit: a few thousand rows. Built in, a wgpu fit costs 5 ms before it
        // starts, the CPU's line ~1 ms plus a little: the CPU, with both estimates.
        let small = linear.sized(Workload::linear_fit(4_000, 88, 4));
        let (device, why) = gpu.placement(DeviceRequest::default(), small).unwrap();
        assert_eq!(device.backend(), BackendKind::Cpu);
        assert!(
            why.is_none(),
            "plain auto names no device, so nothing fell back"
        );
        let notice = device.resolved.choice.unwrap();
        assert!(
            notice.starts_with("auto chose the CPU for the linear fit (4,000 × 88 → 4): about ")
                && notice.contains("on wgpu:0 (Test GPU, Vulkan) (built-in estimates"),
            "{notice}"
        );
        // "Use GPU (if available)": the same choice, told as the reason the CPU ran.
        let (device, why) = gpu
            .placement(DeviceRequest::GPU_IF_AVAILABLE, small)
            .unwrap();
        assert_eq!(device.backend(), BackendKind::Cpu);
        assert!(device.resolved.fell_back);
        assert_eq!(why, device.resolved.choice);
        assert!(why.unwrap().starts_with("auto chose the CPU"));
        // This machine's benchmark says its GPU fits 1M × 128 in 2 ms: now the GPU, which
        // says why and from which run.
        gpu.set_cost_model(wgpu_measured(&gpu, 2.0));
        let big = linear.sized(Workload::linear_fit(1_000_000, 128, 8));
        let (device, why) = gpu.placement(DeviceRequest::GPU_IF_AVAILABLE, big).unwrap();
        assert_eq!(device.backend(), BackendKind::Wgpu);
        assert!(why.is_none() && !device.resolved.fell_back);
        let notice = device.resolved.choice.unwrap();
        assert!(
            notice.starts_with("auto chose wgpu:0 (Test GPU, Vulkan) for the linear fit")
                && notice.contains("about 2 ms there against")
                && notice.contains("benchmark run #7 on this machine and built-in ones"),
            "{notice}"
        );
        // Measured at ten minutes, the GPU loses again.
        gpu.set_cost_model(wgpu_measured(&gpu, 600_000.0));
        let (device, _) = gpu.placement(DeviceRequest::default(), big).unwrap();
        assert_eq!(device.backend(), BackendKind::Cpu);
        // Explicit devices are never second-guessed.
        let wgpu = DeviceRequest::exactly(DevicePreference::Wgpu(None));
        let (device, _) = gpu.placement(wgpu, big).unwrap();
        assert_eq!(device.backend(), BackendKind::Wgpu);
        assert!(device.resolved.choice.is_none());
        // A job wgpu cannot run (CUDA kernels only): today's rules decide.
        let forest = JobSupport::cuda_only("growing a random forest on CUDA")
            .sized(Workload::forest_fit(10_000, 64, 100));
        let (device, why) = gpu
            .placement(DeviceRequest::GPU_IF_AVAILABLE, forest)
            .unwrap();
        assert_eq!(device.backend(), BackendKind::Cpu);
        assert!(why.unwrap().contains("runs on CUDA or the CPU"));
    }

    #[test]
    fn a_cost_model_set_on_devices_reaches_every_job() {
        let devices = Devices::from_manager(described_machine(true));
        let job = JobSupport::everywhere("fitting a linear model")
            .sized(Workload::linear_fit(1_000_000, 128, 8));
        let fast = wgpu_measured(devices.probed(), 2.0);
        devices.set_cost_model(fast.clone());
        assert_eq!(devices.cost_model(), fast);
        let (device, _) = devices
            .probed()
            .placement(DeviceRequest::default(), job)
            .unwrap();
        assert_eq!(device.backend(), BackendKind::Wgpu);
    }

    #[test]
    fn if_available_and_auto_fall_back_to_the_cpu_and_say_why() {
        let none = described_machine(false);
        let placed = place(&none, DeviceRequest::GPU_IF_AVAILABLE, ANY).unwrap();
        assert_eq!(placed.device.backend(), BackendKind::Cpu);
        assert!(placed.device.resolved.fell_back);
        assert!(placed.fell_back.unwrap().contains("no NVIDIA driver"));
        // Plain `auto` without a GPU is simply the CPU: nothing fell back.
        let placed = place(&none, DeviceRequest::default(), ANY).unwrap();
        assert!(placed.fell_back.is_none());
        // A GPU without a path for the job: the CPU, with the reason.
        let gpu = described_machine(true);
        for request in [DeviceRequest::GPU_IF_AVAILABLE, DeviceRequest::default()] {
            let placed = place(&gpu, request, CUDA).unwrap();
            assert_eq!(placed.device.backend(), BackendKind::Cpu);
            assert!(
                placed
                    .fell_back
                    .unwrap()
                    .contains("runs on CUDA or the CPU")
            );
        }
    }

    #[test]
    fn a_gpu_failing_mid_job_reruns_it_on_the_cpu_unless_named() {
        let failing = described_machine(true).with_failing_gpus();
        let placed = place(&failing, DeviceRequest::GPU_IF_AVAILABLE, ANY).unwrap();
        assert_eq!(placed.device.backend(), BackendKind::Cpu);
        assert_eq!(
            placed.fell_back.as_deref(),
            Some(
                "wgpu:0 (Test GPU, Vulkan) failed (the wgpu:0 (Test GPU, Vulkan) backend \
                 failed: simulated GPU fault); ran on the CPU"
            )
        );
        let named = DeviceRequest::exactly(DevicePreference::Wgpu(None));
        assert!(matches!(
            place(&failing, named, ANY),
            Err(DeviceError::BackendFailed { .. })
        ));
        // An error that is not a device failure is the job's own answer.
        let own = failing.place(
            DeviceRequest::GPU_IF_AVAILABLE,
            ANY,
            |_| Err::<(), _>(DeviceError::NoSuchAdapter { index: 9, count: 1 }),
            |_| None,
        );
        assert!(matches!(own, Err(DeviceError::NoSuchAdapter { .. })));
    }
}
