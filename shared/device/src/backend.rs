//! Running burn code, and where each device's runtime comes from.
//!
//! burn runs on the CPU only: its backend there (`burn-flex`) trains the networks our fused
//! kernels do not cover and is the reference they are tested against. GPUs run our own
//! kernels (`cube`, `forexgpt-kernels`), not burn's general CUDA and wgpu backends: those
//! were slower than the CPU for every job left to them and, instantiated for every element
//! type and both runtimes, most of the binary (docs/benchmarks.md, "Size of the release CLI").
//! Engine code that burn runs is written once as a [`BackendJob`] — a type with one method
//! generic over `burn::tensor::backend::Backend` — and [`run_job`] runs it on the CPU; a
//! GPU is refused with the reason (a caller that reaches one has a GPU path to take
//! instead). A panic inside burn becomes [`DeviceError::BackendFailed`] instead of crossing
//! into the UI.

use burn::tensor::backend::Backend;
#[cfg(feature = "wgpu")]
use forexgpt_protocol::AdapterType;

use crate::compute_device::{ComputeDevice, Target};
use crate::error::DeviceError;
use crate::probe::wgpu_adapters::panic_message;

/// The burn CPU backend.
pub type CpuBackend = burn::backend::Flex;

/// Code that runs on a burn backend (the CPU's).
pub trait BackendJob {
    type Output;

    fn run<B: Backend>(self, device: &B::Device) -> Self::Output;
}

/// Runs `f`, turning a panic inside a backend into [`DeviceError::BackendFailed`] on `label`.
pub(crate) fn guarded<T>(label: &str, f: impl FnOnce() -> T) -> Result<T, DeviceError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::panics::caught(f))).map_err(
        |panic| DeviceError::BackendFailed {
            device: label.to_string(),
            message: panic_message(&panic),
        },
    )
}

/// What every way of running work answers on the fault-injection GPU ([`Target::Failing`]):
/// the failure a real backend would report mid-job.
pub(crate) fn simulated_fault(label: &str) -> DeviceError {
    DeviceError::BackendFailed {
        device: label.to_string(),
        message: "simulated GPU fault".into(),
    }
}

/// Runs `job` on burn's CPU backend when `device` is the CPU; a GPU is refused (it runs our
/// own kernels, never burn's general path).
pub fn run_job<J: BackendJob>(device: &ComputeDevice, job: J) -> Result<J::Output, DeviceError> {
    let label = device.label();
    match device.target {
        Target::Cpu => guarded(label, || {
            job.run::<CpuBackend>(&burn::backend::flex::FlexDevice)
        }),
        Target::Failing => Err(simulated_fault(label)),
        Target::Wgpu { .. } | Target::Cuda { .. } => Err(DeviceError::Unsupported {
            job: "burn's general path".into(),
            device: label.to_string(),
            why: "burn runs on the CPU here; GPUs run our own kernels".into(),
        }),
    }
}

/// The cubecl wgpu device of an adapter, and its wgpu handles
/// (instance, adapter, device, queue), for work that goes to wgpu directly: buffers of our
/// own, mapped for the host to write (`forexgpt_kernels::gram`).
///
/// The first call for an adapter creates its runtime exactly as cubecl would on first use
/// (the same adapter selection, default runtime options) and keeps the handles; every use
/// of a wgpu device goes through here, so none is created behind our back. It may panic
/// (no such adapter): call it inside [`guarded`].
#[cfg(feature = "wgpu")]
pub(crate) fn wgpu_device(
    adapter_type: AdapterType,
    type_index: usize,
) -> (cubecl::wgpu::WgpuDevice, cubecl::wgpu::WgpuSetup) {
    use cubecl::wgpu::WgpuDevice;
    use std::sync::Mutex;
    static SETUPS: Mutex<Vec<(WgpuDevice, cubecl::wgpu::WgpuSetup)>> = Mutex::new(Vec::new());
    let device = match adapter_type {
        AdapterType::DiscreteGpu => WgpuDevice::DiscreteGpu(type_index),
        AdapterType::IntegratedGpu => WgpuDevice::IntegratedGpu(type_index),
        AdapterType::VirtualGpu => WgpuDevice::VirtualGpu(type_index),
        AdapterType::Cpu => WgpuDevice::Cpu,
        AdapterType::Other => WgpuDevice::DefaultDevice,
    };
    // A panic while the lock was held (a failed setup) left nothing half-inserted.
    let mut setups = SETUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, setup)) = setups.iter().find(|(d, _)| *d == device) {
        return (device, setup.clone());
    }
    let setup = cubecl::wgpu::init_setup::<cubecl::wgpu::AutoGraphicsApi>(
        &device,
        cubecl::wgpu::RuntimeOptions::default(),
    );
    setups.push((device.clone(), setup.clone()));
    (device, setup)
}
