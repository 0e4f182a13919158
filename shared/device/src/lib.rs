//! The device manager: what the machine has (CUDA GPUs, wgpu adapters on Vulkan / Metal /
//! DX12, the CPU), which device a request (`auto | cuda[:N] | wgpu[:N] | cpu`, "if available")
//! resolves to for a job, and how code runs there: our own kernels on a GPU, burn on the CPU.
//!
//! - [`probe`]: finding devices without letting a backend panic (CUDA through the driver API
//!   loaded at run time, NVRTC and the CUDA headers that cubecl needs, wgpu adapters listed on
//!   a guarded thread).
//! - [`manager`]: the probed machine and how a preference resolves.
//! - [`placement`]: the one placement path every job goes through ([`DeviceManager::place`]).
//! - [`backend`]: burn's CPU backend and [`run_job`], which runs a [`BackendJob`] there (burn's
//!   GPU backends are not built: GPUs run our own kernels).
//! - `cube` (with a GPU backend built): `run_cube_job`, which runs our own CubeCL kernels
//!   on a device's cubecl runtime.
//!
//! Backends that are compiled out still appear, as "not built with X support". Our own GPU
//! kernels live in the `forexgpt-kernels` crate.

pub mod backend;
pub mod check;
pub mod compute_device;
pub mod cost;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod cube;
pub mod error;
pub mod kernel_cache;
pub mod manager;
pub mod panics;
pub mod placement;
pub mod probe;
pub mod testing;

pub use backend::{BackendJob, CpuBackend, run_job};
pub use check::{DeviceCheck, check_device};
pub use compute_device::ComputeDevice;
pub use cost::{CostModel, CostOp, Workload};
pub use error::DeviceError;
pub use forexgpt_protocol::DeviceRequest;
pub use manager::{CUDA_BUILT, DeviceManager, WGPU_BUILT};
pub use placement::{Devices, JobSupport, Placed};
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_check_passes_on_every_test_device() {
        testing::for_each_device(|device| {
            let check = check_device(device, 48).unwrap();
            assert!(check.passed, "{check:?}");
        });
    }

    #[test]
    fn probing_this_machine_never_fails() {
        let manager = DeviceManager::probe();
        let info = manager.info();
        assert!(info.cpu_threads >= 1);
        assert_eq!(info.cuda.built, CUDA_BUILT);
        assert_eq!(info.wgpu.built, WGPU_BUILT);
        if !info.cuda_available {
            assert!(info.cuda.reason.is_some());
        }
    }
}
