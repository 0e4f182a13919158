//! What only the desktop app's IPC needs: its error shape, job ids and listings that the CLI
//! prints in its own way.

use serde::{Deserialize, Serialize};

use crate::StoredModel;

/// The class of a failed app command, for the UI to choose how to show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppErrorKind {
    /// The request or a file the user chose is wrong (the message names file, line and field).
    InvalidInput,
    /// A series, model or benchmark run that does not exist (any more).
    NotFound,
    /// The user cancelled the job; nothing was kept.
    Cancelled,
    /// A device that was asked for cannot be used.
    Device,
    /// Storage or file-system failure.
    Storage,
    /// A bug: the message says what went wrong where.
    Internal,
}

/// Every app command fails with this: a kind and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppError {
    pub kind: AppErrorKind,
    pub message: String,
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AppError {}

/// Identifies a running job so that the UI can cancel it. Chosen by the UI, unique per window.
pub type JobId = u64;

/// The stored models, and the files in the model folder that could not be read (with why).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    pub models: Vec<StoredModel>,
    pub unreadable: Vec<String>,
}
