//! PCA with scikit-learn's conventions: centred data, components as rows sorted by explained
//! variance, `explained_variance_` with an `n − 1` denominator, optional whitening. Computed
//! from the covariance (moments on CPU or GPU) and faer's symmetric eigendecomposition. Signs
//! are fixed by each component's largest entry (positive), so a fit is the same on every run;
//! scikit-learn fixes them another way (by the projections), so tests compare subspaces.

use serde::{Deserialize, Serialize};

use forexgpt_device::ComputeDevice;

use crate::error::FitError;
use crate::linalg::symmetric_eigen;
use crate::linear::check_constant_columns;
use crate::matrix::Matrix;
use crate::moments::{moments_cpu, moments_on_device};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcaParams {
    pub n_components: usize,
    pub whiten: bool,
}

pub struct Pca;

impl Pca {
    pub fn params(n_components: usize) -> PcaParamsBuilder {
        PcaParamsBuilder(PcaParams {
            n_components,
            whiten: false,
        })
    }
}

#[derive(Debug, Clone)]
pub struct PcaParamsBuilder(PcaParams);

param_setters!(PcaParamsBuilder { whiten: bool });

impl PcaParamsBuilder {
    pub fn check(self) -> Result<ValidPcaParams, FitError> {
        if self.0.n_components == 0 {
            return Err(FitError::InvalidParam {
                name: "n_components",
                reason: "0 (must be ≥ 1)".into(),
            });
        }
        Ok(ValidPcaParams(self.0))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidPcaParams(PcaParams);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedPca {
    pub params: PcaParams,
    pub mean: Vec<f64>,
    /// `n_components × features`, unit rows.
    pub components: Matrix,
    pub explained_variance: Vec<f64>,
    pub explained_variance_ratio: Vec<f64>,
}

impl ValidPcaParams {
    pub fn n_components(&self) -> usize {
        self.0.n_components
    }

    pub fn fit(&self, x: &Matrix, device: Option<&ComputeDevice>) -> Result<FittedPca, FitError> {
        let started = std::time::Instant::now();
        x.check("X")?;
        let k = self.0.n_components;
        if k > x.cols || k >= x.rows {
            return Err(FitError::InvalidParam {
                name: "n_components",
                reason: format!(
                    "{k} (must be at most min(rows − 1, features) = {})",
                    x.cols.min(x.rows.saturating_sub(1))
                ),
            });
        }
        check_constant_columns(x)?;
        let checked = started.elapsed();
        // PCA needs no targets; a zero-width y keeps one moments routine for all models.
        let none = Matrix {
            rows: x.rows,
            cols: 0,
            values: Vec::new(),
        };
        let m = match device {
            Some(dev) => moments_on_device(dev, x, &none, true)?,
            None => moments_cpu(x, &none, true),
        };
        let products = started.elapsed() - checked;
        let d = m.d;
        let denom = (m.n - 1) as f64;
        let cov: Vec<f64> = m.gram.iter().map(|g| g / denom).collect();
        let total_variance: f64 = (0..d).map(|i| cov[i * d + i]).sum();
        let (values, vectors) = symmetric_eigen(&cov, d);
        let explained_variance: Vec<f64> = values[..k].iter().map(|v| v.max(0.0)).collect();
        let explained_variance_ratio = explained_variance
            .iter()
            .map(|v| v / total_variance)
            .collect();
        let components = Matrix::new(k, d, vectors[..k * d].to_vec())?;
        tracing::debug!(
            check_ms = checked.as_secs_f64() * 1e3,
            moments_ms = products.as_secs_f64() * 1e3,
            eigen_ms = (started.elapsed() - checked - products).as_secs_f64() * 1e3,
            "PCA fit"
        );
        Ok(FittedPca {
            params: self.0.clone(),
            mean: m.x_mean,
            components,
            explained_variance,
            explained_variance_ratio,
        })
    }
}

impl FittedPca {
    /// Projects the rows of `x` onto the components (`rows × n_components`).
    pub fn transform(&self, x: &Matrix) -> Result<Matrix, FitError> {
        x.check_features(self.components.cols)?;
        let k = self.components.rows;
        let mut out = Matrix::zeros(x.rows, k);
        for r in 0..x.rows {
            let row = x.row(r);
            for c in 0..k {
                let mut v: f64 = row
                    .iter()
                    .zip(&self.mean)
                    .zip(self.components.row(c))
                    .map(|((x, m), w)| (x - m) * w)
                    .sum();
                if self.params.whiten {
                    v /= self.explained_variance[c].sqrt().max(f64::MIN_POSITIVE);
                }
                out.values[r * k + c] = v;
            }
        }
        Ok(out)
    }
}
