//! Growing one histogram tree on the CPU: depth first, each node's rows kept as a contiguous
//! slice of one index array (partitioned in place, as scikit-learn's builder does).
//!
//! Split search per node and feature works on the node's occupied bins: for big nodes they
//! come from a histogram (one pass over the rows, then a scan of the bins), for small ones
//! from sorting the rows by bin (cheaper than scanning 256 mostly empty bins). The criterion
//! is scikit-learn's multi-output squared error: maximize `Σₖ S_Lₖ²/W_L + S_Rₖ²/W_R`.

use forexgpt_core::synthetic::SplitMix64;

use super::trees::{LEAF, Tree};

/// The training data as the grower reads it.
pub(crate) struct Data<'a> {
    /// Column-major bins: `bins[f·n + r]`.
    pub bins: &'a [u8],
    pub n: usize,
    pub d: usize,
    /// Row-major targets: `y[r·k + j]`.
    pub y: &'a [f64],
    pub k: usize,
    pub n_bins: &'a [usize],
}

/// The checked growth parameters.
pub(crate) struct Rules {
    pub max_depth: usize,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub max_features: usize,
    pub bootstrap: bool,
    pub n_draws: usize,
}

/// A grown tree with what the forest aggregates from it.
pub(crate) struct Grown {
    pub tree: Tree,
    /// Raw (unnormalized) impurity decrease per feature, weighted by node weight.
    pub importance: Vec<f64>,
    /// Rows the tree never saw (bootstrap), with the leaf each lands in.
    pub out_of_bag: Vec<(u32, u32)>,
}

/// The occupied bins of one feature in one node, ascending, with their statistics.
#[derive(Default)]
struct Occupied {
    bins: Vec<usize>,
    counts: Vec<usize>,
    weights: Vec<f64>,
    /// `len × k` weighted target sums.
    sums: Vec<f64>,
}

impl Occupied {
    fn clear(&mut self) {
        self.bins.clear();
        self.counts.clear();
        self.weights.clear();
        self.sums.clear();
    }

    fn len(&self) -> usize {
        self.bins.len()
    }

    fn push(&mut self, bin: usize, k: usize) {
        self.bins.push(bin);
        self.counts.push(0);
        self.weights.push(0.0);
        self.sums.extend(std::iter::repeat_n(0.0, k));
    }
}

struct Best {
    feature: usize,
    bin: u8,
    proxy: f64,
}

struct Pending {
    start: usize,
    end: usize,
    depth: usize,
    /// Where to write this node's index: the parent's left or right slot.
    slot: Option<(usize, bool)>,
    /// The parent's split feature (for the impurity decrease).
    parent_feature: Option<usize>,
}

/// Nodes with more rows than this many times a feature's bin count use a histogram for it;
/// smaller ones sort their rows by bin.
const HISTOGRAM_FACTOR: usize = 1;

struct Scratch {
    hist: Vec<f64>,
    pairs: Vec<(u8, u32)>,
    occupied: Occupied,
    right: Vec<u32>,
    features: Vec<usize>,
}

/// A tree's bootstrap: per row how often it was drawn, the in-bag rows (ascending), and the
/// random stream after the draws (which then samples the features).
pub(crate) fn bootstrap(n: usize, rules: &Rules, seed: u64) -> (Vec<f64>, Vec<u32>, SplitMix64) {
    let mut rng = SplitMix64::new(seed);
    let mut weight = vec![0.0f64; n];
    if rules.bootstrap {
        for _ in 0..rules.n_draws {
            weight[(rng.next_u64() % n as u64) as usize] += 1.0;
        }
    } else {
        weight.fill(1.0);
    }
    let rows: Vec<u32> = (0..n as u32)
        .filter(|&r| weight[r as usize] > 0.0)
        .collect();
    (weight, rows, rng)
}

/// The rows a tree never saw (bootstrap), with the leaf each lands in.
pub(crate) fn out_of_bag(
    data: &Data,
    rules: &Rules,
    weight: &[f64],
    tree: &Tree,
) -> Vec<(u32, u32)> {
    if !rules.bootstrap {
        return Vec::new();
    }
    (0..data.n as u32)
        .filter(|&r| weight[r as usize] == 0.0)
        .map(|r| {
            let leaf = tree.leaf_of(|f| data.bins[f * data.n + r as usize]);
            (r, leaf)
        })
        .collect()
}

