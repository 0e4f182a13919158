//! Forest prediction on a GPU: every (tree, row) pair walks its tree in lockstep, one level
//! per step, as a handful of gathers over flat node arrays, for as many steps as the deepest
//! tree has levels. Leaves point to themselves, so a walk that arrived stays put. The rows
//! are binned on the CPU first, so the GPU compares small integers and takes exactly the
//! CPU's branches; only the final mean over trees is float32.

use burn::tensor::backend::Backend;
use std::time::Instant;

use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use forexgpt_device::{BackendJob, ComputeDevice, run_job};

use super::trees::{LEAF, Trees};
use crate::error::FitError;

/// (tree, row) pairs walked per launch sequence: bounds the device memory of one chunk, and
/// keeps every buffer (one int or float per pair) at 64 MB, under every backend's limit.
const PAIRS_PER_CHUNK: usize = 1 << 24;

/// The node arrays in the form the walk reads: `split` = feature << 8 | bin; a leaf splits
/// on feature 0 at bin 255 (every row goes left), its `left` is itself and its `right` the
/// row of its values.
struct WalkNodes {
    split: Vec<i32>,
    left: Vec<i32>,
    right: Vec<i32>,
}

impl WalkNodes {
    fn new(trees: &Trees) -> WalkNodes {
        let n = trees.n_nodes();
        let mut w = WalkNodes {
            split: Vec::with_capacity(n),
            left: Vec::with_capacity(n),
            right: Vec::with_capacity(n),
        };
        for i in 0..n {
            if trees.feature[i] == LEAF {
                w.split.push(i32::from(u8::MAX));
                w.left.push(i as i32);
                w.right.push(trees.left[i] as i32);
            } else {
                w.split
                    .push(i32::from(trees.feature[i]) << 8 | i32::from(trees.bin[i]));
                w.left.push(trees.left[i] as i32);
                w.right.push(trees.right[i] as i32);
            }
        }
        w
    }
}

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

struct WalkJob<'a> {
    trees: &'a Trees,
    nodes: WalkNodes,
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
        let split = ints(self.nodes.split);
        let left = ints(self.nodes.left);
        let right = ints(self.nodes.right);
        let leaves = self.trees.n_leaves();
        let values = Tensor::<B, 1>::from_data(
            TensorData::new(self.trees.values.clone(), [leaves * k]),
            device,
        );
        let roots = ints(self.trees.roots.iter().map(|&r| r as i32).collect());
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
        nodes: WalkNodes::new(trees),
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
