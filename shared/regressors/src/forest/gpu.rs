//! Forest prediction on a GPU: every (tree, row) pair walks its tree in lockstep, one level
//! per step, as a handful of gathers over flat node arrays, for as many steps as the deepest
//! tree has levels. Leaves point to themselves, so a walk that arrived stays put. The rows
//! are binned on the CPU first, so the GPU compares small integers and takes exactly the
//! CPU's branches; only the final mean over trees is float32. The last few forests walked
//! stay on their device, so predicting again uploads only the rows.
//!
//! On CUDA the walk is one kernel of its own instead ([`predict_cuda`],
//! `forexgpt_kernels::cuda_walk`): a thread per row walks every tree, and the rows are binned on
//! the device too (the same comparisons as [`BinEdges::bin`], so the same bins).

use std::any::Any;
use std::sync::Mutex;
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use forexgpt_device::{BackendJob, ComputeDevice, run_job};
use forexgpt_kernels::cuda_walk::{FlatEdges, FlatTrees, WalkTrees, cuda_tree_walk};
use rayon::prelude::*;

use super::bins::BinEdges;
use super::trees::{LEAF, Trees};
use crate::error::FitError;
use crate::matrix::Matrix;

/// (tree, row) pairs walked per launch sequence: bounds the device memory of one chunk, and
/// keeps every buffer (one int or float per pair) at 64 MB, under every backend's limit.
const PAIRS_PER_CHUNK: usize = 1 << 24;

/// Row-major bins packed four to a 32-bit word (a row starts on a word), a quarter of the
/// upload of one int per bin.
fn pack_bins(bins: &[u8], d: usize) -> (Vec<i32>, usize) {
    let words = d.div_ceil(4);
    let packed = bins
        .chunks_exact(d)
        .flat_map(|row| {
            row.chunks(4).map(|q| {
                q.iter()
                    .enumerate()
                    .fold(0u32, |w, (i, &b)| w | u32::from(b) << (8 * i)) as i32
            })
        })
        .collect();
    (packed, words)
}

/// A forest's arrays on one device.
struct DeviceForest<B: Backend> {
    split: Tensor<B, 1, Int>,
    left: Tensor<B, 1, Int>,
    right: Tensor<B, 1, Int>,
    roots: Tensor<B, 1, Int>,
    values: Tensor<B, 1>,
}

impl<B: Backend> Clone for DeviceForest<B> {
    fn clone(&self) -> Self {
        DeviceForest {
            split: self.split.clone(),
            left: self.left.clone(),
            right: self.right.clone(),
            roots: self.roots.clone(),
            values: self.values.clone(),
        }
    }
}

impl<B: Backend> DeviceForest<B> {
    fn upload(trees: &Trees, device: &B::Device) -> Self {
        let ints = |v: Vec<i32>| {
            let n = v.len();
            Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), device)
        };
        // The CUDA kernel's arrays, but a lockstep walk has no stop: a leaf splits on feature
        // 0 at bin 255 (every row goes left, and a leaf's `left` is itself).
        let flat = flat_trees(trees);
        let split = flat
            .split
            .into_iter()
            .map(|s| if s < 0 { i32::from(u8::MAX) } else { s })
            .collect();
        let n_values = flat.values.len();
        DeviceForest {
            split: ints(split),
            left: ints(flat.left),
            right: ints(flat.right),
            roots: ints(flat.roots),
            values: Tensor::<B, 1>::from_data(TensorData::new(flat.values, [n_values]), device),
        }
    }
}

/// Forests recently walked, kept on their device so that predicting again (a backtest, the
/// next forecast) uploads only the rows: a forest's nodes are most of a walk's upload. Keyed
/// by a fingerprint of the trees' contents and the device, so a changed forest never meets
/// stale arrays; the newest few are kept.
struct ResidentForest {
    fingerprint: u64,
    device: String,
    arrays: Box<dyn Any + Send>,
}

static RESIDENT: Mutex<Vec<ResidentForest>> = Mutex::new(Vec::new());

/// Forests kept per process (a 100-tree, fully grown forest is ~20 MB of device memory).
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

/// The forest's arrays on `device`, uploaded unless a walk there already holds them.
fn resident<B: Backend>(trees: &Trees, label: &str, device: &B::Device) -> DeviceForest<B> {
    let key = fingerprint(trees);
    let mut kept = RESIDENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = kept
        .iter()
        .position(|r| r.fingerprint == key && r.device == label)
        && let Some(found) = kept[i].arrays.downcast_ref::<DeviceForest<B>>()
    {
        let found = found.clone();
        let entry = kept.remove(i);
        kept.insert(0, entry);
        return found;
    }
    let arrays = DeviceForest::<B>::upload(trees, device);
    kept.insert(
        0,
        ResidentForest {
            fingerprint: key,
            device: label.to_string(),
            arrays: Box::new(arrays.clone()),
        },
    );
    kept.truncate(RESIDENT_FORESTS);
    arrays
}

