//! A dense row-major float64 matrix with the input checks every estimator runs.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::FitError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    /// `rows × cols` values, row-major.
    pub values: Vec<f64>,
}

impl Matrix {
    pub fn new(rows: usize, cols: usize, values: Vec<f64>) -> Result<Matrix, FitError> {
        if values.len() != rows * cols {
            return Err(FitError::ShapeMismatch(format!(
                "{} values do not make a {rows} × {cols} matrix",
                values.len()
            )));
        }
        Ok(Matrix { rows, cols, values })
    }

    pub fn zeros(rows: usize, cols: usize) -> Matrix {
        Matrix {
            rows,
            cols,
            values: vec![0.0; rows * cols],
        }
    }

    pub fn row(&self, r: usize) -> &[f64] {
        &self.values[r * self.cols..(r + 1) * self.cols]
    }

    pub fn get(&self, r: usize, c: usize) -> f64 {
        self.values[r * self.cols + c]
    }

    /// The input check of every fitted model: finite values and the feature count it was fit on.
    pub fn check_features(&self, fitted_cols: usize) -> Result<(), FitError> {
        self.check("X")?;
        if self.cols != fitted_cols {
            return Err(FitError::ShapeMismatch(format!(
                "X has {} columns but the model was fit on {fitted_cols}",
                self.cols
            )));
        }
        Ok(())
    }

    /// Rejects empty matrices and NaN/inf, naming the first bad cell.
    pub fn check(&self, what: &'static str) -> Result<(), FitError> {
        if self.rows == 0 || self.cols == 0 {
            return Err(FitError::Empty {
                what,
                rows: self.rows,
                cols: self.cols,
            });
        }
        // In parallel: a million rows of 128 features take ~100 ms on one thread, as long as
        // the GPU needs for the whole fit. The first offender is still the one reported.
        if let Some(k) = self.values.par_iter().position_first(|v| !v.is_finite()) {
            return Err(FitError::NonFinite {
                what,
                row: k / self.cols,
                col: k % self.cols,
                value: self.values[k],
            });
        }
        Ok(())
    }
}