pub(crate) fn grow(data: &Data, rules: &Rules, seed: u64) -> Grown {
    let (weight, mut rows, mut rng) = bootstrap(data.n, rules, seed);
    let mut tree = Tree::default();
    let mut importance = vec![0.0; data.d];
    let mut scratch = Scratch {
        hist: Vec::new(),
        pairs: Vec::new(),
        occupied: Occupied::default(),
        right: Vec::new(),
        features: (0..data.d).collect(),
    };
    let mut stack = vec![Pending {
        start: 0,
        end: rows.len(),
        depth: 0,
        slot: None,
        parent_feature: None,
    }];
    while let Some(node) = stack.pop() {
        let index = tree.feature.len();
        if let Some((parent, is_left)) = node.slot {
            if is_left {
                tree.left[parent] = index as u32;
            } else {
                tree.right[parent] = index as u32;
            }
        }
        let slice = &rows[node.start..node.end];
        let (w, sums, impurity, pure) = node_stats(data, &weight, slice);
        if let Some(f) = node.parent_feature {
            importance[f] -= w * impurity;
        }
        tree.depth = tree.depth.max(node.depth as u32);
        let m = slice.len();
        let splittable = !pure
            && node.depth < rules.max_depth
            && m >= rules.min_samples_split
            && m >= 2 * rules.min_samples_leaf;
        let best = if splittable {
            best_split(data, rules, &weight, slice, &sums, &mut rng, &mut scratch)
        } else {
            None
        };
        let Some(best) = best else {
            tree.push_leaf(sums.iter().map(|s| (s / w) as f32));
            continue;
        };
        importance[best.feature] += w * impurity;
        tree.push_split(best.feature as u16, best.bin);
        let mid = partition(
            data,
            &mut rows[node.start..node.end],
            best.feature,
            best.bin,
            &mut scratch.right,
        ) + node.start;
        // Depth first, left child first: push the right one below it.
        stack.push(Pending {
            start: mid,
            end: node.end,
            depth: node.depth + 1,
            slot: Some((index, false)),
            parent_feature: Some(best.feature),
        });
        stack.push(Pending {
            start: node.start,
            end: mid,
            depth: node.depth + 1,
            slot: Some((index, true)),
            parent_feature: Some(best.feature),
        });
    }
    let out_of_bag = out_of_bag(data, rules, &weight, &tree);
    Grown {
        tree,
        importance,
        out_of_bag,
    }
}

/// Weight, per-output weighted sums, mean impurity over outputs, and whether every output is
/// constant (a pure node, which scikit-learn does not split).
fn node_stats(data: &Data, weight: &[f64], rows: &[u32]) -> (f64, Vec<f64>, f64, bool) {
    let k = data.k;
    let mut w = 0.0;
    let mut sums = vec![0.0; k];
    let mut squares = 0.0;
    let first = rows[0] as usize;
    let mut pure = true;
    for &r in rows {
        let r = r as usize;
        let wr = weight[r];
        w += wr;
        let y = &data.y[r * k..(r + 1) * k];
        for j in 0..k {
            sums[j] += wr * y[j];
            squares += wr * y[j] * y[j];
        }
        pure &= y == &data.y[first * k..(first + 1) * k];
    }
    let mean_square: f64 = sums.iter().map(|s| (s / w) * (s / w)).sum();
    let impurity = ((squares / w - mean_square) / k as f64).max(0.0);
    (w, sums, if pure { 0.0 } else { impurity }, pure)
}

fn best_split(
    data: &Data,
    rules: &Rules,
    weight: &[f64],
    rows: &[u32],
    total: &[f64],
    rng: &mut SplitMix64,
    scratch: &mut Scratch,
) -> Option<Best> {
    let mut best: Option<Best> = None;
    let mut visited = 0;
    // scikit-learn's sampling: draw features without replacement until `max_features`
    // non-constant ones were evaluated; constant ones do not count.
    for i in 0..data.d {
        if visited >= rules.max_features {
            break;
        }
        let j = i + (rng.next_u64() % (data.d - i) as u64) as usize;
        scratch.features.swap(i, j);
        let f = scratch.features[i];
        occupied_bins(data, f, weight, rows, scratch);
        if scratch.occupied.len() < 2 {
            continue;
        }
        visited += 1;
        if let Some((bin, proxy)) = scan(data.k, rules, rows.len(), total, &scratch.occupied)
            && best.as_ref().is_none_or(|b| proxy > b.proxy)
        {
            best = Some(Best {
                feature: f,
                bin,
                proxy,
            });
        }
    }
    best
}

