//! The ForexGPT Workbench desktop app.

// No console window next to the app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

#[allow(unsafe_code)] // one environment change before any thread exists
fn main() {
    // SAFETY: first thing in `main`: no other thread exists yet.
    unsafe { forexgpt_device::probe::prepare_environment() };
    forexgpt_app::run();
}
