//! Ridge, Lasso and ElasticNet with scikit-learn's objectives, parameter names and defaults.
//!
//! - Ridge: `‖y − Xw − b‖² + alpha·‖w‖²`, solved exactly (Cholesky of `XᵀX + alpha·I`), as
//!   scikit-learn's default `cholesky` solver does for dense data.
//! - ElasticNet: `1/(2n)·‖y − Xw − b‖² + alpha·l1_ratio·‖w‖₁ + alpha·(1 − l1_ratio)/2·‖w‖²`;
//!   Lasso is `l1_ratio = 1`. Cyclic coordinate descent on the Gram matrix with
//!   scikit-learn's stopping rule (a coordinate step below `tol`, then a duality gap below
//!   `tol·‖y‖²`), so both stop at the same place.
//!
//! Own code rather than linfa: linfa-elasticnet scales the penalty differently and has no
//! Gram formulation to feed from a GPU; linfa's ridge lives in linfa-linear without
//! multi-output. With the moments computed (CPU or GPU), everything here is O(d²·t) per sweep.

use serde::{Deserialize, Serialize};

use forexgpt_device::ComputeDevice;

use crate::error::FitError;
use crate::linalg::cholesky_solve;
use crate::matrix::Matrix;
use crate::moments::{Moments, moments_cpu, moments_on_device};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinearKind {
    Ridge,
    Lasso,
    ElasticNet,
}

/// Parameters, named as in scikit-learn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearParams {
    pub kind: LinearKind,
    pub alpha: f64,
    /// ElasticNet only (Lasso: 1).
    pub l1_ratio: f64,
    pub fit_intercept: bool,
    /// Lasso / ElasticNet only.
    pub max_iter: usize,
    /// Lasso / ElasticNet only.
    pub tol: f64,
}

/// `Ridge::params()`, `Lasso::params()`, `ElasticNet::params()`: scikit-learn's defaults.
pub struct Ridge;
pub struct Lasso;
pub struct ElasticNet;

impl Ridge {
    pub fn params() -> LinearParamsBuilder {
        LinearParamsBuilder(LinearParams {
            kind: LinearKind::Ridge,
            alpha: 1.0,
            l1_ratio: 0.0,
            fit_intercept: true,
            max_iter: 1000,
            tol: 1e-4,
        })
    }
}

impl Lasso {
    pub fn params() -> LinearParamsBuilder {
        LinearParamsBuilder(LinearParams {
            kind: LinearKind::Lasso,
            alpha: 1.0,
            l1_ratio: 1.0,
            fit_intercept: true,
            max_iter: 1000,
            tol: 1e-4,
        })
    }
}

impl ElasticNet {
    pub fn params() -> LinearParamsBuilder {
        LinearParamsBuilder(LinearParams {
            kind: LinearKind::ElasticNet,
            alpha: 1.0,
            l1_ratio: 0.5,
            fit_intercept: true,
            max_iter: 1000,
            tol: 1e-4,
        })
    }
}

/// Unchecked parameters; [`check`](Self::check) validates them once.
#[derive(Debug, Clone)]
pub struct LinearParamsBuilder(LinearParams);

param_setters!(LinearParamsBuilder {
    alpha: f64,
    l1_ratio: f64,
    fit_intercept: bool,
    max_iter: usize,
    tol: f64,
});

impl LinearParamsBuilder {
    pub fn check(self) -> Result<ValidLinearParams, FitError> {
        let p = self.0;
        let bad = |name: &'static str, reason: String| Err(FitError::InvalidParam { name, reason });
        if !(p.alpha >= 0.0 && p.alpha.is_finite()) {
            return bad(
                "alpha",
                format!("{} (must be a finite number ≥ 0)", p.alpha),
            );
        }
        if p.kind == LinearKind::ElasticNet && !(0.0..=1.0).contains(&p.l1_ratio) {
            return bad("l1_ratio", format!("{} (must be in [0, 1])", p.l1_ratio));
        }
        if p.kind != LinearKind::Ridge && p.max_iter == 0 {
            return bad("max_iter", "0 (must be ≥ 1)".into());
        }
        if p.kind != LinearKind::Ridge && !(p.tol > 0.0 && p.tol.is_finite()) {
            return bad("tol", format!("{} (must be > 0)", p.tol));
        }
        Ok(ValidLinearParams(p))
    }
}

