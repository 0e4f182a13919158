//! Running backend-generic code on the resolved device.
//!
//! Engine code is written once as a [`BackendJob`] — a type with one method generic over
//! `burn::tensor::backend::Backend` — and [`run_job`] instantiates it for the backend of the
//! resolved [`ComputeDevice`]. This is static dispatch: no per-operation cost (burn 0.21's
//! `Dispatch` backend matches an enum on every tensor operation, pulls in ndarray, and allows
//! only one wgpu flavour per build). A backend that is compiled out answers with
//! [`DeviceError::NotBuilt`], and a panic inside a backend becomes
//! [`DeviceError::BackendFailed`] instead of crossing into the UI.

use burn::tensor::backend::Backend;
use forexgpt_protocol::AdapterType;

use crate::compute_device::{ComputeDevice, Target};
use crate::error::DeviceError;
use crate::probe::wgpu_adapters::panic_message;

/// The burn CPU backend.
pub type CpuBackend = burn::backend::Flex;
/// The burn wgpu backend (Vulkan / Metal), with kernel fusion.
#[cfg(feature = "wgpu")]
pub type WgpuBackend = burn::backend::Wgpu;
/// The burn CUDA backend, with kernel fusion.
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;

/// Code that runs on any burn backend.
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

/// Runs `job` on `device`'s backend.
pub fn run_job<J: BackendJob>(device: &ComputeDevice, job: J) -> Result<J::Output, DeviceError> {
    let label = device.label();
    match device.target {
        Target::Cpu => guarded(label, || {
            job.run::<CpuBackend>(&burn::backend::flex::FlexDevice)
        }),
        Target::Wgpu {
            adapter_type,
            type_index,
        } => run_wgpu(label, adapter_type, type_index, job),
        Target::Cuda { index } => run_cuda(label, index, job),
        Target::Failing => Err(DeviceError::BackendFailed {
            device: label.to_string(),
            message: "simulated GPU fault".into(),
        }),
    }
}

#[cfg(feature = "wgpu")]
fn run_wgpu<J: BackendJob>(
    label: &str,
    adapter_type: AdapterType,
    type_index: usize,
    job: J,
) -> Result<J::Output, DeviceError> {
    guarded(label, || {
        let (device, _) = wgpu_device(adapter_type, type_index);
        job.run::<WgpuBackend>(&device)
    })
}

/// The wgpu device (burn's and cubecl's, one type) of an adapter, and its wgpu handles
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
) -> (burn::backend::wgpu::WgpuDevice, cubecl::wgpu::WgpuSetup) {
    use burn::backend::wgpu::WgpuDevice;
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

#[cfg(not(feature = "wgpu"))]
fn run_wgpu<J: BackendJob>(
    _: &str,
    _: AdapterType,
    _: usize,
    _: J,
) -> Result<J::Output, DeviceError> {
    Err(DeviceError::NotBuilt(forexgpt_protocol::BackendKind::Wgpu))
}

#[cfg(feature = "cuda")]
fn run_cuda<J: BackendJob>(label: &str, index: usize, job: J) -> Result<J::Output, DeviceError> {
    let device = burn::backend::cuda::CudaDevice::new(index);
    guarded(label, || job.run::<CudaBackend>(&device))
}

#[cfg(not(feature = "cuda"))]
fn run_cuda<J: BackendJob>(_: &str, _: usize, _: J) -> Result<J::Output, DeviceError> {
    Err(DeviceError::NotBuilt(forexgpt_protocol::BackendKind::Cuda))
}