/// The node's occupied bins of feature `f`, in ascending order, with their statistics.
fn occupied_bins(data: &Data, f: usize, weight: &[f64], rows: &[u32], scratch: &mut Scratch) {
    let k = data.k;
    let column = &data.bins[f * data.n..(f + 1) * data.n];
    let n_bins = data.n_bins[f];
    scratch.occupied.clear();
    if rows.len() > HISTOGRAM_FACTOR * n_bins {
        let stride = k + 2;
        scratch.hist.clear();
        scratch.hist.resize(n_bins * stride, 0.0);
        for &r in rows {
            let r = r as usize;
            let h = &mut scratch.hist[column[r] as usize * stride..][..stride];
            let wr = weight[r];
            h[0] += 1.0;
            h[1] += wr;
            for (s, y) in h[2..].iter_mut().zip(&data.y[r * k..(r + 1) * k]) {
                *s += wr * y;
            }
        }
        for (bin, h) in scratch.hist.chunks_exact(stride).enumerate() {
            if h[0] > 0.0 {
                let o = &mut scratch.occupied;
                o.bins.push(bin);
                o.counts.push(h[0] as usize);
                o.weights.push(h[1]);
                o.sums.extend_from_slice(&h[2..]);
            }
        }
    } else {
        scratch.pairs.clear();
        scratch
            .pairs
            .extend(rows.iter().map(|&r| (column[r as usize], r)));
        scratch.pairs.sort_unstable_by_key(|p| p.0);
        let o = &mut scratch.occupied;
        for &(bin, r) in &scratch.pairs {
            let r = r as usize;
            let bin = bin as usize;
            if o.bins.last() != Some(&bin) {
                o.push(bin, k);
            }
            let i = o.len() - 1;
            let wr = weight[r];
            o.counts[i] += 1;
            o.weights[i] += wr;
            for (acc, y) in o.sums[i * k..].iter_mut().zip(&data.y[r * k..(r + 1) * k]) {
                *acc += wr * y;
            }
        }
    }
}

/// The best boundary between two occupied bins: its split bin (halfway between them, as
/// scikit-learn puts thresholds halfway between values) and its proxy gain.
fn scan(k: usize, rules: &Rules, m: usize, total: &[f64], o: &Occupied) -> Option<(u8, f64)> {
    let total_w: f64 = o.weights.iter().sum();
    let mut left_sums = vec![0.0; k];
    let mut left_w = 0.0;
    let mut left_n = 0;
    let mut best: Option<(u8, f64)> = None;
    for i in 0..o.len() - 1 {
        left_n += o.counts[i];
        left_w += o.weights[i];
        left_sums
            .iter_mut()
            .zip(&o.sums[i * k..(i + 1) * k])
            .for_each(|(a, s)| *a += s);
        if left_n < rules.min_samples_leaf {
            continue;
        }
        if m - left_n < rules.min_samples_leaf {
            break;
        }
        let right_w = total_w - left_w;
        let proxy: f64 = left_sums
            .iter()
            .zip(total)
            .map(|(l, t)| l * l / left_w + (t - l) * (t - l) / right_w)
            .sum();
        if best.is_none_or(|b| proxy > b.1) {
            let (cur, next) = (o.bins[i], o.bins[i + 1]);
            best = Some(((cur + (next - cur - 1) / 2) as u8, proxy));
        }
    }
    best
}

/// Moves the rows going left (bin ≤ `bin`) to the front, keeping order; returns their count.
fn partition(data: &Data, rows: &mut [u32], f: usize, bin: u8, right: &mut Vec<u32>) -> usize {
    let column = &data.bins[f * data.n..(f + 1) * data.n];
    right.clear();
    let mut left = 0;
    for i in 0..rows.len() {
        let r = rows[i];
        if column[r as usize] <= bin {
            rows[left] = r;
            left += 1;
        } else {
            right.push(r);
        }
    }
    rows[left..].copy_from_slice(right);
    left
}

impl Tree {
    fn push_leaf(&mut self, values: impl Iterator<Item = f32>) {
        let leaf = self.n_leaves;
        self.feature.push(LEAF);
        self.bin.push(0);
        self.left.push(leaf);
        self.right.push(leaf);
        self.values.extend(values);
        self.n_leaves += 1;
    }

    fn push_split(&mut self, feature: u16, bin: u8) {
        self.feature.push(feature);
        self.bin.push(bin);
        self.left.push(0);
        self.right.push(0);
    }
}
