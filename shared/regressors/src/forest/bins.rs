//! Quantile binning: each feature's training values are cut into at most `max_bins` bins at
//! midpoints between distinct values, so that a split "bin ≤ b" is the split
//! "x ≤ edge[b]" on raw values, with the threshold where scikit-learn would put it (halfway
//! between two neighbouring training values). Features with at most `max_bins` distinct
//! values get one bin per value: on such data the histogram trees are exact.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::matrix::Matrix;

/// Per feature, the ascending upper edges of every bin but the last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinEdges {
    pub edges: Vec<Vec<f64>>,
}

/// A halfway point between two distinct values that is strictly below the upper one (as
/// scikit-learn's splitter ensures when the two are adjacent floats).
fn midpoint(a: f64, b: f64) -> f64 {
    let m = a / 2.0 + b / 2.0;
    if m >= b || m < a { a } else { m }
}

fn feature_edges(mut column: Vec<f64>, max_bins: usize) -> Vec<f64> {
    column.sort_unstable_by(f64::total_cmp);
    let mut distinct = column.clone();
    distinct.dedup();
    if distinct.len() <= max_bins {
        return distinct.windows(2).map(|w| midpoint(w[0], w[1])).collect();
    }
    let n = column.len();
    let mut edges: Vec<f64> = (1..max_bins)
        .filter_map(|j| {
            // The edge after the first j·n/max_bins values (their largest, then the next).
            let v = column[(j * n / max_bins).clamp(1, n) - 1];
            let i = distinct.partition_point(|&u| u <= v);
            (i < distinct.len()).then(|| midpoint(distinct[i - 1], distinct[i]))
        })
        .collect();
    edges.dedup();
    edges
}

impl BinEdges {
    /// Edges from training rows (finite values, checked by the caller).
    pub fn fit(x: &Matrix, max_bins: usize) -> BinEdges {
        let edges = (0..x.cols)
            .into_par_iter()
            .map(|f| feature_edges((0..x.rows).map(|r| x.get(r, f)).collect(), max_bins))
            .collect();
        BinEdges { edges }
    }

    pub fn n_features(&self) -> usize {
        self.edges.len()
    }

    /// The number of bins of each feature.
    pub fn n_bins(&self) -> Vec<usize> {
        self.edges.iter().map(|e| e.len() + 1).collect()
    }

    /// The bin of `value` in feature `f`: the number of edges below it.
    pub fn bin(&self, f: usize, value: f64) -> u8 {
        self.edges[f].partition_point(|&e| e < value) as u8
    }

    /// Column-major bins (`bins[f·rows + r]`), the layout tree growing scans.
    pub fn bin_columns(&self, x: &Matrix) -> Vec<u8> {
        let mut out = vec![0u8; x.rows * x.cols];
        out.par_chunks_mut(x.rows.max(1))
            .enumerate()
            .for_each(|(f, col)| {
                for (r, b) in col.iter_mut().enumerate() {
                    *b = self.bin(f, x.get(r, f));
                }
            });
        out
    }

    /// Row-major bins (`bins[r·cols + f]`), the layout prediction walks.
    pub fn bin_rows(&self, x: &Matrix) -> Vec<u8> {
        let lookup = self.lookup();
        let mut out = vec![0u8; x.rows * x.cols];
        out.par_chunks_mut(x.cols.max(1))
            .zip(x.values.par_chunks(x.cols.max(1)))
            .for_each(|(bins, row)| {
                for (f, (b, &v)) in bins.iter_mut().zip(row).enumerate() {
                    *b = lookup.bin(f, v);
                }
            });
        out
    }

    /// Row-major bins packed four to a 32-bit word, the lowest byte first, each row starting
    /// on a word (`cols.div_ceil(4)` words a row): the upload of a GPU walk. The same bins as
    /// [`Self::bin_rows`], found a block of rows at a time, feature by feature, so that one
    /// feature's cells stay in cache and its inner loop has one fixed shape.
    pub fn bin_rows_packed(&self, x: &Matrix) -> Vec<u32> {
        self.lookup().pack_rows(&x.values, x.cols)
    }

