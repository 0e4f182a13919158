//! The device manager: probes once, answers what the machine has, and turns a
//! [`DevicePreference`] into a [`ComputeDevice`] or a typed error that names the reason.

use forexgpt_protocol::{
    AdapterType, BackendKind, CudaStatus, DeviceInfo, DevicePreference, ResolvedDevice,
    WgpuAdapterInfo, WgpuStatus,
};

use std::sync::{Arc, RwLock};

use crate::compute_device::{ComputeDevice, Target, cpu_resolved};
use crate::cost::CostModel;
use crate::error::DeviceError;
use crate::kernel_cache::{KernelCache, cuda_bundle_dir};
use crate::probe::{probe_cpu, probe_cuda, probe_wgpu, wgpu_adapters::is_hardware};

/// Whether this build has the CUDA backend compiled in.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");
/// Whether this build has the wgpu backend compiled in.
pub const WGPU_BUILT: bool = cfg!(feature = "wgpu");

/// What the machine offers, probed once.
#[derive(Debug, Clone)]
pub struct DeviceManager {
    info: DeviceInfo,
    kernel_cache: Option<KernelCache>,
    /// Every GPU it resolves fails its jobs (fault-injection tests).
    failing_gpus: bool,
    /// What `auto` expects each device to take for a job of a known size; shared with the
    /// [`Devices`](crate::Devices) that made this manager, which recalibrates it.
    costs: Arc<RwLock<CostModel>>,
}

impl DeviceManager {
    /// Probes CUDA, wgpu and the CPU, and turns on the persistent GPU kernel caches.
    /// Never panics: anything unusable is reported with its reason.
    pub fn probe() -> DeviceManager {
        let kernel_cache = KernelCache::configure();
        let bundle = cuda_bundle_dir();
        let cuda = probe_cuda(CUDA_BUILT, bundle.as_deref());
        let wgpu = probe_wgpu(WGPU_BUILT);
        DeviceManager::from_parts(cuda, wgpu, kernel_cache)
    }

