//! What the machine offers for computing (CUDA GPUs, wgpu adapters, the CPU), which device a
//! preference resolves to, and why any device is unavailable.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The compute backends the app can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Cuda,
    Wgpu,
    Cpu,
}

impl BackendKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            BackendKind::Cuda => "cuda",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cpu => "cpu",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the user wants work to run: `auto`, `cuda[:N]`, `wgpu[:N]` or `cpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DevicePreference {
    /// CUDA, else a discrete or integrated wgpu adapter, else the CPU.
    #[default]
    Auto,
    Cuda(Option<usize>),
    Wgpu(Option<usize>),
    Cpu,
}

impl fmt::Display for DevicePreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DevicePreference::Auto => f.write_str("auto"),
            DevicePreference::Cpu => f.write_str("cpu"),
            DevicePreference::Cuda(None) => f.write_str("cuda"),
            DevicePreference::Wgpu(None) => f.write_str("wgpu"),
            DevicePreference::Cuda(Some(i)) => write!(f, "cuda:{i}"),
            DevicePreference::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device '{0}' (expected auto, cuda, cuda:N, wgpu, wgpu:N or cpu)")]
pub struct ParseDeviceError(pub String);

impl FromStr for DevicePreference {
    type Err = ParseDeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, index) = match lower.split_once(':') {
            Some((n, i)) => (
                n,
                Some(
                    i.parse::<usize>()
                        .map_err(|_| ParseDeviceError(s.to_string()))?,
                ),
            ),
            None => (lower.as_str(), None),
        };
        match (name, index) {
            ("auto", None) => Ok(DevicePreference::Auto),
            ("cpu", None) => Ok(DevicePreference::Cpu),
            ("cuda" | "gpu", i) => Ok(DevicePreference::Cuda(i)),
            ("wgpu" | "vulkan" | "metal" | "dx12", i) => Ok(DevicePreference::Wgpu(i)),
            _ => Err(ParseDeviceError(s.to_string())),
        }
    }
}

impl TryFrom<String> for DevicePreference {
    type Error = ParseDeviceError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DevicePreference> for String {
    fn from(p: DevicePreference) -> String {
        p.to_string()
    }
}

/// Where the user asked work to run, exactly as the "Use GPU (if available)" checkbox or
/// `--device` / `--use-gpu` say it. It travels unchanged to the device crate's one placement
/// function, which resolves it, runs the work and falls back where the request allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceRequest {
    pub preference: DevicePreference,
    /// "If available": a GPU that is missing, cannot serve the job or fails mid-way hands the
    /// work to the CPU (with the reason) instead of failing.
    #[serde(default)]
    pub gpu_if_available: bool,
}

impl DeviceRequest {
    /// The CPU, never probing a GPU.
    pub const CPU: DeviceRequest = DeviceRequest::exactly(DevicePreference::Cpu);
    /// "Use GPU (if available)": the best GPU that can serve the job, else the CPU.
    pub const GPU_IF_AVAILABLE: DeviceRequest = DeviceRequest {
        preference: DevicePreference::Auto,
        gpu_if_available: true,
    };

    /// `preference` and nothing else: an explicit device that cannot serve a job is an error.
    pub const fn exactly(preference: DevicePreference) -> DeviceRequest {
        DeviceRequest {
            preference,
            gpu_if_available: false,
        }
    }

    /// The checkbox: a GPU if one is usable, else the CPU.
    pub const fn from_checkbox(use_gpu: bool) -> DeviceRequest {
        if use_gpu {
            DeviceRequest::GPU_IF_AVAILABLE
        } else {
            DeviceRequest::CPU
        }
    }

    /// Whether the work may move to the CPU instead of failing: "if available", or `auto`
    /// (which promises the best device that works, not a GPU).
    pub const fn may_fall_back(self) -> bool {
        self.gpu_if_available || matches!(self.preference, DevicePreference::Auto)
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.preference)?;
        if self.gpu_if_available {
            f.write_str(" (GPU if available)")?;
        }
        Ok(())
    }
}

/// One CUDA device as the driver reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CudaDeviceInfo {
    pub index: usize,
    pub name: String,
    pub total_memory_bytes: u64,
    /// Compute capability, e.g. `(9, 0)` for Hopper.
    pub compute_capability: (i32, i32),
}

/// The CUDA side: driver, devices, and the run-time compiler pieces cubecl needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CudaStatus {
    /// Whether this build has CUDA support compiled in.
    pub built: bool,
    /// Driver, at least one device, NVRTC and the CUDA headers were all found.
    pub available: bool,
    /// e.g. `13.0`.
    pub driver_version: Option<String>,
    pub devices: Vec<CudaDeviceInfo>,
    /// The NVRTC library that was loaded.
    pub nvrtc: Option<String>,
    /// The CUDA include directory that was found.
    pub include_dir: Option<String>,
    /// Why CUDA cannot be used (when `available` is false).
    pub reason: Option<String>,
}

/// The Devices tab's "Fetch NVRTC and the CUDA headers".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CudaFetchRequest {
    /// e.g. `13.0`; `None` fetches for the driver's CUDA version.
    #[serde(default)]
    pub cuda_version: Option<String>,
}

/// One package a CUDA-runtime fetch installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedPackage {
    pub package: String,
    pub version: String,
    pub bytes: u64,
    pub sha256: String,
}

/// What a CUDA-runtime fetch installed; CUDA uses it from the app's next start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CudaFetchReport {
    pub cuda_version: String,
    pub packages: Vec<FetchedPackage>,
    /// The installed NVRTC library.
    pub nvrtc: String,
}

/// What kind of adapter wgpu reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdapterType {
    DiscreteGpu,
    IntegratedGpu,
    VirtualGpu,
    /// A software rasterizer such as lavapipe or WARP.
    Cpu,
    Other,
}

/// One wgpu adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WgpuAdapterInfo {
    pub index: usize,
    pub name: String,
    /// `Vulkan`, `Metal`, `Dx12` or `Gl`.
    pub api: String,
    pub adapter_type: AdapterType,
    pub vendor_id: u32,
    pub driver: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WgpuStatus {
    pub built: bool,
    /// At least one usable hardware adapter (software adapters count only when asked for).
    pub available: bool,
    pub adapters: Vec<WgpuAdapterInfo>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuInfo {
    pub model: String,
    pub logical_threads: usize,
    pub arch: String,
}

/// The device a preference resolved to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedDevice {
    pub backend: BackendKind,
    /// Device or adapter index within the backend.
    pub index: usize,
    /// e.g. `cuda:0 (NVIDIA H100 80GB HBM3)`.
    pub label: String,
    /// True when a GPU was wanted "if available" and the CPU runs instead.
    pub fell_back: bool,
    /// Why the device differs from what was asked for, for the user to see.
    pub notice: Option<String>,
    /// Why `auto` picked this device for the job: what the cost model expected here and on
    /// the other candidate (absent for explicit devices and for jobs of unknown size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<String>,
}

/// Everything `forexgpt devices` and the app's Devices tab show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The fields the original tool's `get_device_info` returned.
    pub cuda_available: bool,
    pub device_count: usize,
    pub device_name: Option<String>,
    pub vram_bytes: Option<u64>,
    /// Apple GPU through wgpu on Metal.
    pub apple_gpu_available: bool,
    pub cpu_threads: usize,
    pub cuda: CudaStatus,
    pub wgpu: WgpuStatus,
    pub cpu: CpuInfo,
    /// What `auto` picks on this machine.
    pub auto: ResolvedDevice,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferences_parse_and_print() {
        for (text, pref) in [
            ("auto", DevicePreference::Auto),
            ("CPU", DevicePreference::Cpu),
            ("cuda", DevicePreference::Cuda(None)),
            ("cuda:1", DevicePreference::Cuda(Some(1))),
            ("wgpu:0", DevicePreference::Wgpu(Some(0))),
            ("vulkan", DevicePreference::Wgpu(None)),
        ] {
            assert_eq!(text.parse::<DevicePreference>(), Ok(pref), "{text}");
        }
        assert_eq!(DevicePreference::Cuda(Some(2)).to_string(), "cuda:2");
        assert!("tpu".parse::<DevicePreference>().is_err());
        assert!("cuda:x".parse::<DevicePreference>().is_err());
        assert!("cpu:1".parse::<DevicePreference>().is_err());
        let request = DeviceRequest::from_checkbox(true);
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(json, r#"{"preference":"auto","gpu_if_available":true}"#);
        assert_eq!(
            serde_json::from_str::<DeviceRequest>(&json).unwrap(),
            request
        );
        assert_eq!(request.to_string(), "auto (GPU if available)");
        assert!(!DeviceRequest::CPU.may_fall_back());
        assert!(!DeviceRequest::exactly(DevicePreference::Cuda(None)).may_fall_back());
        let json = serde_json::to_string(&DevicePreference::Wgpu(Some(1))).unwrap();
        assert_eq!(json, "\"wgpu:1\"");
        assert_eq!(
            serde_json::from_str::<DevicePreference>(&json).unwrap(),
            DevicePreference::Wgpu(Some(1))
        );
    }
}
