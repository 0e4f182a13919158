//! Forest prediction on a GPU: every (tree, row) pair walks its tree in lockstep, one level
//! per step, as a handful of gathers over flat node arrays, for as many steps as the deepest
//! tree has levels. Leaves point to themselves, so a walk that arrived stays put. The rows
//! are binned on the CPU first, so the GPU compares small integers and takes exactly the
//! CPU's branches; only the final mean over trees is float32. The last few forests walked
//! stay on their device, so predicting again uploads only the rows.

use std::any::Any;
use std::sync::Mutex;
use std::time::Instant;

use burn::tensor::backend::Backend;
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
        let nodes = WalkNodes::new(trees);
        let values = trees.values.clone();
        let n_values = values.len();
        DeviceForest {
            split: ints(nodes.split),
            left: ints(nodes.left),
            right: ints(nodes.right),
            roots: ints(trees.roots.iter().map(|&r| r as i32).collect()),
            values: Tensor::<B, 1>::from_data(TensorData::new(values, [n_values]), device),
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

/// A 64-bit fingerprint of every array of the trees (FNV-style over 8-byte words; ~2 ms for
/// a 100-tree forest).
fn fingerprint(trees: &Trees) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |word: u64| {
        h = (h ^ word)
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(29);
    };
    for v in [
        trees.n_outputs as u64,
        trees.depth as u64,
        trees.n_nodes() as u64,
    ] {
        eat(v);
    }
    trees.roots.iter().for_each(|&v| eat(u64::from(v)));
    for i in 0..trees.n_nodes() {
        eat(u64::from(trees.feature[i]) << 40
            | u64::from(trees.bin[i]) << 32
            | u64::from(trees.left[i]));
        eat(u64::from(trees.right[i]));
    }
    trees
        .values
        .iter()
        .for_each(|&v| eat(u64::from(v.to_bits())));
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
