//! Forest prediction on a GPU. The rows are binned on the CPU and packed four bins to a 32-bit
//! word ([`BinEdges::bin_rows_packed`]), so the GPU compares small integers and takes exactly
//! the CPU's branches; only the final mean over trees is float32. The walk itself is our
//! CubeCL kernel (`forexgpt_kernels::tree_walk`, CUDA and wgpu): a unit per row walks every
//! tree. [`predict_rows`] bins a chunk of rows while the device uploads and walks the chunk
//! before. The last few forests walked stay on their device, so predicting again uploads only
//! the rows.
//!
//! On CUDA the model's prediction takes the CUDA C walk instead ([`predict_cuda`],
//! `forexgpt_kernels::cuda_walk`): the same walk, with the rows binned on the device too (the
//! same comparisons as [`BinEdges::bin`], so the same bins) and sent through pinned memory.

#[cfg(any(feature = "wgpu", feature = "cuda"))]
use std::any::Any;
use std::ops::Range;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
use std::sync::Mutex;
use std::time::Instant;

use forexgpt_device::{ComputeDevice, DeviceError};
use forexgpt_kernels::cuda_walk::{FlatEdges, FlatTrees, WalkTrees, cuda_tree_walk};
use rayon::prelude::*;

use super::bins::BinEdges;
use super::trees::{LEAF, Trees};
use crate::error::FitError;
use crate::matrix::Matrix;

/// Forests recently walked, kept on their device so that predicting again (a backtest, the
/// next forecast) uploads only the rows: a forest's nodes are most of a walk's upload. Keyed
/// by a fingerprint of the trees' contents and the device, so a changed forest never meets
/// stale arrays; the newest few are kept.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
struct ResidentForest {
    fingerprint: u64,
    device: String,
    /// A `ResidentTrees<R>` of the device's runtime.
    trees: Box<dyn Any + Send>,
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
static RESIDENT: Mutex<Vec<ResidentForest>> = Mutex::new(Vec::new());

/// Forests kept per process (a 100-tree, fully grown forest is ~20 MB of device memory).
#[cfg(any(feature = "wgpu", feature = "cuda"))]
const RESIDENT_FORESTS: usize = 4;

/// A 64-bit fingerprint of every array of the trees: FNV-style over 8-byte words in blocks
/// of 64K words hashed in parallel, the block hashes then folded in order (~1 ms for a
/// 100-tree forest of 1.2M nodes; one thread took ~10 ms, a third of a CUDA prediction).
fn fingerprint(trees: &Trees) -> u64 {
    fn fold(h: u64, word: u64) -> u64 {
        (h ^ word)
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(29)
    }
    const SEED: u64 = 0xcbf2_9ce4_8422_2325;
    const BLOCK: usize = 1 << 16;
    let mut h = [
        trees.n_outputs as u64,
        trees.depth as u64,
        trees.n_nodes() as u64,
    ]
    .into_iter()
    .chain(trees.roots.iter().map(|&v| u64::from(v)))
    .fold(SEED, fold);
    let n = trees.n_nodes();
    let nodes: Vec<u64> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            (b * BLOCK..((b + 1) * BLOCK).min(n)).fold(SEED, |h, i| {
                let word = u64::from(trees.feature[i]) << 40
                    | u64::from(trees.bin[i]) << 32
                    | u64::from(trees.left[i]);
                fold(fold(h, word), u64::from(trees.right[i]))
            })
        })
        .collect();
    let values: Vec<u64> = trees
        .values
        .par_chunks(BLOCK)
        .map(|c| c.iter().fold(SEED, |h, v| fold(h, u64::from(v.to_bits()))))
        .collect();
    h = nodes.into_iter().chain(values).fold(h, fold);
    h
}