/// Checked parameters, ready to fit.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidLinearParams(LinearParams);

/// A fitted linear model; only this type can predict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    pub params: LinearParams,
    /// `targets × features`, like scikit-learn's `coef_`.
    pub coef: Matrix,
    pub intercept: Vec<f64>,
    /// Coordinate-descent sweeps per target (0 for Ridge).
    pub n_iter: Vec<usize>,
    /// Targets whose coordinate descent stopped at `max_iter` before the duality gap was met.
    pub not_converged: Vec<usize>,
}

/// Checks `x` and `y` as every estimator does.
pub fn check_xy(x: &Matrix, y: &Matrix) -> Result<(), FitError> {
    x.check("X")?;
    y.check("y")?;
    if x.rows != y.rows {
        return Err(FitError::ShapeMismatch(format!(
            "X has {} rows but y has {}",
            x.rows, y.rows
        )));
    }
    check_constant_columns(x)
}

pub fn check_constant_columns(x: &Matrix) -> Result<(), FitError> {
    for (col, &value) in x.row(0).iter().enumerate() {
        if (1..x.rows).all(|r| x.get(r, col) == value) {
            return Err(FitError::ConstantColumn { col, value });
        }
    }
    Ok(())
}

impl ValidLinearParams {
    pub fn params(&self) -> &LinearParams {
        &self.0
    }

    /// Fits on the CPU (float64), or with the products on `device`.
    pub fn fit(
        &self,
        x: &Matrix,
        y: &Matrix,
        device: Option<&ComputeDevice>,
    ) -> Result<LinearModel, FitError> {
        let started = std::time::Instant::now();
        check_xy(x, y)?;
        let checked = started.elapsed();
        let moments = match device {
            Some(d) => moments_on_device(d, x, y, self.0.fit_intercept)?,
            None => moments_cpu(x, y, self.0.fit_intercept),
        };
        let products = started.elapsed() - checked;
        let model = self.fit_moments(&moments);
        tracing::debug!(
            check_ms = checked.as_secs_f64() * 1e3,
            moments_ms = products.as_secs_f64() * 1e3,
            solve_ms = (started.elapsed() - checked - products).as_secs_f64() * 1e3,
            "linear fit"
        );
        model
    }

    /// Fits from precomputed moments (centred when `fit_intercept`).
    pub fn fit_moments(&self, m: &Moments) -> Result<LinearModel, FitError> {
        let p = &self.0;
        let (d, t) = (m.d, m.t);
        let mut w = vec![0.0; d * t]; // d × t
        let mut n_iter = vec![0; t];
        let mut not_converged = Vec::new();
        match p.kind {
            LinearKind::Ridge => {
                let mut a = m.gram.clone();
                for i in 0..d {
                    a[i * d + i] += p.alpha;
                }
                w = cholesky_solve(&a, &m.xty, d, t)?;
            }
            LinearKind::Lasso | LinearKind::ElasticNet => {
                let n = m.n as f64;
                let l1 = p.alpha * p.l1_ratio * n;
                let l2 = p.alpha * (1.0 - p.l1_ratio) * n;
                for k in 0..t {
                    let q: Vec<f64> = (0..d).map(|i| m.xty[i * t + k]).collect();
                    let fit =
                        coordinate_descent(&m.gram, &q, m.yty[k], d, l1, l2, p.max_iter, p.tol);
                    n_iter[k] = fit.sweeps;
                    if !fit.converged {
                        not_converged.push(k);
                    }
                    for i in 0..d {
                        w[i * t + k] = fit.w[i];
                    }
                }
            }
        }
        let mut coef = Matrix::zeros(t, d);
        for i in 0..d {
            for k in 0..t {
                coef.values[k * d + i] = w[i * t + k];
            }
        }
        let intercept = (0..t)
            .map(|k| {
                if p.fit_intercept {
                    m.y_mean[k] - (0..d).map(|i| m.x_mean[i] * coef.get(k, i)).sum::<f64>()
                } else {
                    0.0
                }
            })
            .collect();
        if !not_converged.is_empty() {
            tracing::warn!(targets = ?not_converged, max_iter = p.max_iter, "coordinate descent did not converge; raise max_iter or tol");
        }
        Ok(LinearModel {
            params: p.clone(),
            coef,
            intercept,
            n_iter,
            not_converged,
        })
    }
}

