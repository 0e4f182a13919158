//! Growing a forest a level at a time on a device without CUDA (wgpu: Vulkan, Metal, DX12):
//! the device searches every open node's splits (`forexgpt_kernels::tree_grow`), the host
//! keeps the trees.
//!
//! Per level, for every tree at once: the host sends the level's nodes that may split as far
//! as depth and size go, with the previous level's splits; while the device partitions its
//! lists and searches those nodes, the host numbers them and computes their statistics in
//! float64 exactly as the CPU grower does (the same rows in the same order: leaf values,
//! impurities, purity), making leaves of the pure ones. The device answers each node's best
//! split, or says that another candidate came close, in which case the host finds the split
//! itself with the CPU grower's own search ([`grow::best_split`], float64). The host then
//! partitions its rows, as the device does its lists at the next level. Every node keeps the
//! CPU's random stream, so on data whose sums are exact in float32 (integers) the trees are
//! the CPU's trees.
//!
//! Once few rows are left in open nodes, a round trip to the device costs more than the host's
//! search, and the host finishes the trees alone ([`LevelOptions::tail_rows`]).

use std::time::{Duration, Instant};

use forexgpt_device::cube::CubeJob;
use forexgpt_kernels::cuda_grow::GrownTree;
use forexgpt_kernels::tree_grow::{Choice, LevelData, LevelGrower, ScanNode, SplitNode, Tuning};
use rayon::prelude::*;

use super::LevelOptions;
use super::grow::{self, Data, Pending, Rules, Scratch};

/// A node that may split, waiting for its split (its `k` sums in [`TreeState::open_sums`]).
struct Open {
    index: usize,
    node: Pending,
    w: f64,
    impurity: f64,
    /// Its place among the tree's nodes sent to the device this level ([`TreeState::scans`]).
    scan: usize,
}

/// One tree as the host keeps it while the device searches.
struct TreeState {
    weight: Vec<f64>,
    /// In-bag rows; each node's rows are a slice, partitioned in place (the CPU's layout).
    rows: Vec<u32>,
    grown: GrownTree,
    pending: Vec<Pending>,
    open: Vec<Open>,
    /// The open nodes' weighted target sums, `k` a node (one allocation a tree, not a node).
    open_sums: Vec<f64>,
    scratch: Scratch,
    right: Vec<u32>,
}

/// Who decides an open node's split this level.
#[derive(Clone, Copy)]
enum Decider {
    Device(Choice),
    Host,
}

impl TreeState {
    fn new(data: &Data, rules: &Rules, seed: u64) -> Self {
        let (weight, rows, root_seed) = grow::bootstrap(data.n, rules, seed);
        let pending = vec![Pending {
            start: 0,
            end: rows.len(),
            depth: 0,
            slot: None,
            parent_feature: None,
            seed: root_seed,
        }];
        TreeState {
            weight,
            rows,
            grown: GrownTree {
                importance: vec![0.0; data.d],
                ..GrownTree::default()
            },
            pending,
            open: Vec::new(),
            open_sums: Vec::new(),
            scratch: Scratch::new(data.d),
            right: Vec::new(),
        }
    }

    /// Numbers this level's nodes, computes their statistics, makes leaves of those that may
    /// not split and keeps the others open.
    fn open_level(&mut self, data: &Data, rules: &Rules) {
        self.open.clear();
        self.open_sums.clear();
        let g = &mut self.grown;
        let mut sums = vec![0.0; data.k];
        let mut scan = 0;
        for node in std::mem::take(&mut self.pending) {
            let index = g.feature.len();
            g.feature.push(-1);
            g.bin.push(0);
            g.left.push(0);
            g.right.push(0);
            if let Some((parent, is_left)) = node.slot {
                if is_left {
                    g.left[parent] = index as i32;
                } else {
                    g.right[parent] = index as i32;
                }
            }
            let slice = &self.rows[node.start..node.end];
            let (w, impurity, pure) = grow::node_stats_into(data, &self.weight, slice, &mut sums);
            if let Some(f) = node.parent_feature {
                g.importance[f] -= w * impurity;
            }
            g.depth = g.depth.max(node.depth as u32);
            let may_split = grow::may_split(rules, &node, slice.len());
            if may_split && !pure {
                self.open.push(Open {
                    index,
                    node,
                    w,
                    impurity,
                    scan,
                });
                self.open_sums.extend_from_slice(&sums);
            } else {
                leaf(g, index, &sums, w);
            }
            scan += usize::from(may_split);
        }
    }