    /// An index for binning many values (predictions): the same answers as [`Self::bin`].
    pub fn lookup(&self) -> BinLookup {
        BinLookup {
            features: self.edges.par_iter().map(|e| Cells::new(e)).collect(),
        }
    }
}

/// One feature's bins of a block of row-major rows, ORed into its byte of the packed words.
struct PackedColumn<'a> {
    packed: &'a mut [u32],
    rows: &'a [f64],
    f: usize,
    d: usize,
    words: usize,
}

impl PackedColumn<'_> {
    #[inline(always)]
    fn fill(self, bin: impl Fn(f64) -> u8) {
        let (word, shift) = (self.f / 4, 8 * (self.f % 4));
        for (w, row) in self
            .packed
            .chunks_exact_mut(self.words)
            .zip(self.rows.chunks_exact(self.d))
        {
            w[word] |= u32::from(bin(row[self.f])) << shift;
        }
    }
}

/// Cells per feature of a [`BinLookup`] to start with; doubled (up to [`MAX_CELLS`]) while a
/// cell holds more than [`DENSE_WIDTH`] edges.
const FIRST_CELLS: usize = 1024;
const MAX_CELLS: usize = 16_384;
const DENSE_WIDTH: usize = 2;

/// One feature's equal cells over its edge range. A value's cell is `(v − lo)·scale`, clamped;
/// the edges' own cells come from the same expression, and since it never decreases as `v`
/// grows, every edge of an earlier cell is below the value and every edge of a later cell
/// above it. So a value's bin is the edges before its cell plus those of its cell below it:
/// `start[cell]` and at most `width` compares, with no branch on the value.
struct Cells {
    lo: f64,
    scale: f64,
    last: f64,
    /// Per cell: the edges in earlier cells.
    start: Vec<u8>,
    /// The edges, then `width` infinities, so that `width` compares never run off the end.
    edges: Vec<f64>,
    /// The most edges in one cell.
    width: usize,
}

impl Cells {
    fn new(edges: &[f64]) -> Cells {
        let (lo, hi) = match (edges.first(), edges.last()) {
            (Some(&lo), Some(&hi)) => (lo, hi),
            _ => (0.0, 0.0),
        };
        let mut cells = FIRST_CELLS;
        loop {
            let scale = cells as f64 / (hi - lo);
            // One edge, or a range too wide or too narrow for cells: one cell of every edge.
            let scale = if scale.is_finite() { scale } else { 0.0 };
            let mut c = Cells {
                lo,
                scale,
                last: (cells - 1) as f64,
                start: vec![0; cells],
                edges: Vec::new(),
                width: 0,
            };
            let mut count = vec![0usize; cells];
            for &e in edges {
                count[c.cell(e)] += 1;
            }
            let mut below = 0usize;
            for (s, &n) in c.start.iter_mut().zip(&count) {
                *s = below as u8;
                below += n;
            }
            c.width = count.iter().copied().max().unwrap_or(0);
            if c.width <= DENSE_WIDTH || cells >= MAX_CELLS || scale == 0.0 {
                c.edges = edges.to_vec();
                c.edges.resize(edges.len() + c.width, f64::INFINITY);
                return c;
            }
            cells *= 2;
        }
    }

    fn view(&self) -> CellsView<'_> {
        CellsView {
            lo: self.lo,
            scale: self.scale,
            last: self.last,
            start: &self.start,
            edges: &self.edges,
            width: self.width,
        }
    }

    fn cell(&self, v: f64) -> usize {
        self.view().cell(v)
    }
}

/// [`Cells`] borrowed, to be copied into a loop.
#[derive(Clone, Copy)]
struct CellsView<'a> {
    lo: f64,
    scale: f64,
    last: f64,
    start: &'a [u8],
    edges: &'a [f64],
    width: usize,
}

