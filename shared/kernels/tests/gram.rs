//! The wgpu Gram products (`forexgpt_kernels::gram`) against float64 sums written here, on
//! every wgpu adapter this machine has (lavapipe's Vulkan in CI). Without one the test says
//! so and checks nothing.
#![cfg(feature = "wgpu")]
#![allow(clippy::unwrap_used)]

use forexgpt_device::testing::test_gpus;
use forexgpt_device::{ComputeDevice, DeviceError};
use forexgpt_kernels::gram::{wgpu_gram, wgpu_gram_in_chunks, wgpu_pairs_hold};
use forexgpt_protocol::BackendKind;
use forexgpt_random::SplitMix64;

/// `rows × width` values: column `j` centred near `j % 3 − 1` with spread `1 + j % 5`, as
/// float32 (what the kernel sees), kept as float64 for the reference sums.
fn data(rows: usize, width: usize, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    (0..rows * width)
        .map(|i| {
            let j = i % width;
            let v = (j % 3) as f64 - 1.0 + (rng.uniform() - 0.5) * (1 + j % 5) as f64;
            f64::from(v as f32)
        })
        .collect()
}

fn reference(z: &[f64], rows: usize, width: usize) -> Vec<f64> {
    let mut g = vec![0.0; width * width];
    for row in z.chunks_exact(width).take(rows) {
        for i in 0..width {
            for j in 0..width {
                g[i * width + j] += row[i] * row[j];
            }
        }
    }
    g
}

fn wgpu_devices(what: &str) -> Vec<ComputeDevice> {
    let gpus: Vec<ComputeDevice> = test_gpus(what)
        .into_iter()
        .filter(|d| d.backend() == BackendKind::Wgpu)
        .collect();
    if gpus.is_empty() {
        eprintln!("SKIPPED: no wgpu adapter on this machine; {what} was not run");
    }
    gpus
}

/// Whether the device keeps the float32 pairs exact; Vulkan adapters must (lavapipe in CI,
/// NVIDIA's driver), others (Metal's fast math) are named loudly if they do not.
fn pairs_hold(device: &ComputeDevice) -> bool {
    let holds = wgpu_pairs_hold(device).unwrap();
    if !holds {
        assert!(
            !device.label().contains("Vulkan"),
            "{}: the float32 pairs do not hold on a Vulkan adapter",
            device.label()
        );
        eprintln!(
            "NOT HELD: {} folds the float32 pairs; its products are checked at float32 quality",
            device.label()
        );
    }
    holds
}

/// The float32 inputs' products summed as float32 pairs: within 1e-12 of the largest
/// magnitude (the reference's own float64 sums round at 1e-16 a row); 2e-7 where the
/// device does not keep the pairs.
fn assert_close(got: &[f64], want: &[f64], width: usize, label: &str, exact: bool) {
    assert_eq!(got.len(), width * width, "{label}: size");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let tol = if exact { 1e-12 } else { 2e-7 };
    for i in 0..width {
        for j in 0..width {
            let (g, w) = (got[i * width + j], want[i * width + j]);
            assert!(
                (g - w).abs() <= tol * scale,
                "{label}: ({i}, {j}) {g} vs {w} (scale {scale}, tol {tol})"
            );
            assert_eq!(
                g,
                got[j * width + i],
                "{label}: not symmetric at ({i}, {j})"
            );
        }
    }
}

#[test]
fn gram_matches_float64_sums_across_chunks_tiles_and_slots() {
    // (rows, width, rows a chunk): tiles with padding (70 = 64 + 6), exactly one tile, one
    // column; 21 chunks, more than the 16 slots the device keeps; a last split and a last
    // chunk that are partial; a chunk that is not a whole number of splits.
    let cases = [
        (20 * 1024 + 37, 70, 1024),
        (3000, 64, 1500),
        (2500, 1, 4096),
        (5, 130, 2),
    ];
    for device in wgpu_devices("the Gram product kernel") {
        eprintln!("running on {}", device.label());
        let exact = pairs_hold(&device);
        for (k, &(rows, width, chunk)) in cases.iter().enumerate() {
            let z = data(rows, width, k as u64 + 1);
            let fill = |r: std::ops::Range<usize>, out: &mut [f32]| {
                for (o, v) in out.iter_mut().zip(&z[r.start * width..r.end * width]) {
                    *o = *v as f32;
                }
            };
            let got = wgpu_gram_in_chunks(&device, rows, width, chunk, &fill).unwrap();
            let label = format!("{} {rows}×{width} in chunks of {chunk}", device.label());
            assert_close(&got, &reference(&z, rows, width), width, &label, exact);
        }
        // The default chunking (one chunk here), and a second call that reuses the kept
        // staging buffers.
        let (rows, width) = (4000, 9);
        let z = data(rows, width, 99);
        let fill = |r: std::ops::Range<usize>, out: &mut [f32]| {
            for (o, v) in out.iter_mut().zip(&z[r.start * width..r.end * width]) {
                *o = *v as f32;
            }
        };
        let first = wgpu_gram(&device, rows, width, &fill).unwrap();
        let second = wgpu_gram(&device, rows, width, &fill).unwrap();
        assert_close(
            &first,
            &reference(&z, rows, width),
            width,
            device.label(),
            exact,
        );
        assert_eq!(first, second, "{}: the same products twice", device.label());
    }
}

#[test]
fn no_rows_give_zeros_and_other_devices_are_refused() {
    let fill = |_: std::ops::Range<usize>, _: &mut [f32]| {};
    let cpu = ComputeDevice::cpu("test CPU");
    assert_eq!(wgpu_gram(&cpu, 0, 3, &fill).unwrap(), vec![0.0; 9]);
    match wgpu_gram(&cpu, 10, 3, &fill) {
        Err(DeviceError::Unsupported { why, .. }) => assert!(why.contains("wgpu"), "{why}"),
        other => panic!("the CPU was not refused: {other:?}"),
    }
}
