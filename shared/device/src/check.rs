//! A small matmul and an elementwise expression run on a device and compared with a float64
//! reference computed here, so "the GPU works" is checked, not assumed.

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::backend::{BackendJob, run_job};
use crate::compute_device::ComputeDevice;
use crate::error::DeviceError;

/// Relative tolerance of f32 elementwise results against the f64 reference.
pub const ELEMENTWISE_TOLERANCE: f64 = 1e-4;
/// Relative tolerance of the matmul. burn 0.21's CUDA matmul runs f32 inputs through TF32
/// tensor cores (10-bit mantissa, unit roundoff 2^-11 ≈ 4.9e-4); measured on the H100: 3.5e-4
/// against 3.7e-7 on the CPU and on wgpu. A broken kernel is off by O(1), far outside this.
pub const MATMUL_TOLERANCE: f64 = 2e-3;

/// Outcome of a device self-check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceCheck {
    pub device: String,
    pub size: usize,
    pub matmul_max_rel_error: f64,
    pub elementwise_max_rel_error: f64,
    /// Wall time of the whole check, first-run kernel compilation included.
    pub elapsed_ms: f64,
    pub passed: bool,
}

fn input(n: usize, salt: usize) -> Vec<f32> {
    (0..n * n)
        .map(|k| (((k * 7 + salt * 13) % 23) as f32 / 23.0) - 0.5)
        .collect()
}

/// `A·B` and `exp(A) * B + 0.5` for `n × n` inputs, as f32 from the backend.
struct SelfCheck {
    n: usize,
}

impl BackendJob for SelfCheck {
    type Output = (Vec<f32>, Vec<f32>);

    fn run<B: Backend>(self, device: &B::Device) -> Self::Output {
        let n = self.n;
        let a = Tensor::<B, 2>::from_data(TensorData::new(input(n, 1), [n, n]), device);
        let b = Tensor::<B, 2>::from_data(TensorData::new(input(n, 2), [n, n]), device);
        let product = a.clone().matmul(b.clone());
        let elementwise = a.exp() * b + 0.5;
        let read = |t: Tensor<B, 2>| t.into_data().to_vec::<f32>().unwrap_or_default();
        (read(product), read(elementwise))
    }
}

fn reference(n: usize) -> (Vec<f64>, Vec<f64>) {
    let a: Vec<f64> = input(n, 1).into_iter().map(f64::from).collect();
    let b: Vec<f64> = input(n, 2).into_iter().map(f64::from).collect();
    let mut product = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..n {
                product[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    let elementwise = a.iter().zip(&b).map(|(x, y)| x.exp() * y + 0.5).collect();
    (product, elementwise)
}

fn max_rel_error(got: &[f32], want: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    got.iter()
        .zip(want)
        .map(|(g, w)| (f64::from(*g) - w).abs() / w.abs().max(1.0))
        .fold(0.0, f64::max)
}

/// Runs the self-check on `device` with `n × n` matrices.
pub fn check_device(device: &ComputeDevice, n: usize) -> Result<DeviceCheck, DeviceError> {
    let started = Instant::now();
    let (product, elementwise) = run_job(device, SelfCheck { n })?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    let (want_product, want_elementwise) = reference(n);
    let matmul_max_rel_error = max_rel_error(&product, &want_product);
    let elementwise_max_rel_error = max_rel_error(&elementwise, &want_elementwise);
    Ok(DeviceCheck {
        device: device.label().to_string(),
        size: n,
        matmul_max_rel_error,
        elementwise_max_rel_error,
        elapsed_ms,
        passed: matmul_max_rel_error <= MATMUL_TOLERANCE
            && elementwise_max_rel_error <= ELEMENTWISE_TOLERANCE,
    })
}