impl CellsView<'_> {
    /// The clamps come first, in floating point: NaN lands in cell 0 (`max` drops it), where
    /// no edge is below it.
    #[inline(always)]
    fn cell(&self, v: f64) -> usize {
        ((v - self.lo) * self.scale).max(0.0).min(self.last) as u32 as usize
    }

    #[inline(always)]
    fn bin_fixed<const K: usize>(&self, v: f64) -> u8 {
        let s = usize::from(self.start[self.cell(v)]);
        let above: &[f64; K] = self.edges[s..s + K].try_into().expect("K edges");
        s as u8 + above.iter().map(|&e| u8::from(e < v)).sum::<u8>()
    }

    #[inline(always)]
    fn bin(&self, v: f64) -> u8 {
        let s = usize::from(self.start[self.cell(v)]);
        let above = &self.edges[s..s + self.width];
        s as u8 + above.iter().map(|&e| u8::from(e < v)).sum::<u8>()
    }
}

/// Binning without a search: the same answers as [`BinEdges::bin`], several times faster for
/// a prediction's hundred thousand rows.
pub struct BinLookup {
    features: Vec<Cells>,
}

impl BinLookup {
    pub fn bin(&self, f: usize, value: f64) -> u8 {
        self.features[f].view().bin(value)
    }