/// The walk of [`predict`] and [`predict_rows`] on a device's cubecl runtime: finds the
/// forest among the resident ones (or uploads it) and walks the rows, whose packed bins
/// `bins(range)` makes at most `chunk_rows` at a time.
// Without GPU kernels, `walk` reads only its trees and rows.
#[cfg_attr(not(any(feature = "wgpu", feature = "cuda")), allow(dead_code))]
struct WalkJob<'a> {
    trees: &'a Trees,
    /// The device's label (the resident forests' key).
    label: &'a str,
    bins: &'a (dyn Fn(Range<usize>) -> Vec<u32> + Sync),
    rows: usize,
    chunk_rows: usize,
    d: usize,
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl forexgpt_device::cube::CubeJob for WalkJob<'_> {
    type Output = Result<Vec<f32>, String>;

    fn run<R: forexgpt_device::cube::cubecl::Runtime>(self, device: &R::Device) -> Self::Output {
        use forexgpt_kernels::tree_walk::ResidentTrees;
        let key = fingerprint(self.trees);
        let mut kept = RESIDENT.lock().unwrap_or_else(|e| e.into_inner());
        let found = kept.iter().position(|r| {
            r.fingerprint == key && r.device == self.label && r.trees.is::<ResidentTrees<R>>()
        });
        let entry = match found {
            Some(i) => kept.remove(i),
            None => ResidentForest {
                fingerprint: key,
                device: self.label.to_string(),
                trees: Box::new(ResidentTrees::<R>::new(
                    device,
                    &flat_trees(self.trees),
                    self.trees.n_outputs,
                    self.d,
                )?),
            },
        };
        kept.insert(0, entry);
        kept.truncate(RESIDENT_FORESTS);
        let trees = kept[0]
            .trees
            .downcast_ref::<ResidentTrees<R>>()
            .ok_or("the resident forest changed type")?;
        trees.walk_streamed(self.rows, self.chunk_rows, &mut |r| (self.bins)(r))
    }
}

/// `rows × outputs` predictions on `device` (CUDA or wgpu) by our CubeCL walk, of rows
/// binned and packed by [`BinEdges::bin_rows_packed`] (`d.div_ceil(4)` words a row).
pub fn predict(
    trees: &Trees,
    packed: &[u32],
    rows: usize,
    d: usize,
    device: &ComputeDevice,
) -> Result<Vec<f32>, FitError> {
    let words = d.div_ceil(4);
    if packed.len() != rows * words {
        return Err(FitError::ShapeMismatch(format!(
            "{} words of packed bins for {rows} rows of {d} features",
            packed.len()
        )));
    }
    let bins = |r: Range<usize>| packed[r.start * words..r.end * words].to_vec();
    walk(
        WalkJob {
            trees,
            label: device.label(),
            bins: &bins,
            rows,
            chunk_rows: usize::MAX,
            d,
        },
        device,
    )
}

/// The fewest rows of a chunk of [`predict_rows`]: smaller predictions go in one.
pub const STREAM_ROWS: usize = 16_384;

/// `x.rows × outputs` predictions of `x` on `device` (CUDA or wgpu) by our CubeCL walk, the
/// rows binned on the host in two chunks (of at least [`STREAM_ROWS`] rows): the second is
/// binned while the device uploads and walks the first. More chunks cost more than they
/// overlap: on an H100's Vulkan, 100,000 rows took 10.5–12.0 ms in seven chunks and 8.7–9.1
/// ms in two, each chunk costing the host about 0.6 ms to hand over and 0.5 ms to submit
/// whatever its size (docs/benchmarks.md). The walk of wgpu devices.
pub fn predict_rows(
    trees: &Trees,
    edges: &BinEdges,
    x: &Matrix,
    device: &ComputeDevice,
) -> Result<Vec<f32>, FitError> {
    x.check_features(edges.n_features())?;
    let lookup = edges.lookup();
    let d = x.cols;
    let bins = |r: Range<usize>| lookup.pack_rows(&x.values[r.start * d..r.end * d], d);
    let job = WalkJob {
        trees,
        label: device.label(),
        bins: &bins,
        rows: x.rows,
        chunk_rows: x.rows.div_ceil(2).max(STREAM_ROWS),
        d,
    };
    walk(job, device)
}

