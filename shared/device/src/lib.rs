//! The device manager: what the machine has (CUDA GPUs, wgpu adapters on Vulkan / Metal /
//! DX12, the CPU), which device a preference (`auto | cuda[:N] | wgpu[:N] | cpu`) resolves to,
//! and one way to run backend-generic burn code there.
//!
//! Probing never panics: CUDA is found through the driver API loaded at run time, NVRTC and
//! the CUDA headers are checked because cubecl needs them to compile kernels, and wgpu adapters
//! are listed on a guarded thread. Backends that are compiled out still appear, as
//! "not built with X support".

pub mod backend;
pub mod check;
pub mod cublas;
#[cfg(feature = "cuda")]
mod cuda_common;
pub mod cuda_grow;
pub mod cuda_walk;
pub mod kernel_cache;
pub mod manager;
pub mod precision;
pub mod probe;
pub mod testing;

pub use backend::{BackendJob, ComputeDevice, CpuBackend, run_job};
pub use check::{DeviceCheck, check_device};
pub use manager::{CUDA_BUILT, DeviceError, DeviceManager, Placed, WGPU_BUILT};

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