struct CdFit {
    w: Vec<f64>,
    sweeps: usize,
    converged: bool,
}

/// scikit-learn's `enet_coordinate_descent_gram` (cyclic), for one target: minimises
/// `½wᵀGw − qᵀw + l1·‖w‖₁ + ½·l2·‖w‖²` (the objective times n).
#[allow(clippy::too_many_arguments)]
fn coordinate_descent(
    g: &[f64],
    q: &[f64],
    y_norm2: f64,
    d: usize,
    l1: f64,
    l2: f64,
    max_iter: usize,
    tol: f64,
) -> CdFit {
    let mut w = vec![0.0; d];
    let mut gw = vec![0.0; d];
    let gap_tol = tol * y_norm2;
    for sweep in 0..max_iter {
        let (mut w_max, mut dw_max) = (0.0f64, 0.0f64);
        for j in 0..d {
            let gjj = g[j * d + j];
            if gjj == 0.0 {
                continue;
            }
            let old = w[j];
            let tmp = q[j] - gw[j] + gjj * old;
            let new = tmp.signum() * (tmp.abs() - l1).max(0.0) / (gjj + l2);
            if new != old {
                let delta = new - old;
                // G is symmetric: column j is row j.
                gw.iter_mut()
                    .zip(&g[j * d..(j + 1) * d])
                    .for_each(|(a, gj)| *a += delta * gj);
                w[j] = new;
            }
            dw_max = dw_max.max((new - old).abs());
            w_max = w_max.max(new.abs());
        }
        let last = sweep + 1 == max_iter;
        if w_max == 0.0 || dw_max / w_max < tol || last {
            if duality_gap(&w, &gw, q, y_norm2, l1, l2) < gap_tol {
                return CdFit {
                    w,
                    sweeps: sweep + 1,
                    converged: true,
                };
            }
            if last {
                return CdFit {
                    w,
                    sweeps: sweep + 1,
                    converged: false,
                };
            }
        }
    }
    CdFit {
        w,
        sweeps: max_iter,
        converged: false,
    }
}

fn duality_gap(w: &[f64], gw: &[f64], q: &[f64], y_norm2: f64, l1: f64, l2: f64) -> f64 {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let q_dot_w = dot(q, w);
    let dual_norm = q
        .iter()
        .zip(gw)
        .zip(w)
        .map(|((qi, gwi), wi)| (qi - gwi - l2 * wi).abs())
        .fold(0.0, f64::max);
    let r_norm2 = y_norm2 - 2.0 * q_dot_w + dot(w, gw);
    let w_norm2 = dot(w, w);
    let (scale, mut gap) = if dual_norm > l1 {
        let c = l1 / dual_norm;
        (c, 0.5 * (r_norm2 + r_norm2 * c * c))
    } else {
        (1.0, r_norm2)
    };
    let l1_norm: f64 = w.iter().map(|v| v.abs()).sum();
    gap += l1 * l1_norm - scale * (y_norm2 - q_dot_w) + 0.5 * l2 * (1.0 + scale * scale) * w_norm2;
    gap
}

impl LinearModel {
    /// Predictions for the rows of `x` (`rows × targets`).
    pub fn predict(&self, x: &Matrix) -> Result<Matrix, FitError> {
        x.check_features(self.coef.cols)?;
        let t = self.coef.rows;
        let mut out = Matrix::zeros(x.rows, t);
        for r in 0..x.rows {
            let row = x.row(r);
            for k in 0..t {
                out.values[r * t + k] = self.intercept[k]
                    + row
                        .iter()
                        .zip(self.coef.row(k))
                        .map(|(a, b)| a * b)
                        .sum::<f64>();
            }
        }
        Ok(out)
    }
}
