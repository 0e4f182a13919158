//! Running our own CubeCL kernels (`#[cube]`, one source for CUDA and wgpu) on a resolved
//! device. A [`CubeJob`] is written once, generic over the cubecl runtime, and
//! [`run_cube_job`] instantiates it for the device's runtime: `cubecl::wgpu::WgpuRuntime`
//! (Vulkan, Metal, DX12) or `cubecl::cuda::CudaRuntime`. cubecl keeps one client per device,
//! so every kernel of ours on a device shares its queue and memory pool (and, on CUDA, the
//! primary context our cuBLAS calls use).
//!
//! The CPU has no cubecl runtime here: a job asked to run there is refused as unsupported
//! and its caller runs its CPU path. A panic inside a runtime becomes
//! [`DeviceError::BackendFailed`].

pub use cubecl;

use crate::backend::{guarded, simulated_fault};
use crate::compute_device::{ComputeDevice, Target};
use crate::error::DeviceError;

/// A kernel argument over the first `len` values of `handle`: a one-dimensional array, as
/// every kernel of ours takes its buffers.
pub fn array_arg<R: cubecl::Runtime>(
    handle: &cubecl::server::Handle,
    len: usize,
) -> cubecl::prelude::ArrayArg<R> {
    cubecl::prelude::TensorBinding::<R> {
        handle: handle.clone().binding(),
        strides: cubecl::zspace::Strides::from([1usize]),
        shape: cubecl::zspace::Shape::from([len]),
        runtime: core::marker::PhantomData,
    }
    .into_array_arg()
}

/// Code generic over the cubecl runtime: our own kernels and their host glue.
pub trait CubeJob {
    type Output;

    fn run<R: cubecl::Runtime>(self, device: &R::Device) -> Self::Output;
}

/// Runs `job` on `device`'s cubecl runtime. The CPU (and a backend compiled out) is refused
/// with the reason.
pub fn run_cube_job<J: CubeJob>(
    device: &ComputeDevice,
    job_name: &str,
    job: J,
) -> Result<J::Output, DeviceError> {
    let label = device.label();
    match device.target {
        Target::Cpu => Err(DeviceError::Unsupported {
            job: job_name.to_string(),
            device: label.to_string(),
            why: "it runs on CUDA or wgpu; the CPU has its own path".into(),
        }),
        Target::Failing => Err(simulated_fault(label)),
        #[cfg(feature = "wgpu")]
        Target::Wgpu {
            adapter_type,
            type_index,
        } => guarded(label, || {
            let (wgpu_device, _) = crate::backend::wgpu_device(adapter_type, type_index);
            job.run::<cubecl::wgpu::WgpuRuntime>(&wgpu_device)
        }),
        #[cfg(not(feature = "wgpu"))]
        Target::Wgpu { .. } => Err(DeviceError::NotBuilt(forexgpt_protocol::BackendKind::Wgpu)),
        #[cfg(feature = "cuda")]
        Target::Cuda { index } => {
            let cuda_device = cubecl::cuda::CudaDevice::new(index);
            guarded(label, || job.run::<cubecl::cuda::CudaRuntime>(&cuda_device))
        }
        #[cfg(not(feature = "cuda"))]
        Target::Cuda { .. } => Err(DeviceError::NotBuilt(forexgpt_protocol::BackendKind::Cuda)),
    }
}

/// Runs `job` on a wgpu device with its cubecl device and its wgpu handles
/// ([`cubecl::wgpu::WgpuSetup`]: the same device and queue cubecl submits to), for work
/// that needs wgpu itself beside our kernels (buffers the host writes through a mapping).
/// Any other device is refused with the reason; a panic becomes
/// [`DeviceError::BackendFailed`].
#[cfg(feature = "wgpu")]
pub fn run_wgpu_job<T>(
    device: &ComputeDevice,
    job_name: &str,
    job: impl FnOnce(&cubecl::wgpu::WgpuDevice, &cubecl::wgpu::WgpuSetup) -> T,
) -> Result<T, DeviceError> {
    let label = device.label();
    match device.target {
        Target::Wgpu {
            adapter_type,
            type_index,
        } => guarded(label, || {
            let (wgpu_device, setup) = crate::backend::wgpu_device(adapter_type, type_index);
            job(&wgpu_device, &setup)
        }),
        Target::Failing => Err(simulated_fault(label)),
        Target::Cpu | Target::Cuda { .. } => Err(DeviceError::Unsupported {
            job: job_name.to_string(),
            device: label.to_string(),
            why: "it runs on wgpu only".into(),
        }),
    }
}
