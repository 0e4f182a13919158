//! Growing one histogram tree on the CPU: depth first, each node's rows kept as a contiguous
//! slice of one index array (partitioned in place, as scikit-learn's builder does).
//!
//! Split search per node and feature works on the node's occupied bins: for big nodes they
//! come from a histogram (one pass over the rows, then a scan of the bins), for small ones
//! from sorting the rows by bin (cheaper than scanning 256 mostly empty bins). The criterion
//! is scikit-learn's multi-output squared error: maximize `Σₖ S_Lₖ²/W_L + S_Rₖ²/W_R`.
//!
//! Every node has a random stream of its own ([`child_seed`]): its feature draws never depend
//! on the order in which nodes are grown, so the GPU builder, which grows many nodes of a tree
//! at once, grows the same trees.

use forexgpt_kernels::cuda_grow::{BinnedRows, GrowLimits, GrownTree};
use forexgpt_random::SplitMix64;

use super::trees::{LEAF, Tree};

/// The training data as the grower reads it (the CUDA builder reads the same).
pub(crate) type Data<'a> = BinnedRows<'a>;

/// The checked growth parameters.
pub(crate) struct Rules {
    /// When a node may split (shared with the CUDA builder).
    pub limits: GrowLimits,
    pub bootstrap: bool,
    pub n_draws: usize,
    /// Whether the out-of-bag leaves are wanted (`oob_score` with bootstrap).
    pub out_of_bag: bool,
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

pub(super) struct Best {
    pub feature: usize,
    pub bin: u8,
    proxy: f64,
}

pub(super) struct Pending {
    pub start: usize,
    pub end: usize,
    pub depth: usize,
    /// Where to write this node's index: the parent's left or right slot.
    pub slot: Option<(usize, bool)>,
    /// The parent's split feature (for the impurity decrease).
    pub parent_feature: Option<usize>,
    /// The node's random stream (its feature draws).
    pub seed: u64,
}

/// Nodes with more rows than this many times a feature's bin count use a histogram for it;
/// smaller ones sort their rows by bin.
const HISTOGRAM_FACTOR: usize = 1;

/// A grower's working memory, reused from node to node.
pub(super) struct Scratch {
    hist: Vec<f64>,
    pairs: Vec<(u8, u32)>,
    occupied: Occupied,
    right: Vec<u32>,
    features: Vec<usize>,
}

impl Scratch {
    pub(super) fn new(d: usize) -> Self {
        Scratch {
            hist: Vec::new(),
            pairs: Vec::new(),
            occupied: Occupied::default(),
            right: Vec::new(),
            features: (0..d).collect(),
        }
    }
}

/// A tree's bootstrap: per row how often it was drawn, the in-bag rows (ascending), and the
/// root node's seed (the next value of the stream after the draws).
pub(crate) fn bootstrap(n: usize, rules: &Rules, seed: u64) -> (Vec<f64>, Vec<u32>, u64) {
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
    (weight, rows, rng.next_u64())
}

/// The seed of a node's left or right child, derived from the node's own seed only (the same
/// function runs in the CUDA builder, `grow_trees.cu`).
pub(crate) fn child_seed(seed: u64, right: bool) -> u64 {
    let side = if right {
        0x2545_F491_4F6C_DD1D
    } else {
        0x5851_F42D_4C95_7F2D
    };
    SplitMix64::new(seed ^ side).next_u64()
}

/// The rows a tree never saw (bootstrap), with the leaf each lands in; none when the score is
/// not wanted.
pub(crate) fn out_of_bag(
    data: &Data,
    rules: &Rules,
    weight: &[f64],
    tree: &Tree,
) -> Vec<(u32, u32)> {
    if !rules.bootstrap || !rules.out_of_bag {
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
    let (weight, mut rows, root_seed) = bootstrap(data.n, rules, seed);
    let mut tree = Tree::default();
    let mut importance = vec![0.0; data.d];
    let mut scratch = Scratch::new(data.d);
    let mut stack = vec![Pending {
        start: 0,
        end: rows.len(),
        depth: 0,
        slot: None,
        parent_feature: None,
        seed: root_seed,
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
        let best = if splittable(rules, &node, slice.len(), pure) {
            best_split(data, rules, &weight, slice, &sums, node.seed, &mut scratch)
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
            seed: child_seed(node.seed, true),
        });
        stack.push(Pending {
            start: node.start,
            end: mid,
            depth: node.depth + 1,
            slot: Some((index, true)),
            parent_feature: Some(best.feature),
            seed: child_seed(node.seed, false),
        });
    }
    let out_of_bag = out_of_bag(data, rules, &weight, &tree);
    Grown {
        tree,
        importance,
        out_of_bag,
    }
}

/// Whether a node of `m` rows may split (scikit-learn's rules).
pub(super) fn splittable(rules: &Rules, node: &Pending, m: usize, pure: bool) -> bool {
    !pure && may_split(rules, node, m)
}

/// Whether a node of `m` rows may split as far as its depth and size go (purity aside).
pub(super) fn may_split(rules: &Rules, node: &Pending, m: usize) -> bool {
    node.depth < rules.limits.max_depth
        && m >= rules.limits.min_samples_split
        && m >= 2 * rules.limits.min_samples_leaf
}

/// Weight, per-output weighted sums, mean impurity over outputs, and whether every output is
/// constant (a pure node, which scikit-learn does not split).
pub(super) fn node_stats(data: &Data, weight: &[f64], rows: &[u32]) -> (f64, Vec<f64>, f64, bool) {
    let mut sums = vec![0.0; data.k];
    let (w, impurity, pure) = node_stats_into(data, weight, rows, &mut sums);
    (w, sums, impurity, pure)
}

/// [`node_stats`] with the sums written to `sums` (`k` values, zeroed here).
pub(super) fn node_stats_into(
    data: &Data,
    weight: &[f64],
    rows: &[u32],
    sums: &mut [f64],
) -> (f64, f64, bool) {
    let k = data.k;
    let mut w = 0.0;
    sums.fill(0.0);
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
    (w, if pure { 0.0 } else { impurity }, pure)
}

/// The CPU's split of a node: the best candidate of the features its stream draws.
pub(super) fn best_split(
    data: &Data,
    rules: &Rules,
    weight: &[f64],
    rows: &[u32],
    total: &[f64],
    seed: u64,
    scratch: &mut Scratch,
) -> Option<Best> {
    let mut best: Option<Best> = None;
    let mut visited = 0;
    let mut rng = SplitMix64::new(seed);
    // The draws permute the features from their natural order at every node.
    scratch
        .features
        .iter_mut()
        .enumerate()
        .for_each(|(i, f)| *f = i);
    // scikit-learn's sampling: draw features without replacement until `max_features`
    // non-constant ones were evaluated; constant ones do not count.
    for i in 0..data.d {
        if visited >= rules.limits.max_features {
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
        if left_n < rules.limits.min_samples_leaf {
            continue;
        }
        if m - left_n < rules.limits.min_samples_leaf {
            break;
        }
        // Σₖ L²/W_L + Σₖ R²/W_R with one division per side (the CUDA builder's `proxy`).
        let right_w = total_w - left_w;
        let left_squares: f64 = left_sums.iter().map(|l| l * l).sum();
        let right_squares: f64 = left_sums
            .iter()
            .zip(total)
            .map(|(l, t)| (t - l) * (t - l))
            .sum();
        let proxy = left_squares / left_w + right_squares / right_w;
        if best.is_none_or(|b| proxy > b.1) {
            let (cur, next) = (o.bins[i], o.bins[i + 1]);
            best = Some(((cur + (next - cur - 1) / 2) as u8, proxy));
        }
    }
    best
}

/// Moves the rows going left (bin ≤ `bin`) to the front, keeping order; returns their count.
pub(super) fn partition(
    data: &Data,
    rows: &mut [u32],
    f: usize,
    bin: u8,
    right: &mut Vec<u32>,
) -> usize {
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

/// A tree grown on the GPU, whose nodes and leaves are numbered in the order they were grown
/// (the root first), renumbered as the CPU grower numbers them: depth first, left subtree
/// before right, leaves in the order they are reached. Errors name what does not form a tree
/// (an index out of range, a node reached twice or never).
pub(crate) fn depth_first(g: &GrownTree, k: usize) -> Result<Tree, String> {
    let nodes = g.feature.len();
    if nodes == 0
        || [g.bin.len(), g.left.len(), g.right.len()] != [nodes; 3]
        || g.values.len() != g.n_leaves as usize * k
    {
        return Err(format!(
            "inconsistent arrays ({nodes} nodes, {} leaves)",
            g.n_leaves
        ));
    }
    let mut tree = Tree {
        depth: g.depth,
        ..Tree::default()
    };
    let mut seen = vec![false; nodes];
    // (node in the device's numbering, the parent's slot to fill)
    let mut stack: Vec<(usize, Option<(usize, bool)>)> = vec![(0, None)];
    while let Some((old, slot)) = stack.pop() {
        if old >= nodes || std::mem::replace(&mut seen[old], true) {
            return Err(format!("node {old} is out of range or reached twice"));
        }
        let index = tree.feature.len();
        if let Some((parent, is_left)) = slot {
            if is_left {
                tree.left[parent] = index as u32;
            } else {
                tree.right[parent] = index as u32;
            }
        }
        let child = |v: i32| usize::try_from(v).map_err(|_| format!("node {old}: child {v}"));
        match u16::try_from(g.feature[old]) {
            Ok(feature) if feature != LEAF => {
                let bin = u8::try_from(g.bin[old])
                    .map_err(|_| format!("node {old}: split bin {}", g.bin[old]))?;
                tree.push_split(feature, bin);
                stack.push((child(g.right[old])?, Some((index, false))));
                stack.push((child(g.left[old])?, Some((index, true))));
            }
            _ if g.feature[old] == -1 => {
                let leaf = child(g.left[old])?;
                let values = g
                    .values
                    .get(leaf * k..(leaf + 1) * k)
                    .ok_or_else(|| format!("node {old}: leaf {leaf} out of range"))?;
                tree.push_leaf(values.iter().copied());
            }
            _ => return Err(format!("node {old}: split feature {}", g.feature[old])),
        }
    }
    if tree.feature.len() != nodes || tree.n_leaves != g.n_leaves {
        return Err(format!(
            "{} of {nodes} nodes and {} of {} leaves reached from the root",
            tree.feature.len(),
            tree.n_leaves,
            g.n_leaves
        ));
    }
    Ok(tree)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A small tree grown by the CPU on integer data.
    fn cpu_tree() -> Tree {
        let n = 40;
        let bins: Vec<u8> = (0..n * 2).map(|i| ((i * 7) % 11) as u8).collect();
        let y: Vec<f64> = (0..n).map(|r| f64::from((r * 5 % 9) as u32)).collect();
        let data = Data {
            bins: &bins,
            n,
            d: 2,
            y: &y,
            k: 1,
            n_bins: &[11, 11],
        };
        let rules = Rules {
            limits: GrowLimits {
                max_depth: usize::MAX,
                min_samples_split: 2,
                min_samples_leaf: 1,
                max_features: 2,
            },
            bootstrap: true,
            n_draws: n,
            out_of_bag: false,
        };
        grow(&data, &rules, 7).tree
    }

    /// `tree` as the GPU might return it: nodes and leaves numbered by `order` and a leaf
    /// permutation instead of depth first.
    fn scrambled(tree: &Tree) -> GrownTree {
        let nodes = tree.feature.len();
        // The root stays first; the others in reverse.
        let new_of = |i: usize| if i == 0 { 0 } else { nodes - i };
        let leaves = tree.n_leaves as usize;
        let leaf_of = |l: u32| (leaves - 1 - l as usize) as i32;
        let mut g = GrownTree {
            feature: vec![0; nodes],
            bin: vec![0; nodes],
            left: vec![0; nodes],
            right: vec![0; nodes],
            values: vec![0.0; leaves],
            n_leaves: tree.n_leaves,
            depth: tree.depth,
            importance: Vec::new(),
        };
        for i in 0..nodes {
            let j = new_of(i);
            if tree.feature[i] == LEAF {
                g.feature[j] = -1;
                g.left[j] = leaf_of(tree.left[i]);
                g.right[j] = g.left[j];
                g.values[g.left[j] as usize] = tree.values[tree.left[i] as usize];
            } else {
                g.feature[j] = i32::from(tree.feature[i]);
                g.bin[j] = i32::from(tree.bin[i]);
                g.left[j] = new_of(tree.left[i] as usize) as i32;
                g.right[j] = new_of(tree.right[i] as usize) as i32;
            }
        }
        g
    }

    #[test]
    fn a_tree_grown_in_another_order_is_renumbered_depth_first() {
        let tree = cpu_tree();
        assert!(tree.feature.len() > 9, "{} nodes", tree.feature.len());
        assert_eq!(depth_first(&scrambled(&tree), 1).unwrap(), tree);
    }

    #[test]
    fn arrays_that_are_no_tree_are_refused_by_node() {
        let tree = cpu_tree();
        let good = scrambled(&tree);
        let split = (0..good.feature.len())
            .find(|&i| good.feature[i] >= 0 && i > 0)
            .unwrap();
        // A child pointing back at the root: a cycle.
        let mut cycle = good.clone();
        cycle.left[split] = 0;
        let err = depth_first(&cycle, 1).unwrap_err();
        assert!(err.contains("reached twice"), "{err}");
        // A child out of range.
        let mut far = good.clone();
        far.right[split] = good.feature.len() as i32;
        assert!(depth_first(&far, 1).unwrap_err().contains("out of range"));
        // A leaf whose values row does not exist.
        let mut leaf = good.clone();
        let l = good.feature.iter().position(|&f| f == -1).unwrap();
        leaf.left[l] = tree.n_leaves as i32;
        assert!(depth_first(&leaf, 1).unwrap_err().contains("leaf"));
        // A node nobody points to.
        let mut extra = good.clone();
        extra.feature.push(-1);
        extra.bin.push(0);
        extra.left.push(0);
        extra.right.push(0);
        let err = depth_first(&extra, 1).unwrap_err();
        assert!(err.contains("reached from the root"), "{err}");
    }

    #[test]
    fn a_node_stream_depends_on_its_path_only() {
        let root = 12345;
        let (l, r) = (child_seed(root, false), child_seed(root, true));
        assert_ne!(l, r);
        assert_ne!(child_seed(l, false), child_seed(r, false));
        assert_eq!(
            child_seed(l, true),
            child_seed(child_seed(root, false), true)
        );
    }
}
