//! The ForexGPT Workbench desktop app.

// No console window next to the app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::process::ExitCode;

#[allow(unsafe_code)] // one environment change before any thread exists
fn main() -> ExitCode {
    // SAFETY: first thing in `main`: no other thread exists yet.
    unsafe { forexgpt_device::probe::prepare_environment() };
    if std::env::args().nth(1).as_deref() == Some(forexgpt_app::DEVICES_FLAG) {
        return forexgpt_app::print_devices();
    }
    forexgpt_app::run();
    ExitCode::SUCCESS
}