struct WalkJob<'a> {
    trees: &'a Trees,
    /// The device's label (the resident forests' key).
    label: &'a str,
    /// Row-major bins, `rows × d`.
    bins: &'a [u8],
    rows: usize,
    d: usize,
}

impl BackendJob for WalkJob<'_> {
    type Output = Vec<f32>;

    fn run<B: Backend>(self, device: &B::Device) -> Vec<f32> {
        let ints = |v: Vec<i32>| {
            let n = v.len();
            Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), device)
        };
        let int = |v: i32| -> B::IntElem { v.elem() };
        let started = Instant::now();
        let t = self.trees.n_trees();
        let k = self.trees.n_outputs;
        let DeviceForest {
            split,
            left,
            right,
            roots,
            values,
        } = resident::<B>(self.trees, self.label, device);
        let chunk_rows = (PAIRS_PER_CHUNK / t.max(1)).max(1);
        let mut out = Vec::with_capacity(self.rows * k);
        let mut start = 0;
        while start < self.rows {
            let n = chunk_rows.min(self.rows - start);
            let (packed, words) =
                pack_bins(&self.bins[start * self.d..(start + n) * self.d], self.d);
            let bins = ints(packed);
            let _ = B::sync(device);
            let uploaded = started.elapsed();
            // Pair p = tree·n + row: its row's first word is at row·words.
            let row_base = Tensor::<B, 1, Int>::arange(0..n as i64, device)
                .mul_scalar(words as i64)
                .reshape([1, n])
                .repeat_dim(0, t)
                .reshape([t * n]);
            let mut node = roots
                .clone()
                .reshape([t, 1])
                .repeat_dim(1, n)
                .reshape([t * n]);
            for _ in 0..self.trees.depth {
                let s = split.clone().select(0, node.clone());
                let f = s.clone().bitwise_right_shift_scalar(int(8));
                let word = bins.clone().select(
                    0,
                    row_base
                        .clone()
                        .add(f.clone().bitwise_right_shift_scalar(int(2))),
                );
                let shift = f.bitwise_and_scalar(int(3)).mul_scalar(8);
                let b = word.bitwise_right_shift(shift).bitwise_and_scalar(int(255));
                let go_left = b.lower_equal(s.bitwise_and_scalar(int(255)));
                let l = left.clone().select(0, node.clone());
                node = right.clone().select(0, node).mask_where(go_left, l);
            }
            // A leaf's `right` is its values row. One gather per output keeps every buffer at
            // one value per pair (devices cap buffer sizes: lavapipe refuses 160 MB).
            let leaf = right.clone().select(0, node).mul_scalar(k as i64);
            let means: Vec<Tensor<B, 2>> = (0..k)
                .map(|j| {
                    values
                        .clone()
                        .select(0, leaf.clone().add_scalar(j as i64))
                        .reshape([t, n])
                        .sum_dim(0)
                })
                .collect();
            let mean = Tensor::cat(means, 0)
                .div_scalar(t as f64)
                .transpose()
                .reshape([n * k]);
            out.extend(mean.into_data().to_vec::<f32>().unwrap_or_default());
            tracing::debug!(
                "forest walk: {n} rows × {t} trees, {} levels: upload {:.1} ms, walk and read {:.1} ms",
                self.trees.depth,
                uploaded.as_secs_f64() * 1e3,
                (started.elapsed() - uploaded).as_secs_f64() * 1e3
            );
            start += n;
        }
        out
    }
}

/// `rows × outputs` predictions of binned rows (row-major, `rows × d`) on `device`.
pub fn predict(
    trees: &Trees,
    bins: &[u8],
    rows: usize,
    d: usize,
    device: &ComputeDevice,
) -> Result<Vec<f32>, FitError> {
    let job = WalkJob {
        trees,
        label: device.label(),
        bins,
        rows,
        d,
    };
    let out = run_job(device, job)?;
    if out.len() != rows * trees.n_outputs {
        return Err(FitError::ShapeMismatch(format!(
            "the device returned {} values for {rows} × {} predictions",
            out.len(),
            trees.n_outputs
        )));
    }
    Ok(out)
}

/// The arrays of [`forexgpt_kernels::cuda_walk`] (and, with leaves re-marked, of burn's walk): a
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
