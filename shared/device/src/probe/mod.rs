//! Finding out what the machine has, without letting any backend panic.

mod cpu;
pub mod cuda_driver;
pub mod wgpu_adapters;

pub use cpu::probe_cpu;
pub use cuda_driver::probe_cuda;
pub use wgpu_adapters::probe_wgpu;

/// Sets up the process environment the GPU runtimes read, once, before any thread exists:
/// the CUDA bundle's headers for cubecl ([`cuda_driver::export_cuda_path`]), a quiet
/// Vulkan loader outside a desktop session ([`wgpu_adapters::quiet_headless_vulkan`]), and
/// the panic hook that keeps GPU libraries' caught panics out of the output
/// ([`crate::panics`]).
///
/// # Safety
/// It may change the process environment, which is sound only while no other thread exists
/// that could read it: call it first thing in `main`, before anything spawns a thread.
#[allow(unsafe_code)]
pub unsafe fn prepare_environment() {
    crate::panics::install_hook();
    // SAFETY: the caller guarantees that this thread is the only one.
    unsafe {
        cuda_driver::export_cuda_path(crate::kernel_cache::cuda_bundle_dir().as_deref());
        wgpu_adapters::quiet_headless_vulkan();
    }
}
