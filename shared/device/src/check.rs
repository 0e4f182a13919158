//! A small matmul and an elementwise expression run on a device and compared with a float64
//! reference computed here, so "the GPU works" is checked, not assumed: on a GPU by a kernel
//! of our own (`gpu`, one CubeCL source for CUDA and wgpu, compiled and launched as every
//! kernel of ours is), on the CPU by burn's backend (which trains the networks there).

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::backend::{BackendJob, run_job};
use crate::compute_device::ComputeDevice;
use crate::error::DeviceError;

/// Relative tolerance of f32 elementwise results against the f64 reference.
pub const ELEMENTWISE_TOLERANCE: f64 = 1e-4;
/// Relative tolerance of the matmul (to the larger of the value and 1): `n` float32
/// products of inputs below ½ in magnitude, summed in float32, are off by at most about
/// `n · 2⁻²⁴ · n/4` (6.1e-5 for the CLI's 64 × 64, in the worst case; 3.7e-7 measured on the
/// CPU and on wgpu). A broken kernel is off by O(1), far outside this.
pub const MATMUL_TOLERANCE: f64 = 1e-4;

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
    let (product, elementwise) = if device.is_gpu() {
        gpu::check(device, n)?
    } else {
        run_job(device, SelfCheck { n })?
    };
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

#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod gpu {
    use cubecl::prelude::*;

    use super::input;
    use crate::compute_device::ComputeDevice;
    use crate::cube::{CubeJob, array_arg, run_cube_job};
    use crate::error::DeviceError;

    /// Units per cube of the check's kernel.
    const UNITS: u32 = 256;

    /// `product = a·b` and `elementwise = exp(a)·b + ½` for `n × n` row-major inputs, one
    /// unit per output.
    ///
    /// Launched unchecked: the cubes cover `n²` units and each beyond `n²` stops.
    #[cube(launch_unchecked)]
    fn self_check(
        a: &Array<f32>,
        b: &Array<f32>,
        product: &mut Array<f32>,
        elementwise: &mut Array<f32>,
        n: u32,
    ) {
        let n = n as usize;
        let at = ABSOLUTE_POS;
        if at < n * n {
            let i = at / n;
            let j = at % n;
            let mut acc = 0.0f32;
            for k in 0..n {
                acc += a[i * n + k] * b[k * n + j];
            }
            product[at] = acc;
            elementwise[at] = a[at].exp() * b[at] + 0.5f32;
        }
    }

    struct Check {
        n: usize,
    }

    impl CubeJob for Check {
        type Output = Result<(Vec<f32>, Vec<f32>), String>;

        fn run<R: Runtime>(self, device: &R::Device) -> Self::Output {
            let n = self.n;
            let len = n * n;
            let client = R::client(device);
            let a = client.create_from_slice(f32::as_bytes(&input(n, 1)));
            let b = client.create_from_slice(f32::as_bytes(&input(n, 2)));
            let product = client.empty(len * 4);
            let elementwise = client.empty(len * 4);
            let cubes = (len as u32).div_ceil(UNITS);
            // SAFETY: `self_check` indexes every array below `n²` (its unit's output, row `i`
            // of `a` and column `j` of `b`), the lengths bound here; units past `n²` stop.
            #[allow(unsafe_code)]
            unsafe {
                self_check::launch_unchecked::<R>(
                    &client,
                    CubeCount::Static(cubes, 1, 1),
                    CubeDim::new_1d(UNITS),
                    array_arg::<R>(&a, len),
                    array_arg::<R>(&b, len),
                    array_arg::<R>(&product, len),
                    array_arg::<R>(&elementwise, len),
                    n as u32,
                );
            }
            let read = |h: cubecl::server::Handle| {
                client
                    .read_one(h)
                    .map(|bytes| f32::from_bytes(&bytes).to_vec())
                    .map_err(|e| format!("reading the check's results: {e}"))
            };
            Ok((read(product)?, read(elementwise)?))
        }
    }

    /// The check's two results computed on `device`.
    pub(super) fn check(
        device: &ComputeDevice,
        n: usize,
    ) -> Result<(Vec<f32>, Vec<f32>), DeviceError> {
        if n == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        run_cube_job(device, "the device self-check", Check { n })?.map_err(|message| {
            DeviceError::BackendFailed {
                device: device.label().to_string(),
                message,
            }
        })
    }
}

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
mod gpu {
    use crate::compute_device::ComputeDevice;
    use crate::error::DeviceError;

    /// A build without GPU backends has no GPU to check ([`crate::run_job`] refuses it).
    pub(super) fn check(
        device: &ComputeDevice,
        n: usize,
    ) -> Result<(Vec<f32>, Vec<f32>), DeviceError> {
        crate::run_job(device, super::SelfCheck { n })
    }
}