fn walk(job: WalkJob<'_>, device: &ComputeDevice) -> Result<Vec<f32>, FitError> {
    let (trees, rows) = (job.trees, job.rows);
    let started = Instant::now();
    let out = walk_on(job, device)?;
    tracing::debug!(
        total_ms = started.elapsed().as_secs_f64() * 1e3,
        "forest walk: {rows} rows × {} trees",
        trees.n_trees()
    );
    if out.len() != rows * trees.n_outputs {
        return Err(FitError::ShapeMismatch(format!(
            "the device returned {} values for {rows} × {} predictions",
            out.len(),
            trees.n_outputs
        )));
    }
    Ok(out)
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn walk_on(job: WalkJob<'_>, device: &ComputeDevice) -> Result<Vec<f32>, FitError> {
    forexgpt_device::cube::run_cube_job(device, "walking a random forest", job)?.map_err(
        |message| {
            FitError::Device(DeviceError::BackendFailed {
                device: device.label().to_string(),
                message,
            })
        },
    )
}

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn walk_on(_job: WalkJob<'_>, device: &ComputeDevice) -> Result<Vec<f32>, FitError> {
    Err(FitError::Device(DeviceError::Unsupported {
        job: "walking a random forest".into(),
        device: device.label().to_string(),
        why: "this build has no GPU kernels".into(),
    }))
}

/// The arrays of both walks ([`forexgpt_kernels::cuda_walk`], `forexgpt_kernels::tree_walk`): a
/// leaf's split is −1, its `left` is itself and its `right` is its values row.
fn flat_trees(trees: &Trees) -> FlatTrees {
    let n = trees.n_nodes();
    let mut flat = FlatTrees {
        split: Vec::with_capacity(n),
        left: Vec::with_capacity(n),
        right: Vec::with_capacity(n),
        roots: trees.roots.iter().map(|&r| r as i32).collect(),
        values: trees.values.clone(),
    };
    for i in 0..n {
        if trees.feature[i] == LEAF {
            flat.split.push(-1);
            flat.left.push(i as i32);
            flat.right.push(trees.left[i] as i32);
        } else {
            flat.split
                .push(i32::from(trees.feature[i]) << 8 | i32::from(trees.bin[i]));
            flat.left.push(trees.left[i] as i32);
            flat.right.push(trees.right[i] as i32);
        }
    }
    flat
}

/// `rows × outputs` predictions of `x` on a CUDA device, by the CUDA walk kernel; the rows are
/// binned on the host straight into the kernel's pinned upload buffer.
pub fn predict_cuda(
    trees: &Trees,
    edges: &BinEdges,
    x: &Matrix,
    device: &ComputeDevice,
) -> Result<Vec<f32>, FitError> {
    let started = Instant::now();
    let key = fingerprint(trees);
    let fingerprinted = started.elapsed();
    let arrays = || flat_trees(trees);
    let walk = WalkTrees {
        key,
        outputs: trees.n_outputs,
        arrays: &arrays,
    };
    let d = x.cols;
    let flat_edges = FlatEdges::new(edges.edges.iter().map(Vec::as_slice));
    // The rows go to pinned memory as they are (float64), in parallel pieces.
    let fill = |rows: std::ops::Range<usize>, out: &mut [f64]| {
        out.par_chunks_mut(1 << 16)
            .zip(x.values[rows.start * d..rows.end * d].par_chunks(1 << 16))
            .for_each(|(to, from)| to.copy_from_slice(from));
    };
    let out = cuda_tree_walk(device, &walk, &flat_edges, x.rows, d, &fill)?;
    tracing::debug!(
        fingerprint_ms = fingerprinted.as_secs_f64() * 1e3,
        total_ms = started.elapsed().as_secs_f64() * 1e3,
        "forest prediction on CUDA"
    );
    if out.len() != x.rows * trees.n_outputs {
        return Err(FitError::ShapeMismatch(format!(
            "the device returned {} values for {} × {} predictions",
            out.len(),
            x.rows,
            trees.n_outputs
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forest::RandomForest;

    /// The CUDA kernel's walk, on the host: what `flat_trees` must mean.
    fn walk(flat: &FlatTrees, bins: &[u8], d: usize, k: usize) -> Vec<f64> {
        let mut out = Vec::new();
        for row in bins.chunks(d) {
            let mut acc = vec![0.0f64; k];
            for &root in &flat.roots {
                let mut n = root as usize;
                while flat.split[n] >= 0 {
                    let s = flat.split[n];
                    let left = i32::from(row[(s >> 8) as usize]) <= (s & 255);
                    n = if left { flat.left[n] } else { flat.right[n] } as usize;
                }
                let v = flat.right[n] as usize * k;
                for (a, x) in acc.iter_mut().zip(&flat.values[v..v + k]) {
                    *a += f64::from(*x);
                }
            }
            out.extend(acc.iter().map(|a| a / flat.roots.len() as f64));
        }
        out
    }

    #[test]
    fn flat_trees_walk_to_the_cpu_predictions() {
        let (n, d) = (300, 5);
        let x = Matrix::new(
            n,
            d,
            (0..n * d).map(|i| ((i * 37) % 101) as f64 * 0.1).collect(),
        )
        .unwrap();
        let y = Matrix::new(
            n,
            2,
            (0..n)
                .flat_map(|r| [x.get(r, 0) * 2.0 - x.get(r, 3), x.get(r, 1).sin()])
                .collect(),
        )
        .unwrap();
        let model = RandomForest::params()
            .n_estimators(7)
            .check()
            .unwrap()
            .fit(&x, &y, &|_| true)
            .unwrap();
        let flat = flat_trees(&model.trees);
        let bins = model.bins.bin_rows(&x);
        let want = model.predict(&x).unwrap().values;
        let got = walk(&flat, &bins, d, 2);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        assert_eq!(flat.split.len(), model.trees.n_nodes());
        assert!(flat.split.contains(&-1));
    }
}
