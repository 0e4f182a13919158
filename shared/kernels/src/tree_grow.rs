//! Random-forest trees grown a level at a time on any cubecl runtime (wgpu: Vulkan, Metal,
//! DX12), the host choosing what the device cannot choose exactly.
//!
//! The device keeps, per tree and per feature, the tree's in-bag rows sorted by their bin of
//! that feature ("presorted lists", as classic tree builders keep them). A node's rows are one
//! segment of each of its tree's lists, at the same place in every list, so a node's split
//! search on a feature is one pass over a sorted segment: no histogram (WGSL has no float
//! atomics) and no sort. After a level's splits, each list's segments are partitioned stably
//! into the children's segments, which keeps them sorted.
//!
//! One launch per level searches every open node of every tree: a cube per node, a unit per
//! feature. Each unit scans its feature's segment in float32 (sums of `weight · y`, the
//! split proxy `Σ L²/W_L + Σ R²/W_R` of the CPU builder); the cube then keeps the best
//! candidate of the node's visited features and says whether another candidate comes within
//! [`close_call`] of it. Float64 exists on neither Metal nor WGSL, so a close call is not decided
//! here: the host decides it in float64 from the node's rows, exactly as the CPU builder does.
//! On data whose sums are exact in float32 (integers, as the CUDA builder's guarantee reads)
//! every other choice is the CPU's too, so the trees are the CPU's trees.
//!
//! The features a node visits come from the node's own random stream (SplitMix64, computed
//! here on pairs of 32-bit words: WGSL has no 64-bit integers), as the CPU draws them.
//!
//! The host keeps the trees: it numbers nodes, computes their statistics in float64 (leaf
//! values, impurity), decides splittability and tells the device each split's left count.

use cubecl::prelude::*;

use std::future::Future;
use std::pin::Pin;

use cubecl::bytes::Bytes;
use cubecl::server::{Handle, ServerError};

use crate::fused_mlp::array_arg;

/// How the device's walks go, for measurements and tests ([`Tuning::for_outputs`] otherwise):
/// how many rows each unit loads together in the split search, the partition and the presort
/// (batches keep a unit's walk of a long segment from waiting on memory one row at a time),
/// and from how many rows on a node's walks are split into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    pub scan: usize,
    pub partition: usize,
    pub presort: usize,
    pub big_rows: u32,
}

impl Tuning {
    /// The defaults for `k` outputs.
    pub fn for_outputs(k: usize) -> Self {
        Tuning {
            scan: (64 / k.max(1)).clamp(1, 4),
            partition: 4,
            presort: 4,
            big_rows: BIG_ROWS,
        }
    }

    /// Each batch within 1..=32, the scan's within `64 / k` too (its rows' targets stay in
    /// registers); `big_rows` at least 1.
    fn clamped(self, k: usize) -> Self {
        Tuning {
            scan: self.scan.clamp(1, (64 / k.max(1)).clamp(1, 32)),
            partition: self.partition.clamp(1, 32),
            presort: self.presort.clamp(1, 32),
            big_rows: self.big_rows.max(1),
        }
    }
}

/// Units of a cube: each takes features `u, u + UNITS, …` of the cube's node.
const UNITS: u32 = 64;

/// A candidate within this relative distance of the best is a close call, decided by the
/// host in float64: twice the float32 proxy's worst error when its sums are exact (integer
/// data), `(k + 2)` roundings of 2⁻²⁴ each, with a factor two to spare (1.4e-6 for four
/// outputs).
pub fn close_call(k: usize) -> f32 {
    (k + 2) as f32 * (1.0 / 4_194_304.0)
}

/// Most features the device grower takes (a node's search keeps 36 bytes of workgroup memory
/// a feature: its best and second proxies, bin, draw, permutation slot and set hashes; 13.5
/// KiB for this many, under WebGPU's 16 KiB).
pub const MAX_FEATURES: usize = 384;

/// Chunks of a big node's segments: `UNITS · CHUNKS` units a workgroup, WebGPU's default
/// limit (256).
const CHUNKS: usize = 4;

/// Nodes of at least this many rows are big, by default: their walks are split in
/// [`CHUNKS`] chunks.
const BIG_ROWS: u32 = 512;

/// Workgroup memory a portable device gives at least (WebGPU's default, 16 KiB).
const WORKGROUP_BYTES: usize = 16 << 10;

/// Bytes of workgroup memory `scan_nodes` takes for `d` features, `k` outputs, `chunks`.
fn scan_workgroup_bytes(d: usize, k: usize, chunks: usize) -> usize {
    let lanes = UNITS as usize * chunks;
    let exchanged = if chunks > 1 { lanes } else { 1 };
    4 * (lanes + (k + 1) + 9 * d + exchanged * (k + 1) + exchanged * 5)
}

/// Most rows: a list entry packs `row << 8 | bin` in 32 bits.
pub const MAX_ROWS: usize = 1 << 24;

/// Bytes of one list buffer at most: WebGPU's default binding limit (128 MiB).
const LIST_BYTES: usize = 128 << 20;

/// The high word of `a · b` (WGSL has no widening multiply), from 16-bit halves.
#[cube]
fn mul_hi(a: u32, b: u32) -> u32 {
    let a0 = a & 0xFFFFu32;
    let a1 = a >> 16u32;
    let b0 = b & 0xFFFFu32;
    let b1 = b >> 16u32;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    // The middle column with the high half of p00; its carries go up.
    let mid = (p00 >> 16u32) + (p01 & 0xFFFFu32) + (p10 & 0xFFFFu32);
    a1 * b1 + (p01 >> 16u32) + (p10 >> 16u32) + (mid >> 16u32)
}