    /// Builds a manager from given probe results (tests; machines described by hand).
    pub fn from_parts(
        cuda: CudaStatus,
        wgpu: WgpuStatus,
        kernel_cache: Option<KernelCache>,
    ) -> DeviceManager {
        let cpu = probe_cpu();
        let first = cuda.devices.first();
        let apple_gpu_available = cfg!(target_os = "macos")
            && wgpu.available
            && wgpu.adapters.iter().any(|a| a.api == "Metal");
        let info = DeviceInfo {
            cuda_available: cuda.available,
            device_count: cuda.devices.len(),
            device_name: first.map(|d| d.name.clone()),
            vram_bytes: first.map(|d| d.total_memory_bytes),
            apple_gpu_available,
            cpu_threads: cpu.logical_threads,
            cuda,
            wgpu,
            cpu,
            auto: cpu_resolved(None),
        };
        let mut manager = DeviceManager {
            info,
            kernel_cache,
            failing_gpus: false,
            costs: Arc::default(),
        };
        manager.info.auto = manager.resolve_auto(false).resolved;
        manager
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    pub fn kernel_cache(&self) -> Option<&KernelCache> {
        self.kernel_cache.as_ref()
    }

    /// The device for `preference`. `Auto` always succeeds (falling back to the CPU); an
    /// explicit preference that cannot be met is an error naming the reason.
    pub fn resolve(&self, preference: DevicePreference) -> Result<ComputeDevice, DeviceError> {
        match preference {
            DevicePreference::Auto => Ok(self.resolve_auto(false)),
            DevicePreference::Cpu => Ok(self.cpu()),
            DevicePreference::Cuda(index) => self.resolve_cuda(index.unwrap_or(0)),
            DevicePreference::Wgpu(index) => self.resolve_wgpu(index),
        }
    }

    /// The same machine, but every GPU it resolves fails each job it is given with
    /// [`DeviceError::BackendFailed`]: how tests check that work moves to the CPU when a GPU
    /// fails mid-way.
    pub fn with_failing_gpus(mut self) -> DeviceManager {
        self.failing_gpus = true;
        self
    }

    /// Replaces the cost model `auto` weighs devices with (see [`crate::cost`]).
    pub fn set_cost_model(&self, model: CostModel) {
        *self.costs.write().unwrap_or_else(|e| e.into_inner()) = model;
    }

    /// The same machine, its cost model shared with `costs` (kept up to date by its owner).
    pub(crate) fn sharing_costs(mut self, costs: Arc<RwLock<CostModel>>) -> DeviceManager {
        self.costs = costs;
        self
    }

    pub(crate) fn costs(&self) -> &Arc<RwLock<CostModel>> {
        &self.costs
    }

    /// The GPUs `auto` may pick, in its order of preference: CUDA device 0, then the best
    /// hardware wgpu adapter.
    pub(crate) fn auto_gpus(&self) -> Vec<ComputeDevice> {
        let mut gpus: Vec<ComputeDevice> = self.resolve_cuda(0).into_iter().collect();
        if let Some(adapter) = best_adapter(&self.info.wgpu.adapters, false) {
            gpus.push(self.failing_if_set(wgpu_device(&self.info.wgpu.adapters, adapter)));
        }
        gpus
    }

    /// This machine's CPU.
    pub fn cpu(&self) -> ComputeDevice {
        ComputeDevice::cpu(&self.info.cpu.model)
    }

    fn target(&self, target: Target) -> Target {
        if self.failing_gpus {
            Target::Failing
        } else {
            target
        }
    }

    fn failing_if_set(&self, mut device: ComputeDevice) -> ComputeDevice {
        device.target = self.target(device.target);
        device
    }

    fn resolve_cuda(&self, index: usize) -> Result<ComputeDevice, DeviceError> {
        let cuda = &self.info.cuda;
        if !cuda.built {
            return Err(DeviceError::NotBuilt(BackendKind::Cuda));
        }
        if !cuda.available {
            return Err(DeviceError::CudaUnavailable(
                cuda.reason
                    .clone()
                    .unwrap_or_else(|| "unknown reason".into()),
            ));
        }
        let device = cuda
            .devices
            .get(index)
            .ok_or(DeviceError::NoSuchCudaDevice {
                index,
                count: cuda.devices.len(),
            })?;
        Ok(ComputeDevice {
            resolved: ResolvedDevice {
                backend: BackendKind::Cuda,
                index,
                label: format!("cuda:{index} ({})", device.name),
                fell_back: false,
                notice: None,
                choice: None,
            },
            target: self.target(Target::Cuda { index }),
        })
    }

    fn resolve_wgpu(&self, index: Option<usize>) -> Result<ComputeDevice, DeviceError> {
        let wgpu = &self.info.wgpu;
        if !wgpu.built {
            return Err(DeviceError::NotBuilt(BackendKind::Wgpu));
        }
        let adapters = &wgpu.adapters;
        if adapters.is_empty() {
            return Err(DeviceError::WgpuUnavailable(
                wgpu.reason.clone().unwrap_or_else(|| "no adapter".into()),
            ));
        }
        let adapter = match index {
            Some(i) => adapters.get(i).ok_or(DeviceError::NoSuchAdapter {
                index: i,
                count: adapters.len(),
            })?,
            // Asked for wgpu without an index: the best adapter, software ones included.
            None => best_adapter(adapters, true)
                .ok_or_else(|| DeviceError::WgpuUnavailable("no adapter".into()))?,
        };
        Ok(self.failing_if_set(wgpu_device(adapters, adapter)))
    }

    /// CUDA, else the best hardware wgpu adapter, else the CPU with the reason in its notice
    /// (`fell_back` set when a GPU was wanted).
    pub(crate) fn resolve_auto(&self, gpu_wanted: bool) -> ComputeDevice {
        if let Ok(device) = self.resolve_cuda(0) {
            return device;
        }
        if let Some(adapter) = best_adapter(&self.info.wgpu.adapters, false) {
            return self.failing_if_set(wgpu_device(&self.info.wgpu.adapters, adapter));
        }
        let why = format!(
            "no usable GPU (CUDA: {}; wgpu: {})",
            self.info.cuda.reason.as_deref().unwrap_or("unavailable"),
            self.info.wgpu.reason.as_deref().unwrap_or("unavailable")
        );
        let mut cpu = self.cpu();
        cpu.resolved.fell_back = gpu_wanted;
        cpu.resolved.notice = Some(if gpu_wanted {
            format!("running on the CPU: {why}")
        } else {
            why
        });
        cpu
    }
}

/// Discrete before integrated before virtual; software adapters only when `allow_software`.
fn best_adapter(adapters: &[WgpuAdapterInfo], allow_software: bool) -> Option<&WgpuAdapterInfo> {
    let rank = |t: AdapterType| match t {
        AdapterType::DiscreteGpu => 0,
        AdapterType::IntegratedGpu => 1,
        AdapterType::VirtualGpu => 2,
        AdapterType::Cpu => 3,
        AdapterType::Other => 4,
    };
    adapters
        .iter()
        .filter(|a| allow_software || is_hardware(a.adapter_type))
        .min_by_key(|a| (rank(a.adapter_type), a.index))
}

fn wgpu_device(adapters: &[WgpuAdapterInfo], adapter: &WgpuAdapterInfo) -> ComputeDevice {
    // burn numbers adapters within their type (DiscreteGpu(0), DiscreteGpu(1), …).
    let type_index = adapters
        .iter()
        .filter(|a| a.adapter_type == adapter.adapter_type && a.index < adapter.index)
        .count();
    let software = !is_hardware(adapter.adapter_type);
    ComputeDevice {
        resolved: ResolvedDevice {
            backend: BackendKind::Wgpu,
            index: adapter.index,
            label: format!(
                "wgpu:{} ({}, {}{})",
                adapter.index,
                adapter.name,
                adapter.api,
                if software { ", software" } else { "" }
            ),
            fell_back: false,
            notice: software
                .then(|| format!("{} is a software renderer: correct but slow", adapter.name)),
            choice: None,
        },
        target: Target::Wgpu {
            adapter_type: adapter.adapter_type,
            type_index,
        },
    }
}

#[cfg(test)]
mod tests {
    use forexgpt_protocol::CudaDeviceInfo;