    /// This level's nodes that may split as far as their depth and size go, for the device
    /// to search while the host finds which of them are pure ([`TreeState::open_level`]).
    fn scans(&self, rules: &Rules, tree: u32) -> Vec<ScanNode> {
        self.pending
            .iter()
            .filter(|node| grow::may_split(rules, node, node.end - node.start))
            .map(|node| ScanNode {
                tree,
                start: node.start as u32,
                len: (node.end - node.start) as u32,
                seed: node.seed,
            })
            .collect()
    }

    /// Applies this level's splits (`deciders[i]` for open node `i`): splits the nodes,
    /// partitions the rows, queues the children; returns the splits for the device's lists
    /// and how many the host decided. A device's split that leaves fewer than
    /// `min_samples_leaf` rows on a side (no correct search chooses one) fails the fit.
    fn close_level(
        &mut self,
        data: &Data,
        rules: &Rules,
        tree: u32,
        deciders: &[Decider],
    ) -> Result<(Vec<SplitNode>, usize), String> {
        let mut splits = Vec::new();
        let mut decided_here = 0;
        let k = data.k;
        for (i, (open, decider)) in std::mem::take(&mut self.open)
            .into_iter()
            .zip(deciders)
            .enumerate()
        {
            let node = &open.node;
            let sums = &self.open_sums[i * k..(i + 1) * k];
            let split = match *decider {
                Decider::Device(c) if !c.close => c.found.then_some((c.feature as usize, c.bin)),
                _ => {
                    decided_here += 1;
                    grow::best_split(
                        data,
                        rules,
                        &self.weight,
                        &self.rows[node.start..node.end],
                        sums,
                        node.seed,
                        &mut self.scratch,
                    )
                    .map(|b| (b.feature, b.bin))
                }
            };
            let g = &mut self.grown;
            let Some((feature, bin)) = split else {
                leaf(g, open.index, sums, open.w);
                continue;
            };
            g.importance[feature] += open.w * open.impurity;
            g.feature[open.index] = feature as i32;
            g.bin[open.index] = i32::from(bin);
            let lefts = grow::partition(
                data,
                &mut self.rows[node.start..node.end],
                feature,
                bin,
                &mut self.right,
            );
            let len = node.end - node.start;
            let min_leaf = rules.limits.min_samples_leaf.max(1);
            if lefts < min_leaf || len - lefts < min_leaf {
                return Err(format!(
                    "the device split a node of {len} rows of tree {tree} on feature {feature} \
                     at bin {bin} into {lefts} and {} rows, below the {min_leaf} a leaf needs",
                    len - lefts
                ));
            }
            let mid = node.start + lefts;
            splits.push(SplitNode {
                tree,
                start: node.start as u32,
                len: (node.end - node.start) as u32,
                feature: feature as u32,
                bin,
                left: lefts as u32,
            });
            for (start, end, is_left) in [(node.start, mid, true), (mid, node.end, false)] {
                self.pending.push(Pending {
                    start,
                    end,
                    depth: node.depth + 1,
                    slot: Some((open.index, is_left)),
                    parent_feature: Some(feature),
                    seed: grow::child_seed(node.seed, !is_left),
                });
            }
        }
        Ok((splits, decided_here))
    }
}

/// Node `index` becomes the next leaf, valued at the means `sums / w` (as float32, as the
/// CPU's leaves).
fn leaf(g: &mut GrownTree, index: usize, sums: &[f64], w: f64) {
    let leaf = g.n_leaves as i32;
    g.feature[index] = -1;
    g.bin[index] = 0;
    g.left[index] = leaf;
    g.right[index] = leaf;
    g.values.extend(sums.iter().map(|s| (s / w) as f32));
    g.n_leaves += 1;
}

/// The forest's growth on one device's cubecl runtime. `Ok(None)`: cancelled.
pub(crate) struct LevelJob<'a> {
    pub data: &'a Data<'a>,
    pub rules: &'a Rules,
    /// Each tree's seed.
    pub seeds: Vec<u64>,
    pub options: LevelOptions,
    pub observe: &'a (dyn Fn(usize) -> bool + Sync),
}