/// SplitMix64's output function of the 64-bit state `hi:lo`: its high word when `high`, else
/// its low word. Products are modulo 2⁶⁴, from 32-bit words.
#[cube]
fn mix(lo: u32, hi: u32, #[comptime] high: bool) -> u32 {
    // z ^= z >> 30; z *= 0xBF58476D1CE4E5B9
    let l1 = lo ^ ((lo >> 30u32) | (hi << 2u32));
    let h1 = hi ^ (hi >> 30u32);
    let l2 = l1 * 0x1CE4_E5B9u32;
    let h2 = mul_hi(l1, 0x1CE4_E5B9u32) + l1 * 0xBF58_476Du32 + h1 * 0x1CE4_E5B9u32;
    // z ^= z >> 27; z *= 0x94D049BB133111EB
    let l3 = l2 ^ ((l2 >> 27u32) | (h2 << 5u32));
    let h3 = h2 ^ (h2 >> 27u32);
    let l4 = l3 * 0x1331_11EBu32;
    let h4 = mul_hi(l3, 0x1331_11EBu32) + l3 * 0x94D0_49BBu32 + h3 * 0x1331_11EBu32;
    // z ^ (z >> 31)
    let mut word = l4 ^ ((l4 >> 31u32) | (h4 << 1u32));
    if high {
        word = h4 ^ (h4 >> 31u32);
    }
    word
}

/// A row's 32-bit hash (murmur3's finalizer); a set of rows hashes to the wrapping sum.
#[cube]
fn row_hash(x: u32) -> u32 {
    let mut h = x ^ (x >> 16u32);
    h *= 0x85EB_CA6Bu32;
    h ^= h >> 13u32;
    h *= 0xC2B2_AE35u32;
    h ^ (h >> 16u32)
}

/// `(hi:lo) mod m` for `0 < m < 2¹⁶`.
#[cube]
fn mod64(lo: u32, hi: u32, m: u32) -> u32 {
    // 2³² mod m, then (hi · 2³² + lo) mod m with products below 2³².
    let base = (0xFFFF_FFFFu32 % m + 1u32) % m;
    ((hi % m) * base + lo % m) % m
}

/// Loads entries `i0 .. i0 + batch` of `list` from `base` (those below `hi`; zero beyond)
/// into `batch_e`, all before any is used: the device waits for memory once a batch instead
/// of once a row.
#[cube]
fn load_batch(
    list: &Array<u32>,
    base: usize,
    i0: usize,
    hi: usize,
    batch_e: &mut Array<u32>,
    #[comptime] batch: usize,
) {
    #[unroll]
    for q in 0..batch {
        let mut e = 0u32;
        if i0 + q < hi {
            e = list[base + i0 + q];
        }
        batch_e[q] = e;
    }
}

/// The weights (`weights[wbase + row]`) and `k` targets of the rows `batch_e` holds (those
/// below `hi`), all loaded before any is used, as in [`load_batch`].
#[cube]
#[allow(clippy::too_many_arguments)]
fn gather_batch(
    weights: &Array<u32>,
    y: &Array<f32>,
    wbase: usize,
    i0: usize,
    hi: usize,
    batch_e: &Array<u32>,
    batch_w: &mut Array<f32>,
    batch_y: &mut Array<f32>,
    #[comptime] k: usize,
    #[comptime] batch: usize,
) {
    #[unroll]
    for q in 0..batch {
        if i0 + q < hi {
            let r = (batch_e[q] >> 8u32) as usize;
            batch_w[q] = f32::cast_from(weights[wbase + r]);
            #[unroll]
            for j in 0..k {
                batch_y[q * k + j] = y[r * k + j];
            }
        }
    }
}

/// Where chunk `c` of `chunks` equal ones of a segment of `m` rows starts (`m` past the end).
#[cube]
fn chunk_start(m: usize, c: usize, #[comptime] chunks: usize) -> usize {
    let mut at = c * m.div_ceil(chunks);
    if at > m {
        at = m;
    }
    at
}

/// Every tree's in-bag rows per feature, sorted by bin: unit `(f, t)` keeps the rows of
/// `order`'s feature-`f` list (all rows, `row << 8 | bin`, sorted by bin then row) that tree
/// `t` drew, and writes how many to `counts`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn presort(
    order: &Array<u32>,
    weights: &Array<u32>,
    lists: &mut Array<u32>,
    counts: &mut Array<u32>,
    trees: u32,
    n: u32,
    d: u32,
    stride: u32,
    #[comptime] batch: usize,
) {
    let i = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) * CUBE_DIM_X + UNIT_POS_X;
    if i >= trees * d {
        terminate!();
    }
    // Neighbouring units: one feature, neighbouring trees (the same `order` word).
    let t = i % trees;
    let f = i / trees;
    let from = (f * n) as usize;
    let to = ((t * d + f) * stride) as usize;
    let w = (t * n) as usize;
    let mut batch_e = Array::<u32>::new(batch);
    let mut batch_w = Array::<u32>::new(batch);
    let mut c = 0u32;
    for j0 in range_stepped(0usize, n as usize, batch) {
        // A batch's loads first, then its weights.
        load_batch(order, from, j0, n as usize, &mut batch_e, batch);
        #[unroll]
        for q in 0..batch {
            let mut drawn = 0u32;
            if j0 + q < n as usize {
                drawn = weights[w + (batch_e[q] >> 8u32) as usize];
            }
            batch_w[q] = drawn;
        }
        #[unroll]
        for q in 0..batch {
            if batch_w[q] > 0u32 {
                lists[to + c as usize] = batch_e[q];
                c += 1u32;
            }
        }
    }
    counts[(t * d + f) as usize] = c;
}

