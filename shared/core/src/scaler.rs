//! A standard scaler (zero mean, unit variance per column) fit on the training rows only and
//! saved with the model, with scikit-learn's `StandardScaler` conventions: population
//! standard deviation, and a scale of 1 for constant columns.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandardScaler {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScalerError {
    #[error("cannot fit a scaler on zero rows")]
    NoRows,
    #[error("the matrix has {got} columns but the scaler was fit on {expected}")]
    ColumnMismatch { expected: usize, got: usize },
}

impl StandardScaler {
    /// Fits on the row-major `values` (`n_cols` columns), restricted to rows `rows`.
    pub fn fit(
        values: &[f64],
        n_cols: usize,
        rows: std::ops::Range<usize>,
    ) -> Result<Self, ScalerError> {
        let n = rows.len();
        if n == 0 || n_cols == 0 {
            return Err(ScalerError::NoRows);
        }
        let mut mean = vec![0.0; n_cols];
        for r in rows.clone() {
            for (m, v) in mean.iter_mut().zip(&values[r * n_cols..(r + 1) * n_cols]) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0; n_cols];
        for r in rows {
            for ((s, v), m) in var
                .iter_mut()
                .zip(&values[r * n_cols..(r + 1) * n_cols])
                .zip(&mean)
            {
                *s += (v - m) * (v - m);
            }
        }
        let scale = var
            .iter()
            .zip(&mean)
            .map(|(s, m)| {
                let std = (s / n as f64).sqrt();
                // Constant columns (up to rounding) keep their values' scale, as scikit-learn does.
                if std <= 10.0 * f64::EPSILON * m.abs().max(1.0) {
                    1.0
                } else {
                    std
                }
            })
            .collect();
        Ok(StandardScaler { mean, scale })
    }

    /// Scales row-major `values` in place.
    pub fn transform(&self, values: &mut [f64]) -> Result<(), ScalerError> {
        let n_cols = self.mean.len();
        if n_cols == 0 || !values.len().is_multiple_of(n_cols) {
            return Err(ScalerError::ColumnMismatch {
                expected: n_cols,
                got: values.len(),
            });
        }
        for row in values.chunks_exact_mut(n_cols) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
                *v = (*v - m) / s;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_on_train_rows_only() {
        // Two columns; the last row is far away and must not influence the fit.
        let values = [1.0, 5.0, 3.0, 5.0, 1000.0, 5.0];
        let scaler = StandardScaler::fit(&values, 2, 0..2).unwrap();
        assert_eq!(scaler.mean, vec![2.0, 5.0]);
        assert_eq!(scaler.scale, vec![1.0, 1.0]); // std of [1, 3] is 1; constant column → 1
        let mut x = values.to_vec();
        scaler.transform(&mut x).unwrap();
        assert_eq!(&x[..4], &[-1.0, 0.0, 1.0, 0.0]);
        assert!(StandardScaler::fit(&values, 2, 0..0).is_err());
        assert!(scaler.transform(&mut [1.0, 2.0, 3.0]).is_err());
    }

    #[test]
    fn serializes() {
        let s = StandardScaler {
            mean: vec![1.0],
            scale: vec![2.0],
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<StandardScaler>(&json).unwrap(), s);
    }
}
