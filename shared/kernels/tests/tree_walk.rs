//! The forest walk kernel against a plain walk written here, on every GPU this machine has:
//! lavapipe's Vulkan in CI, CUDA where usable. Without a GPU the test says so and checks
//! nothing.
#![cfg(any(feature = "wgpu", feature = "cuda"))]
#![allow(clippy::unwrap_used)]

use forexgpt_device::ComputeDevice;
use forexgpt_device::cube::{CubeJob, cubecl, run_cube_job};
use forexgpt_device::testing::test_gpus;
use forexgpt_kernels::cuda_walk::FlatTrees;
use forexgpt_kernels::tree_walk::ResidentTrees;
use forexgpt_random::SplitMix64;

/// A random tree appended to `f` depth first (children after their parent, as the forest
/// builder lays them out): splits on random features and bins, leaves at random depths up
/// to `max_depth`, each leaf a new row of `k` random values. Returns its root.
fn grow(
    f: &mut FlatTrees,
    rng: &mut SplitMix64,
    d: usize,
    k: usize,
    depth: u32,
    max_depth: u32,
) -> i32 {
    let at = f.split.len();
    f.split.push(-1);
    f.left.push(at as i32);
    f.right.push(0);
    if depth == max_depth || (depth > 0 && rng.uniform() < 0.25) {
        f.right[at] = (f.values.len() / k) as i32;
        f.values
            .extend((0..k).map(|_| (rng.uniform() * 4.0 - 2.0) as f32));
        return at as i32;
    }
    let feature = (rng.next_u64() % d as u64) as i32;
    let bin = (rng.next_u64() % 256) as i32;
    f.split[at] = feature << 8 | bin;
    let left = grow(f, rng, d, k, depth + 1, max_depth);
    let right = grow(f, rng, d, k, depth + 1, max_depth);
    f.left[at] = left;
    f.right[at] = right;
    at as i32
}

fn forest(trees: usize, d: usize, k: usize, max_depth: u32, seed: u64) -> FlatTrees {
    let mut rng = SplitMix64::new(seed);
    let mut f = FlatTrees::default();
    for t in 0..trees {
        // The first tree is a lone leaf: a walk that starts where it ends.
        let depth = if t == 0 { 0 } else { max_depth };
        let root = grow(&mut f, &mut rng, d, k, 0, depth);
        f.roots.push(root);
    }
    f
}

/// Each row's bins, four to a word, lowest byte first.
fn pack(bins: &[u8], d: usize) -> Vec<u32> {
    bins.chunks(d)
        .flat_map(|row| {
            row.chunks(4).map(|q| {
                q.iter()
                    .enumerate()
                    .fold(0u32, |w, (i, &b)| w | u32::from(b) << (8 * i))
            })
        })
        .collect()
}

/// The walk as the module describes it, in float32 summed tree by tree.
fn host_walk(f: &FlatTrees, bins: &[u8], d: usize, k: usize) -> Vec<f32> {
    let rows = bins.len() / d;
    let mut out = Vec::with_capacity(rows * k);
    for r in 0..rows {
        let mut sums = vec![0.0f32; k];
        for &root in &f.roots {
            let mut node = root as usize;
            while f.split[node] >= 0 {
                let s = f.split[node];
                let bin = i32::from(bins[r * d + (s >> 8) as usize]);
                node = if bin <= s & 255 {
                    f.left[node]
                } else {
                    f.right[node]
                } as usize;
            }
            let leaf = f.right[node] as usize * k;
            for (j, sum) in sums.iter_mut().enumerate() {
                *sum += f.values[leaf + j];
            }
        }
        out.extend(sums.iter().map(|s| s * (1.0 / f.roots.len() as f32)));
    }
    out
}

struct Walk<'a> {
    trees: &'a FlatTrees,
    outputs: usize,
    features: usize,
    batches: &'a [Vec<u32>],
}

impl CubeJob for Walk<'_> {
    type Output = Result<Vec<Vec<f32>>, String>;

    fn run<R: cubecl::Runtime>(self, device: &R::Device) -> Self::Output {
        let resident = ResidentTrees::<R>::new(device, self.trees, self.outputs, self.features)?;
        let words = self.features.div_ceil(4);
        // The same resident trees answer several calls.
        self.batches
            .iter()
            .map(|b| resident.walk(b, b.len() / words))
            .collect()
    }
}

/// `trees` walked over each batch of packed bins on `device`, the trees uploaded once.
fn walk_on(
    device: &ComputeDevice,
    trees: &FlatTrees,
    outputs: usize,
    features: usize,
    batches: &[Vec<u32>],
) -> Result<Vec<Vec<f32>>, String> {
    let job = Walk {
        trees,
        outputs,
        features,
        batches,
    };
    run_cube_job(device, "test", job).unwrap()
}

/// Every row's mean agrees with the host walk within 2e-6 of its scale (the same sums in
/// the same order; a GPU's division may round differently).
fn check(trees: usize, d: usize, k: usize, max_depth: u32, row_counts: &[usize]) {
    let f = forest(trees, d, k, max_depth, 3);
    let mut rng = SplitMix64::new(5);
    let bins: Vec<Vec<u8>> = row_counts
        .iter()
        .map(|&n| (0..n * d).map(|_| (rng.next_u64() % 256) as u8).collect())
        .collect();
    let packed: Vec<Vec<u32>> = bins.iter().map(|b| pack(b, d)).collect();
    for device in test_gpus("the forest walk kernel") {
        let outs = walk_on(&device, &f, k, d, &packed).unwrap();
        for (b, out) in bins.iter().zip(&outs) {
            let want = host_walk(&f, b, d, k);
            assert_eq!(out.len(), want.len());
            for (i, (g, w)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 2e-6 * (1.0 + w.abs()),
                    "{}: row {} output {}: {g} vs {w}",
                    device.label(),
                    i / k,
                    i % k
                );
            }
            eprintln!(
                "{}: {} rows × {trees} trees walked as the host walks them",
                device.label(),
                b.len() / d
            );
        }
    }
}

#[test]
fn a_forest_walks_as_the_host_walks_it() {
    // Features not a multiple of four (the last word of a row half full), several outputs,
    // more rows than one cube, one row, and none.
    check(20, 7, 3, 9, &[1000, 1, 0]);
    // One output, a single word a row, deep trees.
    check(5, 4, 1, 16, &[300]);
}

#[test]
fn bins_that_are_not_whole_rows_are_refused() {
    let f = forest(3, 7, 2, 4, 1);
    for device in test_gpus("the forest walk kernel") {
        let err = walk_on(&device, &f, 2, 7, &[vec![0; 3]]).unwrap_err();
        assert!(err.contains("3 words of bins"), "{err}");
    }
}
