//! The one error type front ends show to users.

use forexgpt_core::export::ExportError;
use forexgpt_core::features::FeatureError;
use forexgpt_core::import::ImportError;
use forexgpt_core::resample::ResampleError;
use forexgpt_core::scaler::ScalerError;
use forexgpt_core::split::SplitError;
use forexgpt_core::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Features(#[from] FeatureError),
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error(transparent)]
    Scaler(#[from] ScalerError),
    #[error(transparent)]
    Resample(#[from] ResampleError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("invalid symbol '{0}': use 1–20 letters, digits, '.', '_' or '-' (e.g. EURUSD)")]
    InvalidSymbol(String),
    #[error(transparent)]
    Model(#[from] forexgpt_regressors::FitError),
    #[error("the encoder network does not fit its configuration: {0}")]
    Network(#[from] forexgpt_models::WeightsError),
    #[error(transparent)]
    Artifact(#[from] crate::artifact::ArtifactError),
    #[error(transparent)]
    Device(#[from] forexgpt_device::DeviceError),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("no model '{id}' in {dir}")]
    UnknownModel { id: String, dir: String },
    #[error("no stored models match: {0}")]
    NoModels(String),
    #[error("these models cannot forecast together: {0}")]
    ModelMismatch(String),
    #[error("cancelled")]
    Cancelled,
    /// Fetching NVRTC and the CUDA headers failed (nothing was installed).
    #[error(transparent)]
    CudaFetch(#[from] crate::cuda_runtime::CudaFetchError),
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
}

impl EngineError {
    /// The device failure behind this error, if it is one: what lets the placement path move
    /// work to the CPU under "if available".
    pub fn device_failure(&self) -> Option<&forexgpt_device::DeviceError> {
        match self {
            EngineError::Device(e)
            | EngineError::Model(forexgpt_regressors::FitError::Device(e)) => Some(e),
            _ => None,
        }
    }
}
