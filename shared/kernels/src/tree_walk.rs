//! A forest's prediction walk as one CubeCL kernel (CUDA and wgpu: Vulkan, Metal, DX12): a
//! unit per row walks every tree from its root to a leaf and averages the leaves' values.
//! The rows arrive binned (bytes packed four to a word, a row starting on a word), so the
//! kernel compares small integers and takes exactly the CPU's branches; only the mean over
//! the trees is float32, summed tree by tree in order.
//!
//! The trees use [`FlatTrees`], the layout of the CUDA walk ([`crate::cuda_walk`]): a split
//! node holds `feature << 8 | bin` (left when the row's bin is at most `bin`), a leaf −1 and
//! its values row in `right`. On the device a node's split, left and right sit side by side
//! in 16 bytes, so a level reads one memory sector. The trees stay on the device
//! ([`ResidentTrees`]), so predicting again uploads only the rows. [`ResidentTrees::walk_streamed`]
//! takes the rows a chunk at a time from a closure (the caller bins the next chunk while the
//! device walks this one) and reads every chunk's predictions back in one read at the end.
//!
//! This is the forest's walk on wgpu (Vulkan, Metal, DX12). It replaced a walk through burn
//! (tensor gathers over every (tree, row) pair, a level at a time), which was fast only with
//! burn's operation fusion. On an H100 (100 trees, 100,000 rows) the kernel takes 0.86 ms
//! under Nsight Compute, as long as the CUDA C walk's kernel; CUDA keeps its own walk all
//! the same, for binning on the device from pinned memory (docs/benchmarks.md, "The forest's
//! walk as a CubeCL kernel").

use cubecl::prelude::*;
use std::ops::Range;

use cubecl::bytes::Bytes;
use cubecl::server::Handle;

use crate::cuda_walk::FlatTrees;
use crate::fused_mlp::array_arg;

/// Units (threads) per cube: a row each.
const WALK_UNITS: u32 = 256;

/// Most outputs (horizons) a forest may have: each unit keeps one sum per output.
pub const MAX_WALK_OUTPUTS: usize = 64;

/// Ints a node takes on the device: its split, left and right side by side, and one unused,
/// so that a node (16 bytes, aligned) never straddles a 32-byte memory sector.
const NODE_INTS: usize = 4;

/// The mean over `trees` trees (the first root at `roots[0]`) of the leaf each row reaches,
/// for rows `0..rows` of `bins` (`words` 32-bit words a row, four bins to a word, the
/// lowest byte first), into `out` (`rows × outputs`, row-major). A walk stops at a leaf;
/// `depth`, the longest path the host found, bounds the loop all the same.
///
/// Launched unchecked: the host checked every node's children, every leaf's values row and
/// every split's feature against the arrays bound here, and that children come after their
/// parent (so every walk reaches a leaf within `depth` levels).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn forest_walk(
    bins: &Array<u32>,
    nodes: &Array<i32>,
    roots: &Array<i32>,
    values: &Array<f32>,
    out: &mut Array<f32>,
    rows: u32,
    trees: u32,
    words: u32,
    depth: u32,
    #[comptime] outputs: usize,
) {
    let row = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) * CUBE_DIM_X + UNIT_POS_X;
    if row >= rows {
        terminate!();
    }
    let base = (row * words) as usize;
    let mut sums = Array::<f32>::new(outputs);
    #[unroll]
    for j in 0..outputs {
        sums[j] = 0.0f32;
    }
    for t in 0..trees as usize {
        // A node is 4 ints (split, left, right, unused) in one 16-byte block: a level
        // reads one memory sector.
        let mut at = roots[t] as usize * NODE_INTS;
        let mut s = nodes[at];
        let mut level = 0u32;
        while s >= 0 && level < depth {
            let f = (s >> 8) as u32;
            let word = bins[base + (f / 4) as usize];
            let bin = (word >> ((f % 4) * 8)) & 255u32;
            if bin <= (s & 255) as u32 {
                at = nodes[at + 1] as usize * NODE_INTS;
            } else {
                at = nodes[at + 2] as usize * NODE_INTS;
            }
            s = nodes[at];
            level += 1;
        }
        let leaf = nodes[at + 2] as usize * outputs;
        #[unroll]
        for j in 0..outputs {
            sums[j] += values[leaf + j];
        }
    }
    let at = row as usize * outputs;
    let scale = 1.0f32 / (trees as f32);
    #[unroll]
    for j in 0..outputs {
        out[at + j] = sums[j] * scale;
    }
}

/// A forest on one device: its arrays uploaded once, walked by each [`ResidentTrees::walk`].
pub struct ResidentTrees<R: Runtime> {
    client: ComputeClient<R>,
    /// `NODE_INTS` ints a node: split, left, right, 0.
    nodes: Handle,
    roots: Handle,
    values: Handle,
    nodes_len: usize,
    trees: usize,
    n_values: usize,
    outputs: usize,
    features: usize,
    /// The longest path from a root to a leaf.
    depth: u32,
    max_cubes: (u32, u32),
}

