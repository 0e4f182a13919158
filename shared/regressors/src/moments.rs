//! The centred second moments of `X` and `Y` — `XᵀX`, `XᵀY`, `Σy²` and the column means —
//! which are all Ridge, Lasso, ElasticNet and PCA need from the data. This is the O(n·d²)
//! work: on the CPU in float64 (rayon over row blocks, each block's products by faer); on
//! CUDA in float64 through cuBLAS (rows streamed through pinned memory,
//! `forexgpt_kernels::cublas`); on wgpu by our own kernel (float32 products of
//! float64-centred rows, streamed through mapped staging buffers, `forexgpt_kernels::gram`).

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, ColMut, ColRef, MatMut, MatRef, Par};
use forexgpt_device::{ComputeDevice, DeviceError};
use forexgpt_kernels::cublas::{CrossProducts, FillRows, cuda_cross_products};
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

/// Rows per parallel block of the column passes (means, float32 conversion).
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

/// Rows per block of the CPU products: one centred block (`FAER_BLOCK_ROWS × d` float64, 1 MiB
/// at d = 128) stays in L2 while faer multiplies it into the block's sums.
const FAER_BLOCK_ROWS: usize = 1024;

/// Float64 moments on the CPU: rayon over blocks of rows; each block is centred into a
/// scratch buffer and multiplied into its own sums by faer (`XᵀX` as the upper triangle only),
/// and the blocks' sums are added.
pub fn moments_cpu(x: &Matrix, y: &Matrix, center: bool) -> Moments {
    let (n, d, t) = (x.rows, x.cols, y.cols);
    let x_mean = column_means(x, center);
    let y_mean = column_means(y, center);
    let zero = || (vec![0.0; d * d], vec![0.0; d * t], vec![0.0; t]);
    let (gram, xty, yty) = (0..n.div_ceil(FAER_BLOCK_ROWS))
        .into_par_iter()
        .map(|b| {
            let rows = b * FAER_BLOCK_ROWS..((b + 1) * FAER_BLOCK_ROWS).min(n);
            let r = rows.len();
            let centred = |m: &Matrix, mean: &[f64]| -> Vec<f64> {
                let w = m.cols;
                let mut out = m.values[rows.start * w..rows.end * w].to_vec();
                for row in out.chunks_exact_mut(w.max(1)) {
                    row.iter_mut().zip(mean).for_each(|(v, mu)| *v -= mu);
                }
                out
            };
            let xc = centred(x, &x_mean);
            let yc = centred(y, &y_mean);
            let (mut g, mut xy, mut yy) = zero();
            let xm = MatRef::from_row_major_slice(&xc, r, d);
            triangular::matmul(
                MatMut::from_row_major_slice_mut(&mut g, d, d),
                BlockStructure::TriangularUpper,
                Accum::Replace,
                xm.transpose(),
                BlockStructure::Rectangular,
                xm,
                BlockStructure::Rectangular,
                1.0,
                Par::Seq,
            );
            if t > 0 {
                // One product per target, each on contiguous copies: a target's sums are then
                // the same whether it is fitted alone or with others (faer's kernels depend on
                // the product's width and strides).
                let mut target = vec![0.0; r];
                let mut sums = vec![0.0; d];
                for k in 0..t {
                    target
                        .iter_mut()
                        .zip(yc.chunks_exact(t))
                        .for_each(|(v, row)| *v = row[k]);
                    matmul(
                        ColMut::from_slice_mut(&mut sums),
                        Accum::Replace,
                        xm.transpose(),
                        ColRef::from_slice(&target),
                        1.0,
                        Par::Seq,
                    );
                    xy.chunks_exact_mut(t)
                        .zip(&sums)
                        .for_each(|(row, v)| row[k] = *v);
                }
                for row in yc.chunks_exact(t) {
                    yy.iter_mut().zip(row).for_each(|(a, v)| *a += v * v);
                }
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

/// Moments with the products on `device`: CUDA through cuBLAS in float64, wgpu by our
/// own kernel (float32 pairs), the CPU in float64 ([`moments_cpu`]). A GPU this build has no
/// path for is refused with the reason.
pub fn moments_on_device(
    device: &ComputeDevice,
    x: &Matrix,
    y: &Matrix,
    center: bool,
) -> Result<Moments, FitError> {
    // CUDA goes through cuBLAS in float64 (forexgpt_kernels::cublas says why).
    if device.cuda_index().is_some() {
        return cublas_moments(device, x, y, center);
    }
    // wgpu streams the rows through mapped buffers of our own (forexgpt_kernels::gram).
    #[cfg(feature = "wgpu")]
    if device.backend() == forexgpt_protocol::BackendKind::Wgpu {
        return wgpu_moments(device, x, y, center);
    }
    if device.is_gpu() {
        return Err(FitError::Device(DeviceError::Unsupported {
            job: "the linear models' and PCA's products".into(),
            device: device.label().to_string(),
            why: "this build has no kernels for it".into(),
        }));
    }
    Ok(moments_cpu(x, y, center))
}

/// Moments on a wgpu device: the host centres the rows in float64 and writes them as float32
/// `Z = [x − x̄ | y − ȳ]` straight into the device's staging buffers; one product `ZᵀZ`
/// gives `XᵀX` and `XᵀY` (the float32 inputs' products summed as float32 pairs: float64
/// quality where the device keeps them, [`forexgpt_kernels::gram`] says how). `Σ(y − ȳ)²`
/// stays float64 on the host.
#[cfg(feature = "wgpu")]
fn wgpu_moments(
    device: &ComputeDevice,
    x: &Matrix,
    y: &Matrix,
    center: bool,
) -> Result<Moments, FitError> {
    let (n, d, t) = (x.rows, x.cols, y.cols);
    let started = std::time::Instant::now();
    let x_mean = column_means(x, center);
    let y_mean = column_means(y, center);
    let means = started.elapsed();
    let w = d + t;
    let fill = |rows: std::ops::Range<usize>, out: &mut [f32]| {
        for (r, z) in rows.zip(out.chunks_exact_mut(w)) {
            let (zx, zy) = z.split_at_mut(d);
            for ((o, v), mu) in zx.iter_mut().zip(x.row(r)).zip(&x_mean) {
                *o = (v - mu) as f32;
            }
            for ((o, v), mu) in zy.iter_mut().zip(y.row(r)).zip(&y_mean) {
                *o = (v - mu) as f32;
            }
        }
    };
    let z = forexgpt_kernels::gram::wgpu_gram(device, n, w, &fill)?;
    let products = started.elapsed();
    // Row i of ZᵀZ: XᵀX's row in its first d columns, XᵀY's in the rest.
    let gram: Vec<f64> = z
        .chunks_exact(w)
        .take(d)
        .flat_map(|row| &row[..d])
        .copied()
        .collect();
    let xty: Vec<f64> = z
        .chunks_exact(w)
        .take(d)
        .flat_map(|row| &row[d..])
        .copied()
        .collect();
    let yty = centred_square_sums(y, &y_mean);
    tracing::debug!(
        means_ms = means.as_secs_f64() * 1e3,
        products_ms = (products - means).as_secs_f64() * 1e3,
        total_ms = started.elapsed().as_secs_f64() * 1e3,
        device = device.label(),
        "moments (wgpu)"
    );
    Ok(Moments {
        n,
        d,
        t,
        x_mean,
        y_mean,
        gram,
        xty,
        yty,
    })
}

/// Float64 moments on a CUDA device through cuBLAS. The rows are shifted by the first row
/// (when centring) and carry a trailing column of ones, so the same two products also give
/// the column sums; the shift keeps the correction to the mean, `G − s·sᵀ/n`, free of the
/// cancellation that raw `XᵀX − n·μμᵀ` suffers when a column's mean dwarfs its spread.
fn cublas_moments(
    device: &ComputeDevice,
    x: &Matrix,
    y: &Matrix,
    center: bool,
) -> Result<Moments, FitError> {
    shifted_moments(x, y, center, device.label(), |n, dx, t, fill| {
        Ok(cuda_cross_products(device, n, dx, t, fill)?)
    })
}

/// The host side of [`cublas_moments`], with the products supplied by `products`
/// (`rows, dx, t, fill`), so that the shift and the correction are tested without a GPU.
fn shifted_moments(
    x: &Matrix,
    y: &Matrix,
    center: bool,
    label: &str,
    products: impl FnOnce(usize, usize, usize, &FillRows<'_>) -> Result<CrossProducts, FitError>,
) -> Result<Moments, FitError> {
    let (n, d, t) = (x.rows, x.cols, y.cols);
    let first = |m: &Matrix| match (center, m.rows) {
        (true, 1..) => m.row(0).to_vec(),
        _ => vec![0.0; m.cols],
    };
    let (x_shift, y_shift) = (first(x), first(y));
    let dx = d + 1;
    let fill = |rows: std::ops::Range<usize>, xs: &mut [f64], ys: &mut [f64]| {
        let start = rows.start;
        xs.par_chunks_mut(dx * BLOCK_ROWS)
            .enumerate()
            .for_each(|(b, block)| {
                for (r, out) in block.chunks_exact_mut(dx).enumerate() {
                    let row = x.row(start + b * BLOCK_ROWS + r);
                    for ((o, v), c) in out.iter_mut().zip(row).zip(&x_shift) {
                        *o = v - c;
                    }
                    out[d] = 1.0;
                }
            });
        if t > 0 {
            ys.par_chunks_mut(t * BLOCK_ROWS)
                .enumerate()
                .for_each(|(b, block)| {
                    for (r, out) in block.chunks_exact_mut(t).enumerate() {
                        let row = y.row(start + b * BLOCK_ROWS + r);
                        for ((o, v), c) in out.iter_mut().zip(row).zip(&y_shift) {
                            *o = v - c;
                        }
                    }
                });
        }
    };
    let products = products(n, dx, t, &fill)?;
    if products.xtx.len() != dx * dx || products.xty.len() != dx * t {
        return Err(FitError::ShapeMismatch(format!(
            "{label} returned moments of the wrong size"
        )));
    }
    let (xtx, xty) = (products.xtx, products.xty);
    // Row d of the products holds the column sums of the shifted data.
    let sx: Vec<f64> = (0..d).map(|j| xtx[d * dx + j]).collect();
    let sy: Vec<f64> = (0..t).map(|k| xty[d * t + k]).collect();
    let nf = n as f64;
    let (mut gram, mut cross) = (vec![0.0; d * d], vec![0.0; d * t]);
    for i in 0..d {
        for j in 0..d {
            let correction = if center { sx[i] * sx[j] / nf } else { 0.0 };
            gram[i * d + j] = xtx[i * dx + j] - correction;
        }
        for k in 0..t {
            let correction = if center { sx[i] * sy[k] / nf } else { 0.0 };
            cross[i * t + k] = xty[i * t + k] - correction;
        }
    }
    // Symmetric to the last bit, as the CPU path's mirrored triangle is.
    mirror_upper(&mut gram, d);
    let mean = |shift: &[f64], sums: &[f64]| -> Vec<f64> {
        if center && n > 0 {
            shift.iter().zip(sums).map(|(c, s)| c + s / nf).collect()
        } else {
            vec![0.0; shift.len()]
        }
    };
    let (x_mean, y_mean) = (mean(&x_shift, &sx), mean(&y_shift, &sy));
    let yty = centred_square_sums(y, &y_mean);
    Ok(Moments {
        n,
        d,
        t,
        x_mean,
        y_mean,
        gram,
        xty: cross,
        yty,
    })
}

fn centred_square_sums(m: &Matrix, mean: &[f64]) -> Vec<f64> {
    if m.cols == 0 {
        return Vec::new();
    }
    m.values
        .par_chunks(m.cols * BLOCK_ROWS)
        .map(|block| {
            let mut s = vec![0.0; m.cols];
            for row in block.chunks_exact(m.cols) {
                for ((a, v), mu) in s.iter_mut().zip(row).zip(mean) {
                    *a += (v - mu) * (v - mu);
                }
            }
            s
        })
        .reduce(
            || vec![0.0; m.cols],
            |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What cuBLAS computes, on the host: the products of the filled chunks, summed.
    fn host_products(
        n: usize,
        dx: usize,
        t: usize,
        fill: &FillRows<'_>,
    ) -> Result<CrossProducts, FitError> {
        let (mut xtx, mut xty) = (vec![0.0; dx * dx], vec![0.0; dx * t]);
        let chunk = 7; // uneven on purpose: the last chunk is short
        for start in (0..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            let (mut xs, mut ys) = (
                vec![f64::NAN; (end - start) * dx],
                vec![f64::NAN; (end - start) * t],
            );
            fill(start..end, &mut xs, &mut ys);
            for r in 0..end - start {
                for i in 0..dx {
                    for j in 0..dx {
                        xtx[i * dx + j] += xs[r * dx + i] * xs[r * dx + j];
                    }
                    for k in 0..t {
                        xty[i * t + k] += xs[r * dx + i] * ys[r * t + k];
                    }
                }
            }
        }
        Ok(CrossProducts { xtx, xty })
    }

    #[test]
    fn shifted_products_give_the_cpu_moments_even_for_columns_far_from_zero() {
        // Column 1 sits at 1e6 with a spread of ~1: raw XᵀX − nμμᵀ would lose ~12 digits.
        let n = 50;
        let x = Matrix::new(
            n,
            3,
            (0..n)
                .flat_map(|i| {
                    let f = i as f64;
                    [f.sin(), 1e6 + (f * 0.7).cos(), (f * 0.37).fract()]
                })
                .collect(),
        )
        .unwrap();
        let y = Matrix::new(
            n,
            2,
            (0..n)
                .flat_map(|i| [i as f64 * 0.1 + 3.0, 1.1 + (i as f64).sqrt() * 1e-4])
                .collect(),
        )
        .unwrap();
        for center in [true, false] {
            let want = moments_cpu(&x, &y, center);
            let got = shifted_moments(&x, &y, center, "host", host_products).unwrap();
            let close = |a: &[f64], b: &[f64], what: &str| {
                let scale = b.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
                for (p, q) in a.iter().zip(b) {
                    assert!(
                        (p - q).abs() <= 1e-12 * scale,
                        "{what} (center {center}): {p} vs {q}"
                    );
                }
                assert_eq!(a.len(), b.len(), "{what}");
            };
            close(&got.gram, &want.gram, "XᵀX");
            close(&got.xty, &want.xty, "XᵀY");
            close(&got.yty, &want.yty, "Σy²");
            close(&got.x_mean, &want.x_mean, "x mean");
            close(&got.y_mean, &want.y_mean, "y mean");
            assert_eq!((got.n, got.d, got.t), (n, 3, 2));
        }
        // PCA has no targets.
        let none = Matrix::new(n, 0, Vec::new()).unwrap();
        let got = shifted_moments(&x, &none, true, "host", host_products).unwrap();
        assert_eq!(got.xty.len(), 0);
        assert!(
            got.gram[4] > 0.0 && got.gram[4] < 1e3,
            "centred variance of column 1: {}",
            got.gram[4]
        );
    }

    #[test]
    fn products_of_the_wrong_size_are_refused() {
        let x = Matrix::new(2, 1, vec![1.0, 2.0]).unwrap();
        let y = Matrix::new(2, 1, vec![1.0, 0.0]).unwrap();
        let err = shifted_moments(&x, &y, true, "cuda:0", |_, _, _, _| {
            Ok(CrossProducts {
                xtx: vec![1.0],
                xty: vec![],
            })
        })
        .unwrap_err();
        assert!(err.to_string().contains("cuda:0"), "{err}");
    }

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

    /// Several of faer's blocks (and a ragged last one): the sums of plain float64 loops over
    /// the rows, and a target's sums bit for bit the same alone as beside others.
    #[test]
    fn cpu_moments_over_many_blocks_match_plain_sums() {
        let (n, d, t) = (3 * FAER_BLOCK_ROWS + 77, 6, 3);
        let mut rng = Lcg(11);
        let x = Matrix::new(n, d, (0..n * d).map(|_| rng.next() * 0.01 + 1.1).collect()).unwrap();
        let y = Matrix::new(n, t, (0..n * t).map(|_| rng.next()).collect()).unwrap();
        let m = moments_cpu(&x, &y, true);
        let mean = |v: &Matrix, c: usize| (0..n).map(|r| v.get(r, c)).sum::<f64>() / n as f64;
        let (xm, ym): (Vec<f64>, Vec<f64>) = (
            (0..d).map(|c| mean(&x, c)).collect(),
            (0..t).map(|c| mean(&y, c)).collect(),
        );
        for i in 0..d {
            for j in 0..d {
                let want: f64 = (0..n)
                    .map(|r| (x.get(r, i) - xm[i]) * (x.get(r, j) - xm[j]))
                    .sum();
                let got = m.gram[i * d + j];
                assert!(
                    (got - want).abs() <= 1e-12 * want.abs().max(1e-3),
                    "XᵀX[{i},{j}]: {got} vs {want}"
                );
            }
            for (k, y_mean) in ym.iter().enumerate() {
                let want: f64 = (0..n)
                    .map(|r| (x.get(r, i) - xm[i]) * (y.get(r, k) - y_mean))
                    .sum();
                let got = m.xty[i * t + k];
                assert!(
                    (got - want).abs() <= 1e-12 * want.abs().max(1e-3),
                    "XᵀY[{i},{k}]: {got} vs {want}"
                );
            }
        }
        for k in 0..t {
            let alone = Matrix::new(n, 1, (0..n).map(|r| y.get(r, k)).collect()).unwrap();
            let one = moments_cpu(&x, &alone, true);
            let column: Vec<f64> = (0..d).map(|i| m.xty[i * t + k]).collect();
            assert_eq!(one.xty, column, "target {k} alone");
            assert_eq!(one.yty[0], m.yty[k], "target {k} alone");
            assert_eq!(one.gram, m.gram);
        }
    }

    /// A small deterministic generator of uniform values in [-1, 1).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
    }

    /// The wgpu moments on every wgpu adapter here (lavapipe in CI): float64's moments to
    /// 1e-6 of each block's largest value (float32 products and sums; 2e-7 seen on
    /// lavapipe), over several splits; columns far from zero, as prices are.
    #[cfg(feature = "wgpu")]
    #[test]
    fn wgpu_moments_match_float64() {
        let (n, d, t) = (5000, 7, 2);
        let mut rng = Lcg(5);
        let x = Matrix::new(n, d, (0..n * d).map(|_| rng.next() * 0.01 + 1.1).collect()).unwrap();
        let y = Matrix::new(n, t, (0..n * t).map(|_| rng.next() * 1e-3).collect()).unwrap();
        let exact = moments_cpu(&x, &y, true);
        let devices: Vec<ComputeDevice> = forexgpt_device::testing::test_gpus("wgpu moments")
            .into_iter()
            .filter(|dev| dev.backend() == forexgpt_protocol::BackendKind::Wgpu)
            .collect();
        for dev in devices {
            let m = moments_on_device(&dev, &x, &y, true).unwrap();
            let off = |a: &[f64], b: &[f64]| {
                let scale = b.iter().fold(0.0f64, |s, v| s.max(v.abs()));
                a.iter()
                    .zip(b)
                    .fold(0.0f64, |e, (p, q)| e.max((p - q).abs() / scale))
            };
            let (g, xy) = (off(&m.gram, &exact.gram), off(&m.xty, &exact.xty));
            eprintln!(
                "{}: gram off by {g:e}, xty by {xy:e} (relative)",
                dev.label()
            );
            assert!(g <= 1e-6 && xy <= 1e-6, "{}", dev.label());
            // Means and Σ(y − ȳ)² stay float64 on the host.
            assert_eq!(m.x_mean, exact.x_mean);
            assert!(off(&m.yty, &exact.yty) <= 1e-14, "{}", dev.label());
        }
    }
}
