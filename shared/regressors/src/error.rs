//! Why a fit or a prediction was refused.

use forexgpt_device::DeviceError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("{what} is empty ({rows} × {cols})")]
    Empty {
        what: &'static str,
        rows: usize,
        cols: usize,
    },
    #[error("{what} has {value} at row {row}, column {col}; every value must be finite")]
    NonFinite {
        what: &'static str,
        row: usize,
        col: usize,
        value: f64,
    },
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    #[error(
        "column {col} of X is constant ({value}); it carries no information (drop it or check the feature pipeline)"
    )]
    ConstantColumn { col: usize, value: f64 },
    #[error("invalid parameter {name}: {reason}")]
    InvalidParam { name: &'static str, reason: String },
    #[error("the system is singular: {0}")]
    Singular(String),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Forest(#[from] TreesError),
    #[error("cancelled")]
    Cancelled,
    /// An error linfa reported while we were called through its traits (feature `linfa`).
    #[error("linfa: {0}")]
    Linfa(String),
}

/// Why stored trees were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid forest: {0}")]
pub struct TreesError(pub String);