impl<R: Runtime> ResidentTrees<R> {
    /// Uploads `trees` (`outputs` values a leaf, splits on `features` features) to `device`,
    /// after checking that every index they hold stays inside their arrays and that every
    /// node's children come after it (as the forest builder lays trees out, depth first).
    pub fn new(
        device: &R::Device,
        trees: &FlatTrees,
        outputs: usize,
        features: usize,
    ) -> Result<ResidentTrees<R>, String> {
        let depth = check(trees, outputs, features)?;
        let client = R::client(device);
        let max = client.properties().hardware.max_cube_count;
        let nodes: Vec<i32> = (0..trees.split.len())
            .flat_map(|i| [trees.split[i], trees.left[i], trees.right[i], 0])
            .collect();
        Ok(ResidentTrees {
            nodes: client.create_from_slice(i32::as_bytes(&nodes)),
            roots: client.create_from_slice(i32::as_bytes(&trees.roots)),
            values: client.create_from_slice(f32::as_bytes(&trees.values)),
            nodes_len: trees.split.len(),
            trees: trees.roots.len(),
            n_values: trees.values.len(),
            outputs,
            features,
            depth,
            max_cubes: (max.0, max.1),
            client,
        })
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// The forest's mean prediction for `rows` binned rows, `rows × outputs` row-major:
    /// `bins` holds each row's bins packed four to a 32-bit word, lowest byte first, a row
    /// in `features.div_ceil(4)` words.
    pub fn walk(&self, bins: &[u32], rows: usize) -> Result<Vec<f32>, String> {
        let words = self.features.div_ceil(4);
        if bins.len() != rows * words {
            return Err(format!(
                "{} words of bins for {rows} rows of {} features ({words} words a row)",
                bins.len(),
                self.features
            ));
        }
        self.walk_streamed(rows, usize::MAX, &mut |r: Range<usize>| {
            bins[r.start * words..r.end * words].to_vec()
        })
    }

    /// [`Self::walk`] of rows whose packed bins `bins(rows)` makes a chunk of at most
    /// `chunk_rows` rows at a time, while the device uploads and walks the chunk before: the
    /// host's binning and the device's work overlap, and each chunk's words go to the device
    /// without another host copy. The results are read once, at the end.
    pub fn walk_streamed(
        &self,
        rows: usize,
        chunk_rows: usize,
        bins: &mut dyn FnMut(Range<usize>) -> Vec<u32>,
    ) -> Result<Vec<f32>, String> {
        let words = self.features.div_ceil(4);
        if rows == 0 {
            return Ok(Vec::new());
        }
        // Rows a dispatch takes: as many cubes as the device runs across and down, and
        // buffers of at most 64 MB.
        let per_dispatch = ((64usize << 20) / (4 * words.max(self.outputs)))
            .min(self.max_cubes.0 as usize * self.max_cubes.1 as usize * WALK_UNITS as usize)
            .min(chunk_rows)
            .max(WALK_UNITS as usize);
        let mut results = Vec::with_capacity(rows.div_ceil(per_dispatch));
        for start in (0..rows).step_by(per_dispatch) {
            let count = per_dispatch.min(rows - start);
            let started = std::time::Instant::now();
            let chunk = bins(start..start + count);
            if chunk.len() != count * words {
                return Err(format!(
                    "{} words of bins for {count} rows of {} features ({words} words a row)",
                    chunk.len(),
                    self.features
                ));
            }
            let binned = started.elapsed();
            let chunk = self.client.create(Bytes::from_elems(chunk));
            let uploaded = started.elapsed();
            let result = self.client.empty(count * self.outputs * 4);
            let cubes = count.div_ceil(WALK_UNITS as usize);
            let across = cubes.min(self.max_cubes.0 as usize);
            let down = cubes.div_ceil(across);
            // SAFETY: a unit stops past `count` rows, so `bins` is read below `count · words`
            // (a split's feature is below `features`, checked; the chunk's length too) and
            // `out` written below `count · outputs`; every node, root and values row is inside
            // its array (checked in `new`).
            #[allow(unsafe_code)]
            unsafe {
                forest_walk::launch_unchecked::<R>(
                    &self.client,
                    CubeCount::Static(across as u32, down as u32, 1),
                    CubeDim::new_1d(WALK_UNITS),
                    array_arg::<R>(&chunk, count * words),
                    array_arg::<R>(&self.nodes, self.nodes_len * NODE_INTS),
                    array_arg::<R>(&self.roots, self.trees),
                    array_arg::<R>(&self.values, self.n_values),
                    array_arg::<R>(&result, count * self.outputs),
                    count as u32,
                    self.trees as u32,
                    words as u32,
                    self.depth,
                    self.outputs,
                );
            }
            // Start the device on this chunk while the host bins the next.
            self.client
                .flush()
                .map_err(|e| format!("submitting the forest walk: {e}"))?;
            results.push(result);
            // The host's side of each stage: the device is never waited for here (that would
            // undo the overlap), so its work shows as the wait in the final read.
            tracing::debug!(
                rows = count,
                trees = self.trees,
                bin_ms = binned.as_secs_f64() * 1e3,
                create_ms = (uploaded - binned).as_secs_f64() * 1e3,
                submit_ms = (started.elapsed() - uploaded).as_secs_f64() * 1e3,
                "forest walk (CubeCL), host"
            );
        }
        let started = std::time::Instant::now();
        let read = cubecl::future::block_on(self.client.read_async(results))
            .map_err(|e| format!("reading the forest's predictions: {e}"))?;
        let mut out = Vec::with_capacity(rows * self.outputs);
        for bytes in &read {
            out.extend_from_slice(f32::from_bytes(bytes));
        }
        tracing::debug!(
            read_ms = started.elapsed().as_secs_f64() * 1e3,
            "forest walk (CubeCL): waited for the device and read the predictions"
        );
        Ok(out)
    }
}

/// The longest path from a root to a leaf of `trees`, or why the kernel cannot walk them
/// safely: every root is a node, a split's children are nodes after it and its feature is
/// below `features`, and a leaf's `right` is a whole row of `outputs` values.
fn check(trees: &FlatTrees, outputs: usize, features: usize) -> Result<u32, String> {
    let nodes = trees.split.len();
    if trees.left.len() != nodes || trees.right.len() != nodes {
        return Err(format!(
            "{nodes} splits, {} left and {} right children",
            trees.left.len(),
            trees.right.len()
        ));
    }
    if trees.roots.is_empty() {
        return Err("a forest of no trees".into());
    }
    if outputs == 0 || outputs > MAX_WALK_OUTPUTS {
        return Err(format!(
            "{outputs} outputs a leaf; the walk takes 1 to {MAX_WALK_OUTPUTS}"
        ));
    }
    if features == 0 || features > 1 << 23 {
        return Err(format!("{features} features"));
    }
    // Everything indexed as u32 on the device.
    if nodes >= i32::MAX as usize / NODE_INTS || trees.values.len() >= u32::MAX as usize {
        return Err("the forest is too large for one walk".into());
    }
    let node = |i: i32| usize::try_from(i).is_ok_and(|i| i < nodes);
    if let Some(t) = trees.roots.iter().position(|&r| !node(r)) {
        return Err(format!("tree {t}'s root is not a node"));
    }
    let leaves = trees.values.len() / outputs;
    if trees.values.len() != leaves * outputs {
        return Err(format!(
            "{} leaf values are not whole rows of {outputs}",
            trees.values.len()
        ));
    }
    // Children after their parent: node order is a topological order, so one pass finds
    // the longest path into every node.
    let mut depth = vec![0u32; nodes];
    for i in 0..nodes {
        let (s, l, r) = (trees.split[i], trees.left[i], trees.right[i]);
        let after = |c: i32| node(c) && c as usize > i;
        let ok = if s < 0 {
            s == -1 && usize::try_from(r).is_ok_and(|r| r < leaves)
        } else {
            ((s >> 8) as usize) < features && after(l) && after(r)
        };
        if !ok {
            return Err(format!(
                "node {i} (split {s}, left {l}, right {r}) points outside the forest or back"
            ));
        }
        if s >= 0 {
            for c in [l as usize, r as usize] {
                depth[c] = depth[c].max(depth[i] + 1);
            }
        }
    }
    Ok(depth.into_iter().max().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stump() -> FlatTrees {
        // Root 0 splits feature 1 at bin 3; leaves 1 and 2 hold rows 0 and 1.
        FlatTrees {
            split: vec![1 << 8 | 3, -1, -1],
            left: vec![1, 1, 2],
            right: vec![2, 0, 1],
            roots: vec![0],
            values: vec![1.0, 2.0],
        }
    }

    #[test]
    fn trees_that_point_outside_themselves_are_refused_by_node() {
        assert_eq!(check(&stump(), 1, 2), Ok(1));
        let backwards = FlatTrees {
            split: vec![-1, 1 << 8 | 3, -1],
            left: vec![0, 0, 2],
            right: vec![0, 2, 1],
            roots: vec![1],
            values: vec![1.0, 2.0],
        };
        assert!(check(&backwards, 1, 2).unwrap_err().contains("node 1"));
        let bad_child = FlatTrees {
            left: vec![7, 1, 2],
            ..stump()
        };
        assert!(check(&bad_child, 1, 2).unwrap_err().contains("node 0"));
        let bad_feature = FlatTrees {
            split: vec![5 << 8 | 3, -1, -1],
            ..stump()
        };
        assert!(check(&bad_feature, 1, 2).unwrap_err().contains("node 0"));
        let bad_leaf = FlatTrees {
            right: vec![2, 0, 9],
            ..stump()
        };
        assert!(check(&bad_leaf, 1, 2).unwrap_err().contains("node 2"));
        assert!(check(&stump(), 2, 2).unwrap_err().contains("node 2"));
        assert!(check(&stump(), 0, 2).unwrap_err().contains("0 outputs"));
        let no_trees = FlatTrees {
            roots: vec![],
            ..stump()
        };
        assert!(check(&no_trees, 1, 2).unwrap_err().contains("no trees"));
    }
}
