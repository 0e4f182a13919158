//! The centred second moments of `X` and `Y` — `XᵀX`, `XᵀY`, `Σy²` and the column means —
//! which are all Ridge, Lasso, ElasticNet and PCA need from the data. This is the O(n·d²)
//! work: on the CPU in float64 (rayon over row blocks), or on a GPU through burn (float32
//! products of float64-centred data; on CUDA, burn's matmul uses TF32 tensor cores).

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use forexgpt_device::{BackendJob, ComputeDevice, run_job};
use rayon::prelude::*;

use crate::error::FitError;
use crate::matrix::Matrix;

/// Second moments of (optionally centred) data.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub n: usize,
    pub d: usize,
    pub t: usize,
    /// Column means (zeros when not centring).
    pub x_mean: Vec<f64>,
    pub y_mean: Vec<f64>,
    /// `d × d`, row-major.
    pub gram: Vec<f64>,
    /// `d × t`, row-major.
    pub xty: Vec<f64>,
    /// Per target: `Σ (y − ȳ)²`.
    pub yty: Vec<f64>,
}

/// Rows per parallel block: big enough to amortise, small enough to stay in cache.
const BLOCK_ROWS: usize = 512;

fn column_means(m: &Matrix, center: bool) -> Vec<f64> {
    if !center || m.cols == 0 {
        return vec![0.0; m.cols];
    }
    let sums = m
        .values
        .par_chunks(m.cols * BLOCK_ROWS)
        .map(|block| {
            let mut s = vec![0.0; m.cols];
            for row in block.chunks_exact(m.cols) {
                s.iter_mut().zip(row).for_each(|(a, v)| *a += v);
            }
            s
        })
        .reduce(
            || vec![0.0; m.cols],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    sums.into_iter().map(|s| s / m.rows as f64).collect()
}

/// Float64 moments on the CPU.
pub fn moments_cpu(x: &Matrix, y: &Matrix, center: bool) -> Moments {
    let (n, d, t) = (x.rows, x.cols, y.cols);
    let x_mean = column_means(x, center);
    let y_mean = column_means(y, center);
    let zero = || (vec![0.0; d * d], vec![0.0; d * t], vec![0.0; t]);
    let (gram, xty, yty) = (0..n.div_ceil(BLOCK_ROWS))
        .into_par_iter()
        .map(|b| {
            let (mut g, mut xy, mut yy) = zero();
            let mut xc = vec![0.0; d];
            let mut yc = vec![0.0; t];
            for r in b * BLOCK_ROWS..((b + 1) * BLOCK_ROWS).min(n) {
                xc.iter_mut()
                    .zip(x.row(r))
                    .zip(&x_mean)
                    .for_each(|((c, v), m)| *c = v - m);
                yc.iter_mut()
                    .zip(y.row(r))
                    .zip(&y_mean)
                    .for_each(|((c, v), m)| *c = v - m);
                for i in 0..d {
                    let xi = xc[i];
                    // Upper triangle only; the inner loop is contiguous and vectorises.
                    g[i * d + i..(i + 1) * d]
                        .iter_mut()
                        .zip(&xc[i..])
                        .for_each(|(a, xj)| *a += xi * xj);
                    xy[i * t..(i + 1) * t]
                        .iter_mut()
                        .zip(&yc)
                        .for_each(|(a, yj)| *a += xi * yj);
                }
                yy.iter_mut().zip(&yc).for_each(|(a, v)| *a += v * v);
            }
            (g, xy, yy)
        })
        .reduce(zero, |mut a, b| {
            a.0.iter_mut().zip(&b.0).for_each(|(x, y)| *x += y);
            a.1.iter_mut().zip(&b.1).for_each(|(x, y)| *x += y);
            a.2.iter_mut().zip(&b.2).for_each(|(x, y)| *x += y);
            a
        });
    let mut gram = gram;
    mirror_upper(&mut gram, d);
    Moments {
        n,
        d,
        t,
        x_mean,
        y_mean,
        gram,
        xty,
        yty,
    }
}

fn mirror_upper(g: &mut [f64], d: usize) {
    for i in 0..d {
        for j in 0..i {
            g[i * d + j] = g[j * d + i];
        }
    }
}

/// Centred data as float32, row-major (the GPU's input).
fn centred_f32(m: &Matrix, mean: &[f64]) -> Vec<f32> {
    let mut out = vec![0.0f32; m.values.len()];
    if m.cols == 0 {
        return out;
    }
    out.par_chunks_mut(m.cols * BLOCK_ROWS)
        .zip(m.values.par_chunks(m.cols * BLOCK_ROWS))
        .for_each(|(o, v)| {
            for (oc, vc) in o.chunks_exact_mut(m.cols).zip(v.chunks_exact(m.cols)) {
                oc.iter_mut()
                    .zip(vc)
                    .zip(mean)
                    .for_each(|((o, v), mu)| *o = (v - mu) as f32);
            }
        });
    out
}

struct MomentsJob {
    n: usize,
    d: usize,
    t: usize,
    x: Vec<f32>,
    y: Vec<f32>,
}

impl BackendJob for MomentsJob {
    type Output = (Vec<f32>, Vec<f32>, Vec<f32>);

    fn run<B: Backend>(self, device: &B::Device) -> Self::Output {
        let read = |t: Tensor<B, 2>| t.into_data().to_vec::<f32>().unwrap_or_default();
        let started = std::time::Instant::now();
        let x = Tensor::<B, 2>::from_data(TensorData::new(self.x, [self.n, self.d]), device);
        let y = (self.t > 0)
            .then(|| Tensor::<B, 2>::from_data(TensorData::new(self.y, [self.n, self.t]), device));
        // Synchronised only to report where the time goes (upload vs products).
        let _ = B::sync(device);
        let uploaded = started.elapsed();
        let xt = x.clone().transpose();
        let gram = read(xt.clone().matmul(x));
        // PCA has no targets, and zero-width tensors are best not sent to a GPU.
        let (xty, yty) = match y {
            Some(y) => (read(xt.matmul(y.clone())), read((y.clone() * y).sum_dim(0))),
            None => (Vec::new(), Vec::new()),
        };
        tracing::debug!(
            upload_ms = uploaded.as_secs_f64() * 1e3,
            products_ms = (started.elapsed() - uploaded).as_secs_f64() * 1e3,
            "device moments"
        );
        (gram, xty, yty)
    }
}

/// Moments with the products on `device` (the CPU backend too, in float32).
pub fn moments_on_device(
    device: &ComputeDevice,
    x: &Matrix,
    y: &Matrix,
    center: bool,
) -> Result<Moments, FitError> {
    let (n, d, t) = (x.rows, x.cols, y.cols);
    let started = std::time::Instant::now();
    let x_mean = column_means(x, center);
    let y_mean = column_means(y, center);
    let job = MomentsJob {
        n,
        d,
        t,
        x: centred_f32(x, &x_mean),
        y: centred_f32(y, &y_mean),
    };
    let prepared = started.elapsed();
    let (gram, xty, yty) = run_job(device, job)?;
    tracing::debug!(
        prepare_ms = prepared.as_secs_f64() * 1e3,
        device_ms = (started.elapsed() - prepared).as_secs_f64() * 1e3,
        device = device.label(),
        "moments"
    );
    if gram.len() != d * d || xty.len() != d * t || yty.len() != t {
        return Err(FitError::ShapeMismatch(format!(
            "{} returned moments of the wrong size",
            device.label()
        )));
    }
    let wide = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
    Ok(Moments {
        n,
        d,
        t,
        x_mean,
        y_mean,
        gram: wide(gram),
        xty: wide(xty),
        yty: wide(yty),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_moments_of_a_tiny_matrix() {
        let x = Matrix::new(3, 2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 9.0]).unwrap();
        let y = Matrix::new(3, 1, vec![1.0, 0.0, 2.0]).unwrap();
        let m = moments_cpu(&x, &y, true);
        assert_eq!(m.x_mean, vec![3.0, 5.0]);
        // centred x: (-2,-3), (0,-1), (2,4); centred y: 0, -1, 1
        assert_eq!(m.gram, vec![8.0, 14.0, 14.0, 26.0]);
        assert_eq!(m.xty, vec![2.0, 5.0]);
        assert_eq!(m.yty, vec![2.0]);
        let raw = moments_cpu(&x, &y, false);
        assert_eq!(raw.gram[0], 1.0 + 9.0 + 25.0);
    }
}