/// One level's split search: cube `c` searches node `i = first + c` (`nodes[5i..]`: tree,
/// first list position, rows, seed low and high word). Writes `out[2i]` = feature,
/// `out[2i + 1]` = bin | found << 8 | close << 9.
///
/// `UNITS · chunks` units: unit `u` takes the features `u mod UNITS + j · UNITS` and, of each
/// feature's segment, chunk `u / UNITS` of `chunks` equal ones. With several chunks, a first
/// pass sums each chunk (weight, targets, row hashes) so that each unit starts its chunk's
/// walk from the sums of the chunks before; the chunks' best candidates are then merged in
/// order, as one walk over the whole segment would have found them. Big nodes take several
/// chunks: a walk waits on memory row after row, so its length, not the level's total work,
/// bounds a level with a big node.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn scan_nodes(
    lists: &Array<u32>,
    weights: &Array<u32>,
    y: &Array<f32>,
    nodes: &Array<u32>,
    out: &mut Array<u32>,
    first: u32,
    n_nodes: u32,
    n: u32,
    stride: u32,
    min_leaf: u32,
    max_features: u32,
    close: f32,
    #[comptime] d: usize,
    #[comptime] k: usize,
    #[comptime] batch: usize,
    #[comptime] chunks: usize,
) {
    let cube = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
    if cube >= n_nodes {
        terminate!();
    }
    let lanes = comptime!(UNITS as usize * chunks);
    let node = first + cube;
    let at = (node * 5u32) as usize;
    let t = nodes[at];
    let start = nodes[at + 1];
    let m = nodes[at + 2];
    let wbase = (t * n) as usize;
    // The node's weight and weighted target sums, in float32 from feature 0's list (every
    // list holds the node's rows): strided partial sums, added up by unit 0 in unit order.
    // The host's statistics (float64) are being computed meanwhile; on integer data both
    // are exact, so they agree.
    let mut acc = Array::<f32>::new(k + 1);
    #[unroll]
    for j in 0..k + 1 {
        acc[j] = 0.0f32;
    }
    let base0 = (t * d as u32 * stride + start) as usize;
    for i in range_stepped(UNIT_POS_X as usize, m as usize, lanes) {
        let r = (lists[base0 + i] >> 8u32) as usize;
        let w = f32::cast_from(weights[wbase + r]);
        acc[0] += w;
        #[unroll]
        for j in 0..k {
            acc[j + 1] += w * y[r * k + j];
        }
    }
    let mut part = SharedMemory::<f32>::new(lanes);
    let mut sum_of = SharedMemory::<f32>::new(k + 1);
    for j in 0..k + 1 {
        part[UNIT_POS_X as usize] = acc[j];
        sync_cube();
        if UNIT_POS_X == 0u32 {
            let mut s = 0.0f32;
            for u in 0..lanes {
                s += part[u];
            }
            sum_of[j] = s;
        }
        sync_cube();
    }
    let total_w = sum_of[0];
    let mut total = Array::<f32>::new(k);
    #[unroll]
    for j in 0..k {
        total[j] = sum_of[j + 1];
    }
    let mut best_of = SharedMemory::<f32>::new(d);
    let mut second_of = SharedMemory::<f32>::new(d);
    // bin | occupied-at-least-two << 8
    let mut bin_of = SharedMemory::<u32>::new(d);
    let mut perm = SharedMemory::<u32>::new(d);
    let mut moved = SharedMemory::<u32>::new(d);
    // Per feature: its best candidate's left rows and all rows as two 32-bit set hashes
    // each (sums of per-row hashes), by which twins are recognized.
    let mut sets = SharedMemory::<u32>::new(d * 4);
    let mut left = Array::<f32>::new(k);
    let mut batch_e = Array::<u32>::new(batch);
    let mut batch_w = Array::<f32>::new(batch);
    let mut batch_y = Array::<f32>::new(batch * k);
    // This unit's feature slot and chunk: rows `lo..hi` of each of its features' segments.
    let slot = (UNIT_POS_X % UNITS) as usize;
    let chunk = (UNIT_POS_X / UNITS) as usize;
    let lo = chunk_start(m as usize, chunk, chunks);
    let hi = chunk_start(m as usize, chunk + 1, chunks);
    // Chunks exchange their sums (first pass: weight and targets, two row hashes) and their
    // candidates (best, second; bin, the best's two left-set hashes, the set's two hashes).
    // (One word each with a single chunk, which exchanges nothing.)
    let exchanged = comptime!(if chunks > 1 { lanes } else { 1 });
    let mut chunk_f = SharedMemory::<f32>::new(comptime!(exchanged * (k + 1)));
    let mut chunk_u = SharedMemory::<u32>::new(comptime!(exchanged * 5));
    let lane = UNIT_POS_X as usize;
    for f0 in range_stepped(0usize, d, UNITS as usize) {
        let f = f0 + slot;
        let active = f < d;
        let base = ((t * d as u32 + f as u32) * stride + start) as usize;
        #[unroll]
        for j in 0..k {
            left[j] = 0.0f32;
        }
        let mut left_w = 0.0f32;
        let mut h1 = 0u32;
        let mut h2 = 0u32;
        // No bin is 256: the segment's first row opens the first occupied bin.
        let mut cur = 256u32;
        if comptime!(chunks > 1) {
            if active {
                for i0 in range_stepped(lo, hi, batch) {
                    load_batch(lists, base, i0, hi, &mut batch_e, batch);
                    gather_batch(
                        weights,
                        y,
                        wbase,
                        i0,
                        hi,
                        &batch_e,
                        &mut batch_w,
                        &mut batch_y,
                        k,
                        batch,
                    );
                    #[unroll]
                    for q in 0..batch {
                        if i0 + q < hi {
                            let r = batch_e[q] >> 8u32;
                            let w = batch_w[q];
                            h1 += row_hash(r + 1u32);
                            h2 += row_hash(r ^ 0xA511_E9B3u32);
                            left_w += w;
                            #[unroll]
                            for j in 0..k {
                                left[j] += w * batch_y[q * k + j];
                            }
                        }
                    }
                }
                chunk_f[lane * (k + 1)] = left_w;
                #[unroll]
                for j in 0..k {
                    chunk_f[lane * (k + 1) + 1 + j] = left[j];
                }
                chunk_u[lane * 5] = h1;
                chunk_u[lane * 5 + 1] = h2;
            }
            sync_cube();
            // This chunk starts from the sums of the chunks before it, in their order.
            #[unroll]
            for j in 0..k {
                left[j] = 0.0f32;
            }
            left_w = 0.0f32;
            h1 = 0u32;
            h2 = 0u32;
            if active {
                for before in 0..chunk {
                    let at = (before * UNITS as usize + slot) * (k + 1);
                    left_w += chunk_f[at];
                    #[unroll]
                    for j in 0..k {
                        left[j] += chunk_f[at + 1 + j];
                    }
                    let au = (before * UNITS as usize + slot) * 5;
                    h1 += chunk_u[au];
                    h2 += chunk_u[au + 1];
                }
                if lo > 0 {
                    cur = lists[base + lo - 1] & 255u32;
                }
            }
            sync_cube();
        }
        let mut best = 0.0f32;
        best -= 1.0f32;
        let mut second = 0.0f32;
        second -= 1.0f32;
        let mut bin = 0u32;
        let mut best_h1 = 0u32;
        let mut best_h2 = 0u32;
        if active {
            for i0 in range_stepped(lo, hi, batch) {
                load_batch(lists, base, i0, hi, &mut batch_e, batch);
                gather_batch(
                    weights,
                    y,
                    wbase,
                    i0,
                    hi,
                    &batch_e,
                    &mut batch_w,
                    &mut batch_y,
                    k,
                    batch,
                );
                #[unroll]
                for q in 0..batch {
                    if i0 + q < hi {
                        let e = batch_e[q];
                        // Rows on the left of a boundary before this row.
                        let left_n = (i0 + q) as u32;
                        let b = e & 255u32;
                        let r = e >> 8u32;
                        if b != cur {
                            // The boundary between occupied bins `cur` and `b`, if both sides
                            // keep `min_leaf` rows (and the left side any: not the first row).
                            if left_n > 0u32 && left_n >= min_leaf && m - left_n >= min_leaf {
                                let mut ll = 0.0f32;
                                let mut rr = 0.0f32;
                                #[unroll]
                                for j in 0..k {
                                    let l = left[j];
                                    let q = total[j] - l;
                                    ll += l * l;
                                    rr += q * q;
                                }
                                let p = ll / left_w + rr / (total_w - left_w);
                                if p > best {
                                    second = best;
                                    best = p;
                                    bin = cur + (b - cur - 1u32) / 2u32;
                                    best_h1 = h1;
                                    best_h2 = h2;
                                } else if p > second {
                                    second = p;
                                }
                            }
                            cur = b;
                        }
                        let w = batch_w[q];
                        h1 += row_hash(r + 1u32);
                        h2 += row_hash(r ^ 0xA511_E9B3u32);
                        left_w += w;
                        #[unroll]
                        for j in 0..k {
                            left[j] += w * batch_y[q * k + j];
                        }
                    }
                }
            }
        }
        if comptime!(chunks > 1) {
            if active {
                chunk_f[lane * (k + 1)] = best;
                chunk_f[lane * (k + 1) + 1] = second;
                chunk_u[lane * 5] = bin;
                chunk_u[lane * 5 + 1] = best_h1;
                chunk_u[lane * 5 + 2] = best_h2;
                chunk_u[lane * 5 + 3] = h1;
                chunk_u[lane * 5 + 4] = h2;
            }
            sync_cube();
            if active && chunk == 0 {
                // The chunks in order: a later chunk leads only if strictly better.
                for later in 1..chunks {
                    let at = (later * UNITS as usize + slot) * (k + 1);
                    let au = (later * UNITS as usize + slot) * 5;
                    let p = chunk_f[at];
                    if p > best {
                        second = best;
                        if chunk_f[at + 1] > second {
                            second = chunk_f[at + 1];
                        }
                        best = p;
                        bin = chunk_u[au];
                        best_h1 = chunk_u[au + 1];
                        best_h2 = chunk_u[au + 2];
                    } else if p > second {
                        second = p;
                    }
                }
                // The last chunk's running hashes cover every row of the segment.
                let last = ((chunks - 1) * UNITS as usize + slot) * 5;
                h1 = chunk_u[last + 3];
                h2 = chunk_u[last + 4];
            }
        }
        if active && chunk == 0 {
            best_of[f] = best;
            second_of[f] = second;
            sets[f * 4] = best_h1;
            sets[f * 4 + 1] = best_h2;
            sets[f * 4 + 2] = h1;
            sets[f * 4 + 3] = h2;
            // Two occupied bins or more: the sorted segment's first and last bins differ.
            let mut flags = bin;
            if (lists[base] & 255u32) != (lists[base + m as usize - 1] & 255u32) {
                flags |= 256u32;
            }
            bin_of[f] = flags;
        }
        if comptime!(chunks > 1) {
            sync_cube();
        }
    }
    // The node's draws, all at once: draw `i` of the stream SplitMix64::new(seed) mixes the
    // state `seed + (i + 1) · 0x9E3779B97F4A7C15` (mod 2⁶⁴), so each unit takes its own.
    let seed_lo = nodes[at + 3];
    let seed_hi = nodes[at + 4];
    for i in range_stepped(UNIT_POS_X as usize, d, lanes) {
        let c = i as u32 + 1u32;
        let step_lo = c * 0x7F4A_7C15u32;
        let step_hi = c * 0x9E37_79B9u32 + mul_hi(c, 0x7F4A_7C15u32);
        let lo = seed_lo + step_lo;
        let mut carry = 0u32;
        if lo < seed_lo {
            carry = 1u32;
        }
        let hi = seed_hi + step_hi + carry;
        let zl = mix(lo, hi, false);
        let zh = mix(lo, hi, true);
        perm[i] = i as u32 + mod64(zl, zh, d as u32 - i as u32);
        moved[i] = i as u32;
    }
    sync_cube();
    if UNIT_POS_X == 0u32 {
        // The CPU's visit: features drawn without replacement (position `i` swapped with
        // its draw) until `max_features` with two or more occupied bins were visited; the
        // first strictly better candidate leads. `perm` holds the draws, `moved` the
        // permutation as the swaps go.
        let mut best = 0.0f32;
        best -= 1.0f32;
        let mut second = 0.0f32;
        second -= 1.0f32;
        let mut best_f = 0u32;
        let mut visited = 0u32;
        for i in 0..d {
            if visited < max_features {
                let j = perm[i] as usize;
                let f = moved[j];
                moved[j] = moved[i];
                moved[i] = f;
                if bin_of[f as usize] >= 256u32 {
                    visited += 1u32;
                    let p = best_of[f as usize];
                    // A twin of the leader splits the node's rows into the same two sets
                    // (either way round): the same proxy in exact arithmetic, so it loses to
                    // the leader, visited first, as on the CPU. Its other candidates still
                    // count towards a close call.
                    let fa = best_f as usize * 4;
                    let fb = f as usize * 4;
                    let mut twin: u32 = 0u32;
                    if best >= 0.0f32 && p >= 0.0f32 {
                        if sets[fb] == sets[fa] && sets[fb + 1] == sets[fa + 1] {
                            twin = 1u32;
                        }
                        if sets[fb] == sets[fa + 2] - sets[fa]
                            && sets[fb + 1] == sets[fa + 3] - sets[fa + 1]
                        {
                            twin = 1u32;
                        }
                    }
                    if twin == 1u32 {
                        if second_of[f as usize] > second {
                            second = second_of[f as usize];
                        }
                    } else if p > best {
                        if best > second {
                            second = best;
                        }
                        best = p;
                        best_f = f;
                        if second_of[f as usize] > second {
                            second = second_of[f as usize];
                        }
                    } else if p > second {
                        second = p;
                    }
                }
            }
        }
        let mut word = 0u32;
        if best >= 0.0f32 {
            word = (bin_of[best_f as usize] & 255u32) | 256u32;
            if second >= 0.0f32 && second >= best - best * close {
                word |= 512u32;
            }
        }
        out[node as usize * 2] = best_f;
        out[node as usize * 2 + 1] = word;
    }
}

