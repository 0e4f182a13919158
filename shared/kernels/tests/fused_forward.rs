//! The ensemble forward kernel against a plain float64 forward pass written here, on every
//! GPU this machine has: lavapipe's Vulkan in CI, CUDA where usable. Without a GPU the test
//! says so and checks nothing.
#![cfg(any(feature = "wgpu", feature = "cuda"))]
#![allow(clippy::unwrap_used)]

use forexgpt_device::ComputeDevice;
use forexgpt_device::cube::{CubeJob, cubecl, run_cube_job};
use forexgpt_device::testing::test_gpus;
use forexgpt_kernels::fused_forward::{ForwardEnsemble, ForwardMember, ForwardShape};
use forexgpt_kernels::fused_mlp::Act;
use forexgpt_random::SplitMix64;

fn act(a: Act, z: f64) -> f64 {
    match a {
        Act::Relu => z.max(0.0),
        Act::LeakyRelu => {
            if z > 0.0 {
                z
            } else {
                0.01 * z
            }
        }
        Act::Tanh => z.tanh(),
        // GELU is left out of these cases (the training kernel's test checks its erf).
        Act::Gelu => unreachable!("not used here"),
    }
}

/// A member's outputs for one row, in float64.
fn reference(shape: &ForwardShape, m: &ForwardMember, row: &[f32]) -> Vec<f64> {
    let mut a: Vec<f64> = row
        .iter()
        .zip(&m.shift)
        .zip(&m.inv_scale)
        .map(|((&x, &s), &k)| (f64::from(x) - f64::from(s)) * f64::from(k))
        .collect();
    let mut at = 0;
    let layers = shape.widths.len() - 1;
    for (l, w) in shape.widths.windows(2).enumerate() {
        let (fin, fout) = (w[0], w[1]);
        let p = &m.params[at..at + fin * fout + fout];
        at += fin * fout + fout;
        a = (0..fout)
            .map(|j| {
                let z = f64::from(p[fin * fout + j])
                    + (0..fin)
                        .map(|i| a[i] * f64::from(p[i * fout + j]))
                        .sum::<f64>();
                if l + 1 < layers {
                    act(shape.activation, z)
                } else {
                    z
                }
            })
            .collect();
    }
    a
}

fn draw(rng: &mut SplitMix64, n: usize, scale: f64) -> Vec<f32> {
    (0..n)
        .map(|_| ((2.0 * rng.uniform() - 1.0) * scale) as f32)
        .collect()
}

fn members(shape: &ForwardShape, count: usize, seed: u64) -> Vec<ForwardMember> {
    let mut rng = SplitMix64::new(seed);
    let d = shape.inputs();
    (0..count)
        .map(|_| {
            let mut params = Vec::new();
            for w in shape.widths.windows(2) {
                let k = 1.0 / (w[0] as f64).sqrt();
                params.extend(draw(&mut rng, w[0] * w[1] + w[1], k));
            }
            let mut inv_scale: Vec<f32> = draw(&mut rng, d, 1.0)
                .into_iter()
                .map(|v| 0.5 + v.abs())
                .collect();
            // A column the member does not read.
            inv_scale[d / 2] = 0.0;
            ForwardMember {
                shift: draw(&mut rng, d, 0.3),
                inv_scale,
                params,
            }
        })
        .collect()
}

struct Run<'a> {
    shape: &'a ForwardShape,
    members: &'a [ForwardMember],
    batches: &'a [Vec<f32>],
}

impl CubeJob for Run<'_> {
    type Output = Result<Vec<Vec<f32>>, String>;

    fn run<R: cubecl::Runtime>(self, device: &R::Device) -> Self::Output {
        let ensemble = ForwardEnsemble::<R>::new(device, self.shape.clone(), self.members)?;
        // The same resident members answer several calls.
        self.batches.iter().map(|rows| ensemble.run(rows)).collect()
    }
}

fn gpu_devices() -> Vec<ComputeDevice> {
    test_gpus("the forward kernel")
}

/// Every member's outputs for every row agree with the float64 pass within `tol` of the
/// outputs' scale (f32 sums over ≤ 128 inputs; lavapipe's worst was 1.7e-7).
fn check(shape: &ForwardShape, count: usize, row_counts: &[usize], tol: f64) {
    let members = members(shape, count, 7);
    let mut rng = SplitMix64::new(11);
    let batches: Vec<Vec<f32>> = row_counts
        .iter()
        .map(|&n| draw(&mut rng, n * shape.inputs(), 2.0))
        .collect();
    for device in gpu_devices() {
        let outs = run_cube_job(
            &device,
            "test",
            Run {
                shape,
                members: &members,
                batches: &batches,
            },
        )
        .unwrap()
        .unwrap();
        let h = shape.outputs();
        for (rows, out) in batches.iter().zip(&outs) {
            let n = rows.len() / shape.inputs();
            assert_eq!(out.len(), n * count * h);
            let mut worst = 0.0f64;
            for (r, row) in rows.chunks(shape.inputs()).enumerate() {
                for (k, m) in members.iter().enumerate() {
                    let want = reference(shape, m, row);
                    for (j, w) in want.iter().enumerate() {
                        let got = f64::from(out[(r * count + k) * h + j]);
                        let dev = (got - w).abs() / (1.0 + w.abs());
                        worst = worst.max(dev);
                        assert!(
                            dev <= tol,
                            "{}: row {r} member {k} output {j}: {got} vs {w}",
                            device.label()
                        );
                    }
                }
            }
            eprintln!(
                "{}: {n} rows × {count} members: worst deviation {worst:.2e}",
                device.label()
            );
        }
    }
}

#[test]
fn an_ensemble_runs_forward_as_the_float64_reference_does() {
    // The shape of an autoencoder model of the app's defaults, its ridge folded into the
    // latent layer (3 horizons), 50 members (the ensemble the issue names); one bar, a
    // block and a half (16 rows a cube), and a backtest's worth of bars.
    let shape = ForwardShape {
        widths: vec![40, 128, 64, 3],
        activation: Act::Relu,
    };
    check(&shape, 50, &[1, 24, 300], 2e-6);
}

#[test]
fn single_layer_and_deep_chains_with_other_activations_agree() {
    // One affine layer (no activation at all).
    check(
        &ForwardShape {
            widths: vec![7, 2],
            activation: Act::Tanh,
        },
        3,
        &[5],
        2e-6,
    );
    // Four layers of uneven widths, leaky ReLU, rows not a multiple of a cube's.
    check(
        &ForwardShape {
            widths: vec![9, 33, 5, 17, 4],
            activation: Act::LeakyRelu,
        },
        4,
        &[1, 37],
        2e-6,
    );
}

#[test]
fn members_that_do_not_fit_the_shape_are_refused() {
    let shape = ForwardShape {
        widths: vec![4, 3, 2],
        activation: Act::Relu,
    };
    let mut bad = members(&shape, 2, 3);
    bad[1].params.pop();
    for device in gpu_devices() {
        let err = run_cube_job(
            &device,
            "test",
            Run {
                shape: &shape,
                members: &bad,
                batches: &[],
            },
        )
        .unwrap()
        .unwrap_err();
        assert!(
            err.contains("member 1 has 4 shifts, 4 scales and 22 parameters"),
            "{err}"
        );
        assert!(err.contains("the shape needs 4, 4 and 23"), "{err}");
    }
}
