//! A standard scaler (zero mean, unit variance per column) fit on the training rows only and
//! saved with the model, with scikit-learn's `StandardScaler` conventions: population
//! standard deviation, and a scale of 1 for constant columns. A model's scaler also leaves out
//! the columns that were constant on its training rows ([`StandardScaler::fit_dropping_constant`]).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandardScaler {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// Input columns left out of the output (ascending): constant on the rows the scaler was
    /// fit on, so they carry no information and a model never reads them. Empty in files
    /// written before columns were dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<usize>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScalerError {
    #[error("cannot fit a scaler on zero rows")]
    NoRows,
    #[error("the matrix has {got} columns but the scaler was fit on {expected}")]
    ColumnMismatch { expected: usize, got: usize },
    #[error("every one of the {0} columns is constant on the training rows")]
    AllConstant(usize),
}

impl StandardScaler {
    /// The fit itself, noting the constant columns in `dropped`.
    fn fit_dropping_constant_unchecked(
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
        let mut dropped = Vec::new();
        let scale = var
            .iter()
            .zip(&mean)
            .enumerate()
            .map(|(j, (s, m))| {
                let std = (s / n as f64).sqrt();
                // Constant columns (up to rounding) keep their values' scale, as scikit-learn does.
                if std <= 10.0 * f64::EPSILON * m.abs().max(1.0) {
                    dropped.push(j);
                    1.0
                } else {
                    std
                }
            })
            .collect();
        Ok(StandardScaler {
            mean,
            scale,
            dropped,
        })
    }

    /// Fits on the row-major `values` (`n_cols` columns), restricted to rows `rows`, and
    /// keeps every column, as scikit-learn does.
    pub fn fit(
        values: &[f64],
        n_cols: usize,
        rows: std::ops::Range<usize>,
    ) -> Result<Self, ScalerError> {
        let mut scaler = StandardScaler::fit_dropping_constant_unchecked(values, n_cols, rows)?;
        scaler.dropped.clear();
        Ok(scaler)
    }

    /// Fits like [`StandardScaler::fit`] and leaves the columns that are constant on `rows`
    /// out of the output (listed in `dropped`), so that no estimator downstream sees a column
    /// without information. Refused when nothing would be left.
    pub fn fit_dropping_constant(
        values: &[f64],
        n_cols: usize,
        rows: std::ops::Range<usize>,
    ) -> Result<Self, ScalerError> {
        let scaler = StandardScaler::fit_dropping_constant_unchecked(values, n_cols, rows)?;
        if scaler.n_out() == 0 {
            return Err(ScalerError::AllConstant(n_cols));
        }
        Ok(scaler)
    }

    /// Columns the scaler reads.
    pub fn n_in(&self) -> usize {
        self.mean.len()
    }

    /// Columns it writes: the input's without the dropped ones.
    pub fn n_out(&self) -> usize {
        self.mean.len() - self.dropped.len()
    }

    /// Scales row-major `values` (`n_in` columns) into `n_out` columns.
    pub fn transform(&self, values: &[f64]) -> Result<Vec<f64>, ScalerError> {
        let n_cols = self.n_in();
        if n_cols == 0 || !values.len().is_multiple_of(n_cols) {
            return Err(ScalerError::ColumnMismatch {
                expected: n_cols,
                got: values.len(),
            });
        }
        let rows = values.len() / n_cols;
        let mut out = Vec::with_capacity(rows * self.n_out());
        let mut kept = vec![true; n_cols];
        for &j in &self.dropped {
            if let Some(k) = kept.get_mut(j) {
                *k = false;
            }
        }
        for row in values.chunks_exact(n_cols) {
            for (((v, m), s), keep) in row.iter().zip(&self.mean).zip(&self.scale).zip(&kept) {
                if *keep {
                    out.push((v - m) / s);
                }
            }
        }
        Ok(out)
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
        let x = scaler.transform(&values).unwrap();
        assert_eq!(&x[..4], &[-1.0, 0.0, 1.0, 0.0]);
        assert!(StandardScaler::fit(&values, 2, 0..0).is_err());
        assert!(scaler.transform(&[1.0, 2.0, 3.0]).is_err());
    }

    #[test]
    fn constant_training_columns_are_left_out_of_the_output() {
        // Column 1 is constant on the first two rows (the fit rows) but not later: it is
        // dropped everywhere, so a model never reads what it could not learn from.
        let values = [1.0, 5.0, 7.0, 3.0, 5.0, 9.0, 1000.0, 6.0, 8.0];
        let scaler = StandardScaler::fit_dropping_constant(&values, 3, 0..2).unwrap();
        assert_eq!(scaler.dropped, vec![1]);
        assert_eq!((scaler.n_in(), scaler.n_out()), (3, 2));
        let x = scaler.transform(&values).unwrap();
        assert_eq!(&x[..4], &[-1.0, -1.0, 1.0, 1.0]);
        assert_eq!(x.len(), 6);
        let all_constant = [2.0, 2.0, 2.0, 2.0];
        assert_eq!(
            StandardScaler::fit_dropping_constant(&all_constant, 2, 0..2),
            Err(ScalerError::AllConstant(2))
        );
        // scikit-learn's convention when asked: every column kept.
        assert!(
            StandardScaler::fit(&all_constant, 2, 0..2)
                .unwrap()
                .dropped
                .is_empty()
        );
    }

    #[test]
    fn serializes() {
        let s = StandardScaler {
            mean: vec![1.0],
            scale: vec![2.0],
            dropped: Vec::new(),
        };
        let json = serde_json::to_string(&s).unwrap();
        // Files written before `dropped` existed read as dropping nothing.
        assert_eq!(json, r#"{"mean":[1.0],"scale":[2.0]}"#);
        assert_eq!(serde_json::from_str::<StandardScaler>(&json).unwrap(), s);
    }
}
