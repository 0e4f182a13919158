//! Engine errors as the UI shows them: a kind to choose the presentation and the engine's
//! message, which already names the file, line and field where there is one.

use forexgpt_core::store::StoreError;
use forexgpt_engine::EngineError;
use forexgpt_engine::cuda_runtime::CudaFetchError;
use forexgpt_protocol::{AppError, AppErrorKind};

/// The kind of failure an engine error is, from the user's side.
pub fn kind_of(error: &EngineError) -> AppErrorKind {
    match error {
        EngineError::Import(_)
        | EngineError::Features(_)
        | EngineError::Split(_)
        | EngineError::Scaler(_)
        | EngineError::Resample(_)
        | EngineError::InvalidSymbol(_)
        | EngineError::InvalidRequest(_)
        | EngineError::ModelMismatch(_)
        | EngineError::Model(_) => AppErrorKind::InvalidInput,
        EngineError::Store(StoreError::SeriesNotFound { .. })
        | EngineError::UnknownModel { .. }
        | EngineError::NoModels(_) => AppErrorKind::NotFound,
        EngineError::Store(StoreError::Conflict { .. }) => AppErrorKind::InvalidInput,
        EngineError::Export(forexgpt_core::export::ExportError::UnknownFormat { .. }) => {
            AppErrorKind::InvalidInput
        }
        EngineError::Store(_)
        | EngineError::Export(_)
        | EngineError::Artifact(_)
        | EngineError::Network(_)
        | EngineError::Io { .. } => AppErrorKind::Storage,
        EngineError::Device(_) => AppErrorKind::Device,
        EngineError::Cancelled | EngineError::CudaFetch(CudaFetchError::Cancelled) => {
            AppErrorKind::Cancelled
        }
        EngineError::CudaFetch(CudaFetchError::Io { .. } | CudaFetchError::NoDataDir) => {
            AppErrorKind::Storage
        }
        EngineError::CudaFetch(CudaFetchError::BadCudaVersion(_)) => AppErrorKind::InvalidInput,
        EngineError::CudaFetch(_) => AppErrorKind::Device,
    }
}

pub fn from_engine(error: EngineError) -> AppError {
    let message = match &error {
        EngineError::Cancelled => "cancelled: nothing was kept".to_string(),
        EngineError::Store(StoreError::Conflict { .. }) => {
            // The engine's advice names the CLI flag; the app has a checkbox for it.
            error
                .to_string()
                .replace("Use --replace", "Tick \"Replace the stored series\"")
        }
        _ => error.to_string(),
    };
    AppError {
        kind: kind_of(&error),
        message,
    }
}

pub fn not_found(message: String) -> AppError {
    AppError {
        kind: AppErrorKind::NotFound,
        message,
    }
}

/// A job that panicked or could not be joined: a bug, reported instead of crossing the UI
/// boundary as a crash.
pub fn internal(what: &str, cause: impl std::fmt::Display) -> AppError {
    AppError {
        kind: AppErrorKind::Internal,
        message: format!("{what} failed unexpectedly: {cause}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelled_and_unknown_models_have_their_own_kinds() {
        assert_eq!(
            from_engine(EngineError::Cancelled).kind,
            AppErrorKind::Cancelled
        );
        let unknown = from_engine(EngineError::UnknownModel {
            id: "m1".into(),
            dir: "/tmp/models".into(),
        });
        assert_eq!(unknown.kind, AppErrorKind::NotFound);
        assert!(unknown.message.contains("m1"), "{}", unknown.message);
        let bad = from_engine(EngineError::InvalidRequest("no horizons".into()));
        assert_eq!(bad.kind, AppErrorKind::InvalidInput);
    }

    #[test]
    fn cuda_fetch_failures_keep_their_kind_and_message() {
        let cancelled = from_engine(CudaFetchError::Cancelled.into());
        assert_eq!(cancelled.kind, AppErrorKind::Cancelled);
        let corrupt = from_engine(
            CudaFetchError::Checksum {
                file: "nvidia_cuda_crt-13.0.88.whl".into(),
                want: "aa".into(),
                got: "bb".into(),
            }
            .into(),
        );
        assert_eq!(corrupt.kind, AppErrorKind::Device);
        assert!(
            corrupt.message.contains("nvidia_cuda_crt-13.0.88.whl")
                && corrupt.message.contains("nothing was installed"),
            "{}",
            corrupt.message
        );
        let version = from_engine(CudaFetchError::BadCudaVersion("x".into()).into());
        assert_eq!(version.kind, AppErrorKind::InvalidInput);
    }
}
