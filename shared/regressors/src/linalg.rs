//! Small dense float64 linear algebra for d × d systems (d = number of features, ~100):
//! Cholesky solves and the cyclic Jacobi eigenvalue method. The O(n·d²) work happens before,
//! in [`crate::moments`]; these are O(d³) and cheap.

use crate::error::FitError;

/// Solves `A X = B` for symmetric positive definite `A` (`d × d`) and `B` (`d × t`),
/// both row-major; returns `X` (`d × t`).
pub fn cholesky_solve(a: &[f64], b: &[f64], d: usize, t: usize) -> Result<Vec<f64>, FitError> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut sum = a[i * d + j];
            for k in 0..j {
                sum -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if sum <= 0.0 || !sum.is_finite() {
                    return Err(FitError::Singular(format!(
                        "the Gram matrix is not positive definite at column {i} (pivot {sum:e}); use alpha > 0 or drop collinear features"
                    )));
                }
                l[i * d + i] = sum.sqrt();
            } else {
                l[i * d + j] = sum / l[j * d + j];
            }
        }
    }
    let mut x = b.to_vec();
    for c in 0..t {
        // Forward: L z = b.
        for i in 0..d {
            let mut sum = x[i * t + c];
            for k in 0..i {
                sum -= l[i * d + k] * x[k * t + c];
            }
            x[i * t + c] = sum / l[i * d + i];
        }
        // Backward: Lᵀ x = z.
        for i in (0..d).rev() {
            let mut sum = x[i * t + c];
            for k in i + 1..d {
                sum -= l[k * d + i] * x[k * t + c];
            }
            x[i * t + c] = sum / l[i * d + i];
        }
    }
    Ok(x)
}

/// Eigenvalues (descending) and unit eigenvectors (rows of the returned `d × d` matrix) of the
/// symmetric matrix `a`, by cyclic Jacobi rotations, accurate to rounding for well-separated
/// and clustered eigenvalues alike.
pub fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    let norm: f64 = m.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * d + j].powi(2))
            .sum();
        if off.sqrt() <= 1e-15 * norm.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = m[p * d + q];
                if apq.abs() <= f64::MIN_POSITIVE {
                    continue;
                }
                let theta = (m[q * d + q] - m[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (mkp, mkq) = (m[k * d + p], m[k * d + q]);
                    m[k * d + p] = c * mkp - s * mkq;
                    m[k * d + q] = s * mkp + c * mkq;
                }
                for k in 0..d {
                    let (mpk, mqk) = (m[p * d + k], m[q * d + k]);
                    m[p * d + k] = c * mpk - s * mqk;
                    m[q * d + k] = s * mpk + c * mqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&i, &j| m[j * d + j].total_cmp(&m[i * d + i]));
    let values = order.iter().map(|&i| m[i * d + i]).collect();
    // Columns of v are eigenvectors; return them as rows.
    let vectors = order
        .iter()
        .flat_map(|&i| (0..d).map(move |k| (k, i)))
        .map(|(k, i)| v[k * d + i])
        .collect();
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_known_system() {
        // A = [[4, 2], [2, 3]], x = [1, -1] → b = [2, -1]
        let x = cholesky_solve(&[4.0, 2.0, 2.0, 3.0], &[2.0, -1.0], 2, 1).unwrap();
        assert!(
            (x[0] - 1.0).abs() < 1e-14 && (x[1] + 1.0).abs() < 1e-14,
            "{x:?}"
        );
        assert!(matches!(
            cholesky_solve(&[1.0, 1.0, 1.0, 1.0], &[1.0, 1.0], 2, 1),
            Err(FitError::Singular(_))
        ));
    }

    #[test]
    fn eigen_of_a_known_matrix() {
        // [[2, 1], [1, 2]] has eigenvalues 3 and 1 with vectors (1, 1)/√2 and (1, −1)/√2.
        let (values, vectors) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((values[0] - 3.0).abs() < 1e-14 && (values[1] - 1.0).abs() < 1e-14);
        let r = std::f64::consts::FRAC_1_SQRT_2;
        assert!((vectors[0].abs() - r).abs() < 1e-14 && (vectors[0] - vectors[1]).abs() < 1e-14);
        assert!((vectors[2] + vectors[3]).abs() < 1e-14);
    }
}
