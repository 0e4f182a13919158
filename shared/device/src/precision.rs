//! Float32 accuracy from TF32 tensor cores. burn's CUDA matmul (cubecl) runs float32 inputs
//! through TF32, which keeps 11 significant bits; nothing in cubecl 0.10 turns that off. Each
//! operand is split into a high part that TF32 holds exactly and the low remainder, and the
//! product is recombined from three tensor-core products: `a·b ≈ ah·bh + ah·bl + al·bh`
//! (`al·bl` is below float32 rounding).
//!
//! Measured on an H100 (docs/benchmarks.md): on 1M×128 Gram matrices the split halves the
//! error against float64 (ridge 3.1e-4 → 1.6e-4, PCA 3.2e-3 → 6.2e-4); on small products it
//! changes little, so the tensor cores' accumulation, not only their input rounding, limits
//! accuracy there. Plain float32 (wgpu) reaches 1.3e-5 on the same data.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// Per-column power-of-two scales `s` with `|x·s| ≤ 1024` for the column's largest magnitude,
/// so that `round(x·s)/s` has at most 11 significant bits.
pub fn split_scales(max_abs: &[f32]) -> Vec<f32> {
    max_abs
        .iter()
        .map(|&m| {
            if m > 0.0 && m.is_finite() {
                (10 - m.log2().ceil() as i32).clamp(-120, 120)
            } else {
                0
            }
        })
        .map(|e| 2f32.powi(e))
        .collect()
}

/// The largest magnitude of each column of a row-major matrix with `cols` columns.
pub fn column_max_abs(values: &[f32], cols: usize) -> Vec<f32> {
    let mut max = vec![0.0f32; cols];
    for row in values.chunks_exact(cols.max(1)) {
        for (m, v) in max.iter_mut().zip(row) {
            *m = m.max(v.abs());
        }
    }
    max
}

/// `(hi, lo)` with `hi = round(x·s)·(1/s)` exact in TF32 and `lo = x − hi`, `s` per column
/// (last dimension).
pub fn split_tf32<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    scales: &[f32],
    device: &B::Device,
) -> (Tensor<B, D>, Tensor<B, D>) {
    let width = scales.len();
    let mut shape = [1usize; D];
    shape[D - 1] = width;
    let inverse: Vec<f32> = scales.iter().map(|s| 1.0 / s).collect();
    let s =
        Tensor::<B, 1>::from_data(TensorData::new(scales.to_vec(), [width]), device).reshape(shape);
    let inv = Tensor::<B, 1>::from_data(TensorData::new(inverse, [width]), device).reshape(shape);
    let hi = (x.clone() * s).round() * inv;
    let lo = x - hi.clone();
    (hi, lo)
}

/// `a·b` (batched over leading dimensions) to float32 accuracy on TF32 hardware, given each
/// operand's per-column split scales; a plain matmul when `scales` is `None`.
pub fn matmul_split<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
    scales: Option<(&[f32], &[f32])>,
    device: &B::Device,
) -> Tensor<B, D> {
    match scales {
        None => a.matmul(b),
        Some((sa, sb)) => {
            let (ah, al) = split_tf32(a, sa, device);
            let (bh, bl) = split_tf32(b, sb, device);
            ah.clone().matmul(bh.clone()) + ah.matmul(bl) + al.matmul(bh)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBackend;

    #[test]
    fn the_high_part_keeps_11_bits_and_the_parts_add_up() {
        let values = [0.123_456_79f32, -3.0e-4, 7.777_777, 1.0e-9, -0.999_999_9];
        let max: Vec<f32> = values.iter().map(|v| v.abs()).collect();
        for (v, s) in values.iter().zip(split_scales(&max)) {
            let scaled = (v * s).round();
            assert!(scaled.abs() <= 1024.0, "{v}: {scaled}");
            let hi = scaled * (1.0 / s);
            assert_eq!(hi + (v - hi), *v);
            assert!((v - hi).abs() <= 0.5 / s, "{v}");
        }
    }

    #[test]
    fn a_split_product_equals_the_plain_one_without_tf32() {
        let device = burn::backend::flex::FlexDevice;
        let a: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..8).map(|i| (i as f32 * 1.3).cos() * 100.0).collect();
        let (sa, sb) = (
            split_scales(&column_max_abs(&a, 4)),
            split_scales(&column_max_abs(&b, 2)),
        );
        let ta = Tensor::<CpuBackend, 2>::from_data(TensorData::new(a, [3, 4]), &device);
        let tb = Tensor::<CpuBackend, 2>::from_data(TensorData::new(b, [4, 2]), &device);
        let plain = ta
            .clone()
            .matmul(tb.clone())
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let split = matmul_split(ta, tb, Some((&sa, &sb)), &device)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for (p, s) in plain.iter().zip(&split) {
            assert!((p - s).abs() <= 1e-5 * p.abs().max(1.0), "{p} vs {s}");
        }
    }
}
