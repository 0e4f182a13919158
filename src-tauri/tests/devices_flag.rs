//! `forexgpt-workbench --devices`: the Devices tab's report from the app binary itself, as
//! JSON, without a window (so without a display: this test runs in a plain `cargo test`).

use std::process::Command;

use forexgpt_protocol::DeviceInfo;

#[test]
fn the_devices_flag_prints_the_probe_without_opening_a_window() {
    let out = Command::new(env!("CARGO_BIN_EXE_forexgpt-workbench"))
        .arg("--devices")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("run the app binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {}: {stderr}", out.status);
    let info: DeviceInfo = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not a device report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert!(info.cpu.logical_threads > 0, "{info:?}");
    assert_eq!(info.cpu_threads, info.cpu.logical_threads);
    // The build's backends are what its features say, whatever this machine has.
    assert_eq!(info.cuda.built, cfg!(feature = "cuda"), "{info:?}");
    assert_eq!(info.wgpu.built, cfg!(feature = "wgpu"), "{info:?}");
    // Whatever is unavailable says why.
    if !info.cuda.available {
        assert!(info.cuda.reason.as_deref().is_some_and(|r| !r.is_empty()));
    }
    if !info.wgpu.available {
        assert!(info.wgpu.reason.as_deref().is_some_and(|r| !r.is_empty()));
    }
    assert!(!info.auto.label.is_empty(), "{info:?}");
}