/// One level's partition: cube `c` moves split node `first + c`'s rows (`nodes[5i..]`: tree,
/// first list position, rows, split `feature << 8 | bin`, rows going left) from `src` to `dst`,
/// stably, left ones first, in every feature's list. `bins`: each row's bins, four to a
/// word, `words` words a row. Units and chunks as in `scan_nodes`: with several chunks, a
/// first pass counts each chunk's left rows, so that each chunk knows where its rows go.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn partition_nodes(
    src: &Array<u32>,
    dst: &mut Array<u32>,
    bins: &Array<u32>,
    nodes: &Array<u32>,
    first: u32,
    n_nodes: u32,
    stride: u32,
    words: u32,
    #[comptime] d: usize,
    #[comptime] batch: usize,
    #[comptime] chunks: usize,
) {
    let cube = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
    if cube >= n_nodes {
        terminate!();
    }
    let at = ((first + cube) * 5u32) as usize;
    let t = nodes[at];
    let start = nodes[at + 1];
    let m = nodes[at + 2];
    let split = nodes[at + 3];
    let lefts = nodes[at + 4] as usize;
    let sf = split >> 8u32;
    let sb = split & 255u32;
    let word = (sf / 4u32) as usize;
    let shift = (sf % 4u32) * 8u32;
    let mut batch_e = Array::<u32>::new(batch);
    let mut batch_b = Array::<u32>::new(batch);
    let slot = (UNIT_POS_X % UNITS) as usize;
    let chunk = (UNIT_POS_X / UNITS) as usize;
    let lo = chunk_start(m as usize, chunk, chunks);
    let hi = chunk_start(m as usize, chunk + 1, chunks);
    let exchanged = comptime!(if chunks > 1 {
        UNITS as usize * chunks
    } else {
        1
    });
    let mut chunk_lefts = SharedMemory::<u32>::new(exchanged);
    let lane = UNIT_POS_X as usize;
    for f0 in range_stepped(0usize, d, UNITS as usize) {
        let f = f0 + slot;
        let active = f < d;
        let base = ((t * d as u32 + f as u32) * stride + start) as usize;
        // Rows of the chunks before this one that go left and right.
        let mut l = 0usize;
        let mut r = 0usize;
        if comptime!(chunks > 1) {
            if active {
                let mut count = 0u32;
                for i0 in range_stepped(lo, hi, batch) {
                    load_batch(src, base, i0, hi, &mut batch_e, batch);
                    #[unroll]
                    for q in 0..batch {
                        if i0 + q < hi {
                            let row = (batch_e[q] >> 8u32) as usize;
                            if ((bins[row * words as usize + word] >> shift) & 255u32) <= sb {
                                count += 1u32;
                            }
                        }
                    }
                }
                chunk_lefts[lane] = count;
            }
            sync_cube();
            if active {
                for before in 0..chunk {
                    l += chunk_lefts[before * UNITS as usize + slot] as usize;
                }
                r = lo - l;
            }
            sync_cube();
        }
        if active {
            for i0 in range_stepped(lo, hi, batch) {
                load_batch(src, base, i0, hi, &mut batch_e, batch);
                #[unroll]
                for q in 0..batch {
                    let mut b = 0u32;
                    if i0 + q < hi {
                        let row = (batch_e[q] >> 8u32) as usize;
                        b = (bins[row * words as usize + word] >> shift) & 255u32;
                    }
                    batch_b[q] = b;
                }
                #[unroll]
                for q in 0..batch {
                    if i0 + q < hi {
                        if batch_b[q] <= sb {
                            dst[base + l] = batch_e[q];
                            l += 1;
                        } else {
                            dst[base + lefts + r] = batch_e[q];
                            r += 1;
                        }
                    }
                }
            }
        }
    }
}

