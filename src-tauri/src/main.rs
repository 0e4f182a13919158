//! The ForexGPT Workbench desktop app.

// No console window next to the app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

#[allow(unsafe_code)] // one environment change before any thread exists
fn main() {
    // SAFETY: first thing in `main`: no other thread exists yet.
    unsafe {
        forexgpt_device::probe::cuda_driver::export_cuda_path(
            forexgpt_device::kernel_cache::cuda_bundle_dir().as_deref(),
        )
    };
    forexgpt_app::run();
}