    use super::*;

    fn adapter(index: usize, name: &str, t: AdapterType) -> WgpuAdapterInfo {
        WgpuAdapterInfo {
            index,
            name: name.into(),
            api: "Vulkan".into(),
            adapter_type: t,
            vendor_id: 0,
            driver: String::new(),
        }
    }

    fn no_cuda() -> CudaStatus {
        CudaStatus {
            built: true,
            reason: Some("no NVIDIA driver".into()),
            ..CudaStatus::default()
        }
    }

    fn h100() -> CudaStatus {
        CudaStatus {
            built: true,
            available: true,
            driver_version: Some("13.0".into()),
            devices: vec![CudaDeviceInfo {
                index: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                total_memory_bytes: 85_520_809_984,
                compute_capability: (9, 0),
            }],
            ..CudaStatus::default()
        }
    }

    fn wgpu(adapters: Vec<WgpuAdapterInfo>) -> WgpuStatus {
        WgpuStatus {
            built: true,
            available: adapters.iter().any(|a| is_hardware(a.adapter_type)),
            adapters,
            reason: None,
        }
    }

    #[test]
    fn auto_prefers_cuda_then_hardware_wgpu_then_cpu() {
        let m = DeviceManager::from_parts(
            h100(),
            wgpu(vec![adapter(0, "RTX", AdapterType::DiscreteGpu)]),
            None,
        );
        assert_eq!(m.info().auto.backend, BackendKind::Cuda);
        assert!(m.info().cuda_available);
        assert_eq!(
            m.info().device_name.as_deref(),
            Some("NVIDIA H100 80GB HBM3")
        );

        let m = DeviceManager::from_parts(
            no_cuda(),
            wgpu(vec![
                adapter(0, "llvmpipe", AdapterType::Cpu),
                adapter(1, "Iris", AdapterType::IntegratedGpu),
            ]),
            None,
        );
        assert_eq!(
            (m.info().auto.backend, m.info().auto.index),
            (BackendKind::Wgpu, 1)
        );

        // Only lavapipe: auto stays on the CPU and says why; asking for wgpu gets lavapipe.
        let m = DeviceManager::from_parts(
            no_cuda(),
            wgpu(vec![adapter(0, "llvmpipe", AdapterType::Cpu)]),
            None,
        );
        assert_eq!(m.info().auto.backend, BackendKind::Cpu);
        assert!(
            m.info()
                .auto
                .notice
                .as_deref()
                .unwrap()
                .contains("no NVIDIA driver")
        );
        let w = m.resolve(DevicePreference::Wgpu(None)).unwrap();
        assert_eq!(
            w.target,
            Target::Wgpu {
                adapter_type: AdapterType::Cpu,
                type_index: 0
            }
        );
        assert!(w.resolved.notice.unwrap().contains("software"));
    }

    #[test]
    fn explicit_preferences_fail_with_the_reason() {
        let m = DeviceManager::from_parts(no_cuda(), wgpu(vec![]), None);
        assert_eq!(
            m.resolve(DevicePreference::Cuda(None)).unwrap_err(),
            DeviceError::CudaUnavailable("no NVIDIA driver".into())
        );
        assert!(matches!(
            m.resolve(DevicePreference::Wgpu(None)),
            Err(DeviceError::WgpuUnavailable(_))
        ));
        let m = DeviceManager::from_parts(
            h100(),
            wgpu(vec![adapter(0, "RTX", AdapterType::DiscreteGpu)]),
            None,
        );
        assert_eq!(
            m.resolve(DevicePreference::Cuda(Some(3))).unwrap_err(),
            DeviceError::NoSuchCudaDevice { index: 3, count: 1 }
        );
        assert_eq!(
            m.resolve(DevicePreference::Wgpu(Some(1))).unwrap_err(),
            DeviceError::NoSuchAdapter { index: 1, count: 1 }
        );
        let not_built = CudaStatus {
            built: false,
            ..h100()
        };
        let m = DeviceManager::from_parts(not_built, wgpu(vec![]), None);
        assert_eq!(
            m.resolve(DevicePreference::Cuda(None)).unwrap_err(),
            DeviceError::NotBuilt(BackendKind::Cuda)
        );
        assert_eq!(
            DeviceError::NotBuilt(BackendKind::Cuda).to_string(),
            "this build has no cuda support (rebuild with --features cuda)"
        );
    }

    #[test]
    fn wgpu_indices_map_to_burn_type_indices() {
        let adapters = vec![
            adapter(0, "A", AdapterType::DiscreteGpu),
            adapter(1, "llvmpipe", AdapterType::Cpu),
            adapter(2, "B", AdapterType::DiscreteGpu),
        ];
        let m = DeviceManager::from_parts(no_cuda(), wgpu(adapters), None);
        let d = m.resolve(DevicePreference::Wgpu(Some(2))).unwrap();
        assert_eq!(
            d.target,
            Target::Wgpu {
                adapter_type: AdapterType::DiscreteGpu,
                type_index: 1
            }
        );
    }
}