/// The training data as the device grower takes it.
pub struct LevelData<'a> {
    /// Per feature, every row as `row << 8 | bin`, sorted by bin then row: `d × n`.
    pub order: &'a [u32],
    /// Each row's bins, four to a 32-bit word (lowest byte first), `d.div_ceil(4)` words a row.
    pub packed: &'a [u32],
    /// Row-major targets, `n × k`, float32.
    pub y: &'a [f32],
    pub n: usize,
    pub d: usize,
    pub k: usize,
}

/// A node to search: its tree, the first position of its rows in the tree's lists, how many
/// rows, and its random stream's seed (for the feature draws).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanNode {
    pub tree: u32,
    pub start: u32,
    pub len: u32,
    pub seed: u64,
}

/// A split to apply: the node's rows go left when their bin of `feature` is at most `bin`;
/// `left` of them do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitNode {
    pub tree: u32,
    pub start: u32,
    pub len: u32,
    pub feature: u32,
    pub bin: u8,
    pub left: u32,
}

/// The device's answer for one node: its best candidate, or none (`found` false: no feature
/// has two occupied bins that keep `min_leaf` rows a side); `close` when another candidate
/// came within [`close_call`] of it (the host decides those).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub feature: u32,
    pub bin: u8,
    pub found: bool,
    pub close: bool,
}

