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
    /// feature's lookup stays in cache while it bins the block.
    pub fn bin_rows_packed(&self, x: &Matrix) -> Vec<u32> {
        const BLOCK_ROWS: usize = 256;
        let (d, words) = (x.cols, x.cols.div_ceil(4));
        let mut out = vec![0u32; x.rows * words];
        if d == 0 {
            return out;
        }
        let lookup = self.lookup();
        out.par_chunks_mut(words * BLOCK_ROWS)
            .zip(x.values.par_chunks(d * BLOCK_ROWS))
            .for_each(|(packed, rows)| {
                for f in 0..d {
                    let (word, shift) = (f / 4, 8 * (f % 4));
                    for (w, row) in packed.chunks_exact_mut(words).zip(rows.chunks_exact(d)) {
                        w[word] |= u32::from(lookup.bin(f, row[f])) << shift;
                    }
                }
            });
        out
    }

    /// An index for binning many values (predictions): the same answers as [`Self::bin`].
    pub fn lookup(&self) -> BinLookup<'_> {
        let cells = self
            .edges
            .iter()
            .map(|e| match (e.first(), e.last()) {
                (Some(&lo), Some(&hi)) if hi > lo => {
                    let scale = LOOKUP_CELLS as f64 / (hi - lo);
                    let start = (0..LOOKUP_CELLS)
                        .map(|c| e.partition_point(|&x| x < lo + c as f64 / scale) as u8)
                        .collect();
                    Cells { lo, scale, start }
                }
                _ => Cells {
                    lo: 0.0,
                    scale: 0.0,
                    start: Vec::new(),
                },
            })
            .collect();
        BinLookup {
            edges: &self.edges,
            cells,
        }
    }
}

/// Cells per feature of a [`BinLookup`]: with ≤ 255 edges at quantiles, most cells hold at
/// most one edge, so a value's bin is found in a step or two.
const LOOKUP_CELLS: usize = 1024;

struct Cells {
    lo: f64,
    scale: f64,
    /// Per cell: the edges below its start (a first guess for values in it).
    start: Vec<u8>,
}

/// Binning by a guess from equal cells over each feature's edge range, corrected by a short
/// walk over the edges: the answer is exactly [`BinEdges::bin`]'s (the walk does not trust the
/// guess), about 3× faster than a binary search for a prediction's hundred thousand rows.
pub struct BinLookup<'a> {
    edges: &'a [Vec<f64>],
    cells: Vec<Cells>,
}

impl BinLookup<'_> {
    pub fn bin(&self, f: usize, value: f64) -> u8 {
        let e = &self.edges[f];
        let c = &self.cells[f];
        // Below the first edge, NaN included: no edge is below the value.
        if value.is_nan() || value <= c.lo || c.start.is_empty() {
            return e.partition_point(|&x| x < value) as u8;
        }
        let cell = (((value - c.lo) * c.scale) as usize).min(LOOKUP_CELLS - 1);
        let mut j = usize::from(c.start[cell]);
        while j > 0 && e[j - 1] >= value {
            j -= 1;
        }
        while j < e.len() && e[j] < value {
            j += 1;
        }
        j as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookup_bins_exactly_as_the_binary_search() {
        let mut rng = forexgpt_random::SplitMix64::new(3);
        let values: Vec<f64> = (0..4000).map(|_| rng.normal() * 2.0).collect();
        let x = Matrix::new(1000, 4, values).unwrap();
        let mut b = BinEdges::fit(&x, 256);
        b.edges.push(Vec::new()); // a constant feature: no edges
        b.edges.push(vec![0.5]); // one edge
        b.edges.push(vec![-1e300, 0.0, 1e300]); // a huge range
        let lookup = b.lookup();
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

    #[test]
    fn packed_bins_are_the_row_bins_four_to_a_word() {
        let mut rng = forexgpt_random::SplitMix64::new(9);
        for (rows, d) in [(1000, 7), (300, 1), (257, 8), (0, 5)] {
            let x = Matrix::new(rows, d, (0..rows * d).map(|_| rng.normal()).collect()).unwrap();
            let fitted = 50.min(rows);
            let train = Matrix::new(fitted, d, x.values[..fitted * d].to_vec()).unwrap();
            let b = BinEdges::fit(&train, 256);
            let bins = b.bin_rows(&x);
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