    /// [`BinEdges::bin_rows_packed`] of the row-major rows `values` (`d` a row).
    pub fn pack_rows(&self, values: &[f64], d: usize) -> Vec<u32> {
        const BLOCK_ROWS: usize = 256;
        let words = d.div_ceil(4);
        let rows = values.len().checked_div(d).unwrap_or(0);
        let mut out = vec![0u32; rows * words];
        if d == 0 {
            return out;
        }
        out.par_chunks_mut(words * BLOCK_ROWS)
            .zip(values.par_chunks(d * BLOCK_ROWS))
            .for_each(|(packed, rows)| {
                for (f, cells) in self.features.iter().enumerate() {
                    let block = PackedColumn {
                        packed: &mut *packed,
                        rows,
                        f,
                        d,
                        words,
                    };
                    // A copy of the feature's fields, so that they stay in registers.
                    let c = cells.view();
                    match c.width {
                        0 => {} // no edges: every bin is 0, already there
                        1 => block.fill(move |v| c.bin_fixed::<1>(v)),
                        2 => block.fill(move |v| c.bin_fixed::<2>(v)),
                        3 => block.fill(move |v| c.bin_fixed::<3>(v)),
                        4 => block.fill(move |v| c.bin_fixed::<4>(v)),
                        _ => block.fill(move |v| c.bin(v)),
                    }
                }
            });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookup_bins_exactly_as_the_binary_search() {
        assert!(
            clustered_edges().windows(2).all(|w| w[0] < w[1]),
            "edges ascend"
        );
        let mut rng = forexgpt_random::SplitMix64::new(3);
        let values: Vec<f64> = (0..4000).map(|_| rng.normal() * 2.0).collect();
        let x = Matrix::new(1000, 4, values).unwrap();
        let mut b = BinEdges::fit(&x, 256);
        b.edges.push(Vec::new()); // a constant feature: no edges
        b.edges.push(vec![0.5]); // one edge
        b.edges.push(vec![-1e300, 0.0, 1e300]); // a huge range
        b.edges.push(vec![-f64::MAX, f64::MAX]); // a range wider than a float
        b.edges.push(vec![1.0, 1.0f64.next_up()]); // a range narrower than a cell's width
        b.edges.push(clustered_edges()); // cells doubled, then one still holding ten edges
        let lookup = b.lookup();
        // The clustered feature takes the loop over a variable number of compares.
        assert!(lookup.features.last().unwrap().width > 4);
        assert!(lookup.features[..4].iter().all(|c| c.width <= DENSE_WIDTH));
        for f in 0..b.edges.len() {
            let probes = (0..3000)
                .map(|_| rng.normal() * 3.0)
                .chain(b.edges[f].iter().copied())
                .chain(b.edges[f].iter().map(|e| e.next_up()))
                .chain(b.edges[f].iter().map(|e| e.next_down()))
                .chain([f64::NEG_INFINITY, f64::INFINITY, f64::NAN, 0.0, -0.0, 1e308]);
            for v in probes {
                assert_eq!(lookup.bin(f, v), b.bin(f, v), "feature {f}, value {v}");
            }
        }
    }

    /// Ten edges a ten-billionth apart, then a few far away: no cell count separates them.
    fn clustered_edges() -> Vec<f64> {
        (0..10)
            .map(|i| f64::from(i) * 1e-10)
            .chain([0.5, 3.0, 1e6])
            .collect()
    }

    #[test]
    fn packed_bins_are_the_searched_bins_four_to_a_word() {
        let mut rng = forexgpt_random::SplitMix64::new(9);
        for (rows, d) in [(1000, 7), (300, 1), (257, 8), (0, 5)] {
            let x = Matrix::new(rows, d, (0..rows * d).map(|_| rng.normal()).collect()).unwrap();
            let fitted = 50.min(rows);
            let train = Matrix::new(fitted, d, x.values[..fitted * d].to_vec()).unwrap();
            let mut b = BinEdges::fit(&train, 256);
            if d == 8 {
                // No edges, a fixed width of four compares, and the variable-width loop.
                b.edges[1] = Vec::new();
                b.edges[2] = vec![0.0, 1e-12, 2e-12, 3e-12, 4.0];
                b.edges[3] = clustered_edges();
            }
            // The binary search, value by value, is the oracle of both layouts.
            let bins: Vec<u8> = (0..rows * d).map(|i| b.bin(i % d, x.values[i])).collect();
            assert_eq!(b.bin_rows(&x), bins, "{rows} × {d}");
            let packed = b.bin_rows_packed(&x);
            let words = d.div_ceil(4);
            assert_eq!(packed.len(), rows * words);
            let unpacked: Vec<u8> = packed
                .chunks(words.max(1))
                .flat_map(|w| (0..d).map(move |f| (w[f / 4] >> (8 * (f % 4))) as u8))
                .collect();
            assert_eq!(unpacked, bins, "{rows} × {d}");
            // Bytes past a row's last feature stay zero.
            for w in packed.chunks(words.max(1)) {
                assert_eq!(u64::from(w[words - 1]) >> (8 * (d - 4 * (words - 1))), 0);
            }
        }
    }

    #[test]
    fn few_distinct_values_get_one_bin_each_with_midpoint_edges() {
        let x = Matrix::new(5, 1, vec![3.0, 1.0, 2.0, 1.0, 3.0]).unwrap();
        let b = BinEdges::fit(&x, 256);
        assert_eq!(b.edges[0], vec![1.5, 2.5]);
        assert_eq!(b.bin_columns(&x), vec![2, 0, 1, 0, 2]);
        // a value on an edge goes left, as "x <= threshold" does
        assert_eq!(b.bin(0, 1.5), 0);
        assert_eq!(b.bin(0, 1.5000001), 1);
        assert_eq!(b.bin(0, -100.0), 0);
        assert_eq!(b.bin(0, 100.0), 2);
    }

    #[test]
    fn many_distinct_values_are_cut_at_quantiles() {
        let n = 10_000;
        let x = Matrix::new(n, 1, (0..n).map(|i| (i * 7919 % n) as f64).collect()).unwrap();
        let b = BinEdges::fit(&x, 16);
        assert_eq!(b.edges[0].len(), 15);
        let bins = b.bin_columns(&x);
        let mut counts = [0usize; 16];
        bins.iter().for_each(|&v| counts[v as usize] += 1);
        assert!(counts.iter().all(|&c| c == n / 16), "{counts:?}");
        assert!(b.edges[0].windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn adjacent_floats_keep_the_threshold_below_the_upper_value() {
        let a = 1.0f64;
        let b = f64::from_bits(a.to_bits() + 1);
        assert_eq!(midpoint(a, b), a);
        assert!(midpoint(1.0, 2.0) == 1.5);
    }
}