/// A batch of trees whose lists fit one buffer.
struct Batch {
    trees: usize,
    weights: Handle,
    /// Ping-pong list buffers: `trees × d × stride` entries each.
    lists: [Handle; 2],
}

/// Trees growing on one device, a level per [`LevelGrower::step`].
pub struct LevelGrower<R: Runtime> {
    client: ComputeClient<R>,
    packed: Handle,
    y: Handle,
    batches: Vec<Batch>,
    /// Which of each batch's two list buffers holds the current segments.
    current: usize,
    n: usize,
    d: usize,
    k: usize,
    stride: usize,
    min_leaf: u32,
    max_features: u32,
    max_cubes: (u32, u32),
    tuning: Tuning,
    /// Chunks of a big node ([`CHUNKS`], or 1 where the workgroup memory is too small).
    chunks: usize,
    /// Per tree: its batch and its index there.
    place: Vec<(usize, u32)>,
}

impl<R: Runtime> LevelGrower<R> {
    /// Uploads the data and every tree's bootstrap (`weights(t)`: per row how often tree `t`
    /// drew it; `in_bag[t]` rows drawn at least once) and builds each tree's sorted lists.
    pub fn new(
        device: &R::Device,
        data: &LevelData<'_>,
        in_bag: &[usize],
        weights: &(dyn Fn(usize) -> Vec<u32> + Sync),
        min_leaf: usize,
        max_features: usize,
        tuning: Tuning,
    ) -> Result<Self, String> {
        let (n, d, k) = (data.n, data.d, data.k);
        let tuning = tuning.clamped(k);
        let words = d.div_ceil(4);
        if n == 0 || n >= MAX_ROWS || d == 0 || d > MAX_FEATURES || k == 0 || k > 64 {
            return Err(format!(
                "{n} rows × {d} features → {k} outputs: the device grower takes below \
                 {MAX_ROWS} rows, 1 to {MAX_FEATURES} features and 1 to 64 outputs"
            ));
        }
        if data.order.len() != n * d || data.packed.len() != n * words || data.y.len() != n * k {
            return Err(format!(
                "inconsistent forest data: {} order entries, {} packed words, {} targets for \
                 {n} × {d} → {k}",
                data.order.len(),
                data.packed.len(),
                data.y.len()
            ));
        }
        let stride = in_bag.iter().copied().max().unwrap_or(0).max(1);
        let per_tree = d * stride * 4;
        if per_tree > LIST_BYTES {
            return Err(format!(
                "one tree's sorted lists take {} MiB, more than a buffer's {} MiB",
                per_tree >> 20,
                LIST_BYTES >> 20
            ));
        }
        let started = std::time::Instant::now();
        let client = R::client(device);
        let max = client.properties().hardware.max_cube_count;
        let order = client.create_from_slice(u32::as_bytes(data.order));
        let mut grower = LevelGrower {
            packed: client.create_from_slice(u32::as_bytes(data.packed)),
            y: client.create_from_slice(f32::as_bytes(data.y)),
            batches: Vec::new(),
            current: 0,
            n,
            d,
            k,
            stride,
            min_leaf: min_leaf.max(1) as u32,
            max_features: max_features.min(d) as u32,
            max_cubes: (max.0, max.1),
            tuning,
            chunks: if scan_workgroup_bytes(d, k, CHUNKS) <= WORKGROUP_BYTES {
                CHUNKS
            } else {
                1
            },
            place: Vec::with_capacity(in_bag.len()),
            client,
        };
        let per_batch = (LIST_BYTES / per_tree).max(1);
        let trees = in_bag.len();
        for first_tree in (0..trees).step_by(per_batch) {
            let count = per_batch.min(trees - first_tree);
            let mut w = Vec::with_capacity(count * n);
            for t in first_tree..first_tree + count {
                let tw = weights(t);
                if tw.len() != n {
                    return Err(format!("tree {t}: {} weights for {n} rows", tw.len()));
                }
                w.extend_from_slice(&tw);
            }
            let client = &grower.client;
            let weights = client.create_from_slice(u32::as_bytes(&w));
            let entries = count * d * stride;
            let lists = [client.empty(entries * 4), client.empty(entries * 4)];
            let counts = client.empty(count * d * 4);
            let units = count * d;
            let (across, down) = grower.grid(units.div_ceil(256));
            // SAFETY: unit (f, t) reads `order[f·n .. f·n + n]` (`d × n` entries), weights
            // below `count · n` (each entry's row is below `n`, checked by the caller's
            // construction of `order` and re-checked through the counts read below), writes
            // at most `n_t ≤ stride` list entries from `(t·d + f)·stride` and one count.
            #[allow(unsafe_code)]
            unsafe {
                presort::launch_unchecked::<R>(
                    client,
                    CubeCount::Static(across, down, 1),
                    CubeDim::new_1d(256),
                    array_arg::<R>(&order, n * d),
                    array_arg::<R>(&weights, count * n),
                    array_arg::<R>(&lists[0], entries),
                    array_arg::<R>(&counts, count * d),
                    count as u32,
                    n as u32,
                    d as u32,
                    stride as u32,
                    tuning.presort,
                );
            }
            let read = cubecl::future::block_on(client.read_async(vec![counts]))
                .map_err(|e| format!("reading the sorted lists' lengths: {e}"))?;
            let got = u32::from_bytes(&read[0]);
            for (i, &c) in got.iter().enumerate() {
                let t = first_tree + i / d;
                if c as usize != in_bag[t] {
                    return Err(format!(
                        "tree {t}, feature {}: {c} rows in its sorted list, {} in its bootstrap",
                        i % d,
                        in_bag[t]
                    ));
                }
            }
            let b = grower.batches.len();
            grower.place.extend((0..count as u32).map(|i| (b, i)));
            grower.batches.push(Batch {
                trees: count,
                weights,
                lists,
            });
        }
        tracing::trace!(
            trees,
            batches = grower.batches.len(),
            chunks = grower.chunks,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "forest lists sorted on the device"
        );
        Ok(grower)
    }

