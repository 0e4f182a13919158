//! wgpu adapters, listed on a separate thread with a time limit: on a machine with a Vulkan
//! loader but no usable driver, wgpu has been seen to panic or hang, and neither may take the
//! app down. A panic or a hang becomes "unavailable: reason".

use std::time::Duration;

use forexgpt_protocol::{AdapterType, WgpuAdapterInfo, WgpuStatus};

/// The graphics API burn's wgpu backend uses on this platform (cubecl's `AutoGraphicsApi`).
pub const NATIVE_API: &str = if cfg!(target_os = "macos") {
    "Metal"
} else {
    "Vulkan"
};

/// How long adapter enumeration may take before it counts as hung.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Mesa's Vulkan device-select layer, an implicit layer every Mesa install enables, asks the
/// Wayland compositor for the default GPU whenever adapters are listed. Outside a desktop
/// session (`XDG_RUNTIME_DIR` unset: a terminal over SSH, CI) libwayland then prints "error:
/// XDG_RUNTIME_DIR is invalid or not set in the environment." to stderr, twice per command.
/// Without a session there is no default GPU to learn, so the layer is switched off with its
/// own documented switch (`NODEVICE_SELECT=1`); in a desktop session, or when the user set the
/// switch either way, nothing changes. Returns whether it switched the layer off.
///
/// # Safety
/// It may change the process environment: see [`super::prepare_environment`].
#[allow(unsafe_code)]
pub unsafe fn quiet_headless_vulkan() -> bool {
    let in_session = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .is_some_and(|d| std::path::Path::new(&d).is_dir());
    if !cfg!(target_os = "linux") || in_session || std::env::var_os("NODEVICE_SELECT").is_some() {
        return false;
    }
    // SAFETY: the caller guarantees that no other thread exists.
    unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    true
}

pub fn probe_wgpu(built: bool) -> WgpuStatus {
    if !built {
        return WgpuStatus {
            built: false,
            available: false,
            adapters: Vec::new(),
            reason: Some("this build has no wgpu support (rebuild with --features wgpu)".into()),
        };
    }
    match list_adapters_guarded(PROBE_TIMEOUT) {
        Ok(adapters) => {
            let hardware = adapters.iter().any(|a| is_hardware(a.adapter_type));
            let reason = if adapters.is_empty() {
                Some(format!(
                    "no {NATIVE_API} adapter found (is a {NATIVE_API} driver installed?)"
                ))
            } else if !hardware {
                Some(format!(
                    "only software {NATIVE_API} adapters ({}); they are used when wgpu is asked for explicitly",
                    adapters
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            } else {
                None
            };
            WgpuStatus {
                built: true,
                available: hardware,
                adapters,
                reason,
            }
        }
        Err(reason) => WgpuStatus {
            built: true,
            available: false,
            adapters: Vec::new(),
            reason: Some(reason),
        },
    }
}

pub fn is_hardware(t: AdapterType) -> bool {
    matches!(
        t,
        AdapterType::DiscreteGpu | AdapterType::IntegratedGpu | AdapterType::VirtualGpu
    )
}

#[cfg(feature = "wgpu")]
fn list_adapters_guarded(timeout: Duration) -> Result<Vec<WgpuAdapterInfo>, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("wgpu-probe".into())
        .spawn(move || {
            let result = std::panic::catch_unwind(|| crate::panics::caught(list_adapters));
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(format!("could not start the wgpu probe: {e}"));
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(list)) => Ok(list),
        Ok(Err(panic)) => Err(format!(
            "wgpu failed while listing {NATIVE_API} adapters: {}",
            panic_message(&panic)
        )),
        Err(_) => Err(format!(
            "wgpu did not list {NATIVE_API} adapters within {} s (driver hung)",
            timeout.as_secs()
        )),
    }
}

#[cfg(not(feature = "wgpu"))]
fn list_adapters_guarded(_timeout: Duration) -> Result<Vec<WgpuAdapterInfo>, String> {
    Err("this build has no wgpu support (rebuild with --features wgpu)".into())
}

pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "unknown panic".to_string())
}

#[cfg(feature = "wgpu")]
fn native_backend() -> wgpu::Backend {
    if cfg!(target_os = "macos") {
        wgpu::Backend::Metal
    } else {
        wgpu::Backend::Vulkan
    }
}

#[cfg(feature = "wgpu")]
fn list_adapters() -> Vec<WgpuAdapterInfo> {
    let backend = native_backend();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend.into(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    pollster::block_on(instance.enumerate_adapters(backend.into()))
        .into_iter()
        .enumerate()
        .map(|(index, adapter)| {
            let info = adapter.get_info();
            WgpuAdapterInfo {
                index,
                name: info.name,
                api: format!("{:?}", info.backend),
                adapter_type: match info.device_type {
                    wgpu::DeviceType::DiscreteGpu => AdapterType::DiscreteGpu,
                    wgpu::DeviceType::IntegratedGpu => AdapterType::IntegratedGpu,
                    wgpu::DeviceType::VirtualGpu => AdapterType::VirtualGpu,
                    wgpu::DeviceType::Cpu => AdapterType::Cpu,
                    wgpu::DeviceType::Other => AdapterType::Other,
                },
                vendor_id: info.vendor,
                driver: [info.driver, info.driver_info]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
            }
        })
        .collect()
}
