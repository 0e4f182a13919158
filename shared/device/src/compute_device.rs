//! A resolved device: what the user sees (label, backend, why it differs from the request) and
//! how the backends reach it.

use forexgpt_protocol::{AdapterType, BackendKind, ResolvedDevice};

/// Where work runs: the resolved device (what the user sees) and how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputeDevice {
    pub resolved: ResolvedDevice,
    pub(crate) target: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Cpu,
    Wgpu {
        adapter_type: AdapterType,
        type_index: usize,
    },
    Cuda {
        index: usize,
    },
    /// A GPU that fails every job: fault-injection tests of the fallback paths
    /// ([`DeviceManager::with_failing_gpus`](crate::DeviceManager::with_failing_gpus)).
    Failing,
}

impl ComputeDevice {
    pub fn backend(&self) -> BackendKind {
        self.resolved.backend
    }

    pub fn label(&self) -> &str {
        &self.resolved.label
    }

    pub fn is_gpu(&self) -> bool {
        self.backend() != BackendKind::Cpu
    }

    /// Whether this is a software rasterizer (a wgpu adapter that runs on the CPU, such as
    /// lavapipe).
    pub fn is_software(&self) -> bool {
        matches!(
            self.target,
            Target::Wgpu {
                adapter_type: AdapterType::Cpu,
                ..
            }
        )
    }

    /// The CUDA ordinal, when this is a CUDA device.
    pub fn cuda_index(&self) -> Option<usize> {
        match self.target {
            Target::Cuda { index } => Some(index),
            _ => None,
        }
    }

    pub fn cpu(model: &str) -> ComputeDevice {
        ComputeDevice {
            resolved: cpu_resolved(Some(model)),
            target: Target::Cpu,
        }
    }
}

pub(crate) fn cpu_resolved(model: Option<&str>) -> ResolvedDevice {
    ResolvedDevice {
        backend: BackendKind::Cpu,
        index: 0,
        label: format!("cpu ({})", model.unwrap_or("CPU")),
        fell_back: false,
        notice: None,
        choice: None,
    }
}