    /// Cubes across and down for `cubes` cubes.
    fn grid(&self, cubes: usize) -> (u32, u32) {
        let across = cubes.clamp(1, self.max_cubes.0 as usize);
        (across as u32, cubes.div_ceil(across).max(1) as u32)
    }

    /// Chunks of the nodes of record group `g` (batch `g / 2`; big nodes when `g` is odd).
    fn chunks_of(&self, g: usize) -> usize {
        if g % 2 == 1 { self.chunks } else { 1 }
    }

    /// The batch of tree `t` and its index there.
    fn batch_of(&self, t: u32) -> Result<(usize, u32), String> {
        self.place
            .get(t as usize)
            .copied()
            .ok_or_else(|| format!("tree {t} is not growing here"))
    }

    /// One level, started: applies the previous level's `splits` to the lists, then searches
    /// the `scans` nodes; [`Submitted::wait`] returns each one's [`Choice`], in order. The
    /// device works while the caller does something else (the host's statistics of the same
    /// nodes). Everything a level sends goes up in one upload and comes back in one read:
    /// each transfer has a fixed cost that dominated when it was one per batch and kind.
    pub fn submit(
        &mut self,
        splits: &[SplitNode],
        scans: &[ScanNode],
    ) -> Result<Submitted<'_>, String> {
        let (d, k) = (self.d, self.k);
        let started = std::time::Instant::now();
        let words = d.div_ceil(4);
        let batches = self.batches.len();
        // The records, scans first (a scan's index is also its answer's), then the splits,
        // each kind grouped by batch and size (stable sorts); per batch and size (first,
        // count).
        let mut records = Vec::with_capacity(5 * (splits.len() + scans.len()));
        // Records go by batch, then small nodes before big ones (a launch each).
        let big = |len: u32| usize::from(self.chunks > 1 && len >= self.tuning.big_rows);
        let place = &self.place;
        let group = |t: u32, len: u32| {
            place
                .get(t as usize)
                .map_or(usize::MAX, |p| 2 * p.0 + big(len))
        };
        let mut scan_order: Vec<u32> = (0..scans.len() as u32).collect();
        scan_order.sort_by_key(|&i| group(scans[i as usize].tree, scans[i as usize].len));
        let mut split_order: Vec<u32> = (0..splits.len() as u32).collect();
        split_order.sort_by_key(|&i| group(splits[i as usize].tree, splits[i as usize].len));
        let mut scan_at = vec![(0u32, 0u32); 2 * batches];
        for &i in &scan_order {
            let s = &scans[i as usize];
            let (b, t) = self.batch_of(s.tree)?;
            if s.len == 0 || s.start as usize + s.len as usize > self.stride {
                return Err(format!("a node outside its tree's lists: {s:?}"));
            }
            let g = 2 * b + big(s.len);
            if scan_at[g].1 == 0 {
                scan_at[g].0 = (records.len() / 5) as u32;
            }
            scan_at[g].1 += 1;
            records.extend_from_slice(&[t, s.start, s.len, s.seed as u32, (s.seed >> 32) as u32]);
        }
        let mut split_at = vec![(0u32, 0u32); 2 * batches];
        for &i in &split_order {
            let s = &splits[i as usize];
            let (b, t) = self.batch_of(s.tree)?;
            if s.feature as usize >= d
                || s.left > s.len
                || s.start as usize + s.len as usize > self.stride
            {
                return Err(format!("a split outside its tree's lists: {s:?}"));
            }
            let g = 2 * b + big(s.len);
            if split_at[g].1 == 0 {
                split_at[g].0 = (records.len() / 5) as u32;
            }
            split_at[g].1 += 1;
            records.extend_from_slice(&[
                t,
                s.start,
                s.len,
                s.feature << 8 | u32::from(s.bin),
                s.left,
            ]);
        }
        let built = started.elapsed();
        let all = self.client.create_from_slice(u32::as_bytes(&records));
        let out = self.client.empty(scans.len().max(1) * 2 * 4);
        let uploaded = started.elapsed();
        let n_records = records.len() / 5;
        if !splits.is_empty() {
            let (src, dst) = (self.current, 1 - self.current);
            for (g, &(first, count)) in split_at.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                let (batch, chunks) = (&self.batches[g / 2], self.chunks_of(g));
                let entries = batch.trees * d * self.stride;
                let (across, down) = self.grid(count as usize);
                // SAFETY: every record's segment lies inside its tree's lists (checked
                // above: `start + len ≤ stride`, `left ≤ len`), its split feature below `d`,
                // and every list entry's row below `n` (the lists hold `order`'s entries), so
                // `bins` is read below `n · words`; cube `c < count` reads record
                // `first + c`, inside `all`.
                #[allow(unsafe_code)]
                unsafe {
                    partition_nodes::launch_unchecked::<R>(
                        &self.client,
                        CubeCount::Static(across, down, 1),
                        CubeDim::new_1d(UNITS * chunks as u32),
                        array_arg::<R>(&batch.lists[src], entries),
                        array_arg::<R>(&batch.lists[dst], entries),
                        array_arg::<R>(&self.packed, self.n * words),
                        array_arg::<R>(&all, n_records * 5),
                        first,
                        count,
                        self.stride as u32,
                        words as u32,
                        d,
                        self.tuning.partition,
                        chunks,
                    );
                }
            }
            self.current = dst;
        }
        for (g, &(first, count)) in scan_at.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let (batch, chunks) = (&self.batches[g / 2], self.chunks_of(g));
            let entries = batch.trees * d * self.stride;
            let (across, down) = self.grid(count as usize);
            // SAFETY: every node's segment lies inside its tree's lists (checked above), each
            // list entry's row is below `n` (`weights` and `y` read below `trees · n` and
            // `n · k`), and cube `c < count` reads record `first + c` and writes
            // `out[2(first + c)..]`, `first + c` below `scans.len()` (the scans come first).
            #[allow(unsafe_code)]
            unsafe {
                scan_nodes::launch_unchecked::<R>(
                    &self.client,
                    CubeCount::Static(across, down, 1),
                    CubeDim::new_1d(UNITS * chunks as u32),
                    array_arg::<R>(&batch.lists[self.current], entries),
                    array_arg::<R>(&batch.weights, batch.trees * self.n),
                    array_arg::<R>(&self.y, self.n * k),
                    array_arg::<R>(&all, n_records * 5),
                    array_arg::<R>(&out, scans.len() * 2),
                    first,
                    count,
                    self.n as u32,
                    self.stride as u32,
                    self.min_leaf,
                    self.max_features,
                    close_call(k),
                    d,
                    k,
                    self.tuning.scan,
                    chunks,
                );
            }
        }
        // Asked for at once: the read's copy goes into the same submission as the kernels,
        // which start now.
        let read = (!scans.is_empty())
            .then(|| Box::pin(self.client.read_async(vec![out])) as ReadBack<'_>);
        tracing::trace!(
            nodes = scans.len(),
            splits = splits.len(),
            build_ms = built.as_secs_f64() * 1e3,
            upload_ms = (uploaded - built).as_secs_f64() * 1e3,
            launch_ms = (started.elapsed() - uploaded).as_secs_f64() * 1e3,
            "forest level sent to the device"
        );
        Ok(Submitted {
            read,
            scan_order,
            d,
        })
    }
}

