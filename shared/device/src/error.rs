//! The typed errors of device work: a backend not built, a device missing or unusable, a job a
//! device cannot serve, or a backend that failed mid-way.

use forexgpt_protocol::BackendKind;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("this build has no {0} support (rebuild with --features {0})")]
    NotBuilt(BackendKind),
    #[error("CUDA is not available: {0}")]
    CudaUnavailable(String),
    #[error("there is no CUDA device {index}: this machine has {count}")]
    NoSuchCudaDevice { index: usize, count: usize },
    #[error("wgpu is not available: {0}")]
    WgpuUnavailable(String),
    #[error("there is no wgpu adapter {index}: this machine has {count} (see `forexgpt devices`)")]
    NoSuchAdapter { index: usize, count: usize },
    #[error("{job} cannot run on {device}: {why}")]
    Unsupported {
        job: String,
        device: String,
        why: String,
    },
    #[error("the {device} backend failed: {message}")]
    BackendFailed { device: String, message: String },
}