impl CubeJob for LevelJob<'_> {
    type Output = Result<Option<Vec<GrownTree>>, String>;

    fn run<R: forexgpt_device::cube::cubecl::Runtime>(self, device: &R::Device) -> Self::Output {
        let (data, rules) = (self.data, self.rules);
        let started = Instant::now();
        let mut trees: Vec<TreeState> = self
            .seeds
            .par_iter()
            .map(|&seed| TreeState::new(data, rules, seed))
            .collect();
        let order = forexgpt_kernels::tree_grow::sorted_order(data.bins, data.n, data.d);
        let words = data.d.div_ceil(4);
        let mut packed = vec![0u32; data.n * words];
        for f in 0..data.d {
            for (r, &b) in data.bins[f * data.n..(f + 1) * data.n].iter().enumerate() {
                packed[r * words + f / 4] |= u32::from(b) << (8 * (f % 4));
            }
        }
        let y: Vec<f32> = data.y.iter().map(|&v| v as f32).collect();
        let level_data = LevelData {
            order: &order,
            packed: &packed,
            y: &y,
            n: data.n,
            d: data.d,
            k: data.k,
        };
        let host_prepared = started.elapsed();
        let in_bag: Vec<usize> = trees.iter().map(|t| t.rows.len()).collect();
        let weights = |t: usize| trees[t].weight.iter().map(|&w| w as u32).collect();
        let mut grower = LevelGrower::<R>::new(
            device,
            &level_data,
            &in_bag,
            &weights,
            rules.limits.min_samples_leaf,
            rules.limits.max_features,
            self.options.tuning.map_or(
                Tuning::for_outputs(data.k),
                |[scan, partition, presort, big_rows]| Tuning {
                    scan,
                    partition,
                    presort,
                    big_rows: u32::try_from(big_rows).unwrap_or(u32::MAX),
                },
            ),
        )?;
        let prepared = started.elapsed();
        let mut splits: Vec<SplitNode> = Vec::new();
        let mut on_host = false;
        let (mut levels, mut device_levels, mut host_decided) = (0, 0, 0usize);
        let mut device_nodes = 0usize;
        let mut device_time = Duration::ZERO;
        let (mut open_time, mut build_time, mut close_time) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        while trees.iter().any(|t| !t.pending.is_empty()) {
            levels += 1;
            let level_started = Instant::now();
            // The nodes that may split go to the device first; the host computes every
            // node's statistics while the device searches.
            let mut scans: Vec<Vec<ScanNode>> = trees
                .par_iter()
                .enumerate()
                .map(|(t, tree)| tree.scans(rules, t as u32))
                .collect();
            let scan_rows: usize = scans.iter().flatten().map(|s| s.len as usize).sum();
            on_host |= scan_rows <= self.options.tail_rows;
            if on_host {
                scans.iter_mut().for_each(Vec::clear);
            }
            let first_scan: Vec<usize> = scans
                .iter()
                .scan(0, |at, s| {
                    let first = *at;
                    *at += s.len();
                    Some(first)
                })
                .collect();
            let scans = scans.concat();
            let submitted = if scans.is_empty() {
                None
            } else {
                device_levels += 1;
                device_nodes += scans.len();
                Some(grower.submit(&splits, &scans)?)
            };
            build_time += level_started.elapsed();
            let opening = Instant::now();
            trees.par_iter_mut().for_each(|t| t.open_level(data, rules));
            let opened = opening.elapsed();
            open_time += opened;
            let waiting = Instant::now();
            let choices = submitted.map(|s| s.wait()).transpose()?;
            let waited = waiting.elapsed();
            device_time += waited;
            let closing = Instant::now();
            let closed: Vec<(Vec<SplitNode>, usize)> = trees
                .par_iter_mut()
                .enumerate()
                .map(|(t, tree)| {
                    let deciders: Vec<Decider> = match &choices {
                        Some(c) => tree
                            .open
                            .iter()
                            .map(|o| Decider::Device(c[first_scan[t] + o.scan]))
                            .collect(),
                        None => vec![Decider::Host; tree.open.len()],
                    };
                    tree.close_level(data, rules, t as u32, &deciders)
                })
                .collect::<Result<_, _>>()?;
            splits.clear();
            let mut decided_here = 0;
            for (s, here) in closed {
                splits.extend(s);
                decided_here += here;
            }
            if choices.is_some() {
                host_decided += decided_here;
            }
            close_time += closing.elapsed();
            tracing::trace!(
                level = levels,
                scan_rows,
                on_host,
                open_ms = opened.as_secs_f64() * 1e3,
                wait_ms = waited.as_secs_f64() * 1e3,
                close_ms = closing.elapsed().as_secs_f64() * 1e3,
                decided_here,
                "forest level"
            );
            let done = trees.iter().filter(|t| t.pending.is_empty()).count();
            if !(self.observe)(done) {
                return Ok(None);
            }
        }
        tracing::debug!(
            prepare_ms = prepared.as_secs_f64() * 1e3,
            prepare_host_ms = host_prepared.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            device_wait_ms = device_time.as_secs_f64() * 1e3,
            host_open_ms = open_time.as_secs_f64() * 1e3,
            send_ms = build_time.as_secs_f64() * 1e3,
            host_close_ms = close_time.as_secs_f64() * 1e3,
            levels,
            device_levels,
            device_nodes,
            close_calls_on_host = host_decided,
            "forest grown a level at a time"
        );
        Ok(Some(trees.into_iter().map(|t| t.grown).collect()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use forexgpt_device::ComputeDevice;
    use forexgpt_device::testing::test_gpus;
    use forexgpt_protocol::{BackendKind, MaxFeatures};

    use crate::FitError;
    use crate::forest::{LevelOptions, RandomForest, ValidForestParams};
    use crate::matrix::Matrix;

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

    /// Integer features and targets: every sum is exact in float32 and float64 alike.
    fn integer_data(n: u32) -> (Matrix, Matrix) {
        let mut values = Vec::new();
        let mut targets = Vec::new();
        for i in 0..n {
            let (a, b, c) = (i % 17, (i * 7) % 13, (i * 11) % 29);
            values.extend([a, b, c, (a * b) % 7, (i * 5) % 31].map(f64::from));
            targets.extend([a * 3 + b, (b + c) % 5, c / 3].map(f64::from));
        }
        (
            Matrix::new(n as usize, 5, values).unwrap(),
            Matrix::new(n as usize, 3, targets).unwrap(),
        )
    }

    fn on_device(
        params: &ValidForestParams,
        x: &Matrix,
        y: &Matrix,
        device: &ComputeDevice,
        tail_rows: usize,
        tuning: Option<[usize; 4]>,
    ) -> Result<crate::forest::RandomForestModel, FitError> {
        params.fit_with(
            x,
            y,
            Some(device),
            &|_| true,
            LevelOptions {
                tail_rows,
                on_cuda: false,
                tuning,
            },
        )
    }

    /// Every level searched on the device (and, once, the last levels on the host; once with
    /// batches of rows that leave remainders everywhere and every node's walks in chunks,
    /// once with the largest batches): on integer
    /// data the forest is the CPU's forest bit for bit, in every setting, the feature draws
    /// of `max_features` below all of them included.
    #[test]
    fn wgpu_grows_the_cpu_forest_on_integer_data() {
        let (x, y) = integer_data(700);
        let settings = [
            RandomForest::params().n_estimators(12),
            RandomForest::params()
                .n_estimators(9)
                .max_features(MaxFeatures::Sqrt)
                .oob_score(true),
            RandomForest::params()
                .n_estimators(5)
                .max_depth(Some(4))
                .min_samples_leaf(3),
            RandomForest::params()
                .n_estimators(3)
                .bootstrap(false)
                .min_samples_split(9),
            RandomForest::params()
                .n_estimators(4)
                .max_samples(Some(0.3)),
        ];
        for device in wgpu_devices("the level grower against the CPU's trees") {
            for (i, b) in settings.iter().enumerate() {
                let params = b.clone().check().unwrap();
                let cpu = params.fit(&x, &y, &|_| true).unwrap();
                // Odd batches with every node in chunks (chunks of no rows and of one row
                // included), and the largest batches.
                let mut runs = vec![(0, None), (1_500, None), (0, Some([3, 5, 7, 1]))];
                if i == 0 {
                    runs.push((0, Some([32, 32, 32, 100])));
                }
                for (tail_rows, tuning) in runs {
                    let gpu = on_device(&params, &x, &y, &device, tail_rows, tuning).unwrap();
                    let label = format!("setting {i}, tail {tail_rows}, tuning {tuning:?}");
                    assert_eq!(gpu.trees, cpu.trees, "{label}: trees");
                    assert_eq!(gpu.oob_score, cpu.oob_score, "{label}: OOB");
                    for (g, c) in gpu.feature_importances.iter().zip(&cpu.feature_importances) {
                        assert!((g - c).abs() < 1e-12, "{label}: importances {g} vs {c}");
                    }
                }
            }
        }
    }

    /// Float data: float32 sums on the device, float64 on the host for close calls. The
    /// forest predicts as the CPU's does (R² within 0.005 on held-out rows), and cancelling
    /// keeps nothing.
    #[test]
    fn wgpu_grows_float_forests_as_good_as_the_cpu_and_cancels() {
        let (n, d) = (1_500, 6);
        let mut rng = forexgpt_random::SplitMix64::new(5);
        let values: Vec<f64> = (0..n * d).map(|_| rng.uniform() * 4.0 - 2.0).collect();
        let x = Matrix::new(n, d, values).unwrap();
        let y = Matrix::new(
            n,
            2,
            (0..n)
                .flat_map(|r| {
                    let v = &x.values[r * d..(r + 1) * d];
                    [v[0].sin() + v[1] * v[2], (v[3] - v[4]).abs() + 0.1 * v[5]]
                })
                .collect(),
        )
        .unwrap();
        let (train, valid) = (1_000, 500);
        let xt = Matrix::new(train, d, x.values[..train * d].to_vec()).unwrap();
        let yt = Matrix::new(train, 2, y.values[..train * 2].to_vec()).unwrap();
        let xv = Matrix::new(valid, d, x.values[train * d..].to_vec()).unwrap();
        let yv = &y.values[train * 2..];
        let r2 = |pred: &Matrix| {
            let mean: f64 = yv.iter().sum::<f64>() / yv.len() as f64;
            let res: f64 = pred
                .values
                .iter()
                .zip(yv)
                .map(|(p, t)| (p - t).powi(2))
                .sum();
            let tot: f64 = yv.iter().map(|t| (t - mean).powi(2)).sum();
            1.0 - res / tot
        };
        let params = RandomForest::params().n_estimators(16).check().unwrap();
        for device in wgpu_devices("the level grower on float data") {
            let cpu = params.fit(&xt, &yt, &|_| true).unwrap();
            let gpu = on_device(&params, &xt, &yt, &device, 0, None).unwrap();
            let (r2_cpu, r2_gpu) = (
                r2(&cpu.predict(&xv).unwrap()),
                r2(&gpu.predict(&xv).unwrap()),
            );
            // A tree's splits, root first (the same tree has the same splits in order).
            let splits = |trees: &crate::forest::trees::Trees, t: usize| {
                let end = trees
                    .roots
                    .get(t + 1)
                    .map_or(trees.feature.len(), |&r| r as usize);
                let nodes = trees.roots[t] as usize..end;
                (
                    trees.feature[nodes.clone()].to_vec(),
                    trees.bin[nodes].to_vec(),
                )
            };
            let same = (0..16)
                .filter(|&t| splits(&gpu.trees, t) == splits(&cpu.trees, t))
                .count();
            println!(
                "R² {r2_gpu:.5} on {} (CPU {r2_cpu:.5}); {same} of 16 trees identical",
                device.label()
            );
            assert!(r2_cpu > 0.5, "the CPU's forest learned nothing: {r2_cpu}");
            assert!((r2_gpu - r2_cpu).abs() < 0.005, "R² {r2_gpu} vs {r2_cpu}");
            let cancelled = params.fit_with(
                &xt,
                &yt,
                Some(&device),
                &|_| false,
                LevelOptions {
                    tail_rows: 0,
                    on_cuda: false,
                    tuning: None,
                },
            );
            assert!(matches!(cancelled, Err(FitError::Cancelled)));
        }
    }
}
