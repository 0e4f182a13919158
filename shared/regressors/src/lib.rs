//! Ridge, Lasso, ElasticNet, RandomForest and PCA with scikit-learn's objectives, parameter names and
//! defaults, multi-output (one target column per horizon). Parameters go builder → checked
//! params → fitted model, and only fitted models predict.
//!
//! The O(n·d²) part — the centred Gram matrix `XᵀX`, `XᵀY` and `Σy²` — runs on the CPU in
//! float64 or on a GPU (cuBLAS in float64 on CUDA, our Gram kernel on wgpu; [`moments`]);
//! the small d×d solves, coordinate descent and eigendecompositions run on the CPU in
//! float64, where they are cheapest. The random
//! forest ([`forest`]) grows histogram trees on the CPU and predicts on the CPU or a GPU.

/// Setters of a parameter builder that wraps its parameters (`Builder(params)`): each
/// `name(value)` sets `params.name` and returns the builder, linfa's style.
macro_rules! param_setters {
    ($builder:ty { $($name:ident: $ty:ty),* $(,)? }) => {
        impl $builder {
            $(
                pub fn $name(mut self, value: $ty) -> Self {
                    self.0.$name = value;
                    self
                }
            )*
        }
    };
}

pub mod error;
pub mod fit;
pub mod forest;
pub mod linalg;
pub mod linear;
#[cfg(feature = "linfa")]
pub mod linfa_bridge;
pub mod matrix;
pub mod moments;
pub mod pca;

pub use error::FitError;
pub use fit::{FitOutcome, fit_forest, fit_linear, fit_pca, linear_moments};
pub use forest::{RandomForest, RandomForestModel};
pub use linear::{ElasticNet, Lasso, LinearKind, LinearModel, LinearParams, Ridge};
#[cfg(feature = "linfa")]
pub use linfa_bridge::{LinfaEstimator, LinfaFitted};
pub use matrix::Matrix;
pub use pca::{FittedPca, Pca};