/// The device's answers on their way back.
type ReadBack<'a> = Pin<Box<dyn Future<Output = Result<Vec<Bytes>, ServerError>> + Send + 'a>>;

/// A level on its way through the device ([`LevelGrower::submit`]).
pub struct Submitted<'a> {
    read: Option<ReadBack<'a>>,
    /// Position `j` of the answers belongs to scan `scan_order[j]`.
    scan_order: Vec<u32>,
    d: usize,
}

impl Submitted<'_> {
    /// Waits for the device and returns each scanned node's [`Choice`], in the order the
    /// nodes were given.
    pub fn wait(self) -> Result<Vec<Choice>, String> {
        let Some(read) = self.read else {
            return Ok(Vec::new());
        };
        let started = std::time::Instant::now();
        let read =
            cubecl::future::block_on(read).map_err(|e| format!("reading a level's splits: {e}"))?;
        let words_back = u32::from_bytes(&read[0]);
        let d = self.d;
        let mut choices = vec![
            Choice {
                feature: 0,
                bin: 0,
                found: false,
                close: false,
            };
            self.scan_order.len()
        ];
        for (j, &i) in self.scan_order.iter().enumerate() {
            let (feature, word) = (words_back[2 * j], words_back[2 * j + 1]);
            let found = word & 256 != 0;
            if found && feature as usize >= d {
                return Err(format!("the device chose feature {feature} of {d}"));
            }
            choices[i as usize] = Choice {
                feature,
                bin: (word & 255) as u8,
                found,
                close: word & 512 != 0,
            };
        }
        tracing::trace!(
            nodes = choices.len(),
            wait_ms = started.elapsed().as_secs_f64() * 1e3,
            "forest level back from the device"
        );
        Ok(choices)
    }
}

/// The per-feature lists' source: every row as `row << 8 | bin`, per feature sorted by bin
/// then row (a counting sort), from column-major bins (`bins[f·n + r]`).
pub fn sorted_order(bins: &[u8], n: usize, d: usize) -> Vec<u32> {
    let mut order = vec![0u32; n * d];
    for f in 0..d {
        let column = &bins[f * n..(f + 1) * n];
        let mut starts = [0usize; 257];
        for &b in column {
            starts[b as usize + 1] += 1;
        }
        for b in 0..256 {
            starts[b + 1] += starts[b];
        }
        let out = &mut order[f * n..(f + 1) * n];
        for (r, &b) in column.iter().enumerate() {
            out[starts[b as usize]] = (r as u32) << 8 | u32::from(b);
            starts[b as usize] += 1;
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_order_lists_every_row_by_bin_then_row() {
        let (n, d) = (7, 2);
        // Feature 0: bins 3 1 3 0 1 255 0; feature 1: all 9.
        let bins = [3u8, 1, 3, 0, 1, 255, 0, 9, 9, 9, 9, 9, 9, 9];
        let order = sorted_order(&bins, n, d);
        let rows = |f: usize| -> Vec<(u32, u32)> {
            order[f * n..(f + 1) * n]
                .iter()
                .map(|e| (e >> 8, e & 255))
                .collect()
        };
        assert_eq!(
            rows(0),
            [(3, 0), (6, 0), (1, 1), (4, 1), (0, 3), (2, 3), (5, 255)]
        );
        assert_eq!(rows(1), (0..7).map(|r| (r, 9)).collect::<Vec<_>>());
    }
}
