//! Running a test body on every device this machine has: the CPU always, wgpu when an adapter
//! exists (lavapipe included, so CI exercises the GPU code path), CUDA when it is usable.
//! Skipped devices are printed with the reason. `FOREXGPT_TEST_DEVICES=cpu,wgpu` limits the set.

use forexgpt_protocol::{
    AdapterType, BackendKind, CudaStatus, DevicePreference, WgpuAdapterInfo, WgpuStatus,
};

use crate::compute_device::ComputeDevice;
use crate::manager::DeviceManager;

/// The devices tests should run on, and the ones skipped with why.
pub fn test_devices(manager: &DeviceManager) -> (Vec<ComputeDevice>, Vec<String>) {
    let wanted = std::env::var("FOREXGPT_TEST_DEVICES").ok();
    let allowed = |kind: BackendKind| {
        wanted
            .as_deref()
            .is_none_or(|w| w.split(',').any(|k| k.trim() == kind.as_str()))
    };
    let mut devices = Vec::new();
    let mut skipped = Vec::new();
    for (kind, preference) in [
        (BackendKind::Cpu, DevicePreference::Cpu),
        (BackendKind::Wgpu, DevicePreference::Wgpu(None)),
        (BackendKind::Cuda, DevicePreference::Cuda(None)),
    ] {
        if !allowed(kind) {
            skipped.push(format!("{kind}: excluded by FOREXGPT_TEST_DEVICES"));
            continue;
        }
        match manager.resolve(preference) {
            Ok(device) => devices.push(device),
            Err(e) => skipped.push(format!("{kind}: {e}")),
        }
    }
    (devices, skipped)
}

/// Calls `body` once per test device; prints which devices ran and which were skipped.
pub fn for_each_device(mut body: impl FnMut(&ComputeDevice)) {
    let manager = DeviceManager::probe();
    let (devices, skipped) = test_devices(&manager);
    for reason in &skipped {
        eprintln!("skipped device {reason}");
    }
    for device in &devices {
        eprintln!("running on {}", device.label());
        body(device);
    }
}

/// The GPUs (wgpu adapters, CUDA devices) tests should run on, skipped devices printed with
/// the reason; with none, a loud `SKIPPED` line that names what was not run (`what`).
pub fn test_gpus(what: &str) -> Vec<ComputeDevice> {
    let manager = DeviceManager::probe();
    let (devices, skipped) = test_devices(&manager);
    for reason in skipped {
        eprintln!("skipped device {reason}");
    }
    let gpus: Vec<ComputeDevice> = devices.into_iter().filter(|d| d.is_gpu()).collect();
    if gpus.is_empty() {
        eprintln!(
            "SKIPPED: no GPU (wgpu adapter or CUDA device) on this machine; {what} was not run"
        );
    }
    gpus
}

/// A machine described by hand, for placement tests: no CUDA ("no NVIDIA driver"), and with
/// `gpu` one hardware wgpu adapter, `wgpu:0 (Test GPU, Vulkan)`; without, no adapter ("no
/// adapter"). Add [`DeviceManager::with_failing_gpus`] for a GPU that fails every job.
pub fn described_machine(gpu: bool) -> DeviceManager {
    let cuda = CudaStatus {
        built: true,
        reason: Some("no NVIDIA driver".into()),
        ..CudaStatus::default()
    };
    let adapters = if gpu {
        vec![WgpuAdapterInfo {
            index: 0,
            name: "Test GPU".into(),
            api: "Vulkan".into(),
            adapter_type: AdapterType::DiscreteGpu,
            vendor_id: 0,
            driver: String::new(),
        }]
    } else {
        Vec::new()
    };
    let wgpu = WgpuStatus {
        built: true,
        available: gpu,
        adapters,
        reason: (!gpu).then(|| "no adapter".into()),
    };
    DeviceManager::from_parts(cuda, wgpu, None)
}
