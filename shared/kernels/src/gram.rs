//! `ZᵀZ` of a tall float32 matrix on wgpu (Vulkan, Metal, DX12), its rows streamed from the
//! host through mapped buffers of our own: the products under the linear models and PCA
//! on a GPU without CUDA (`Z = [X − x̄ | Y − ȳ]`, so one product gives `XᵀX` and `XᵀY`).
//!
//! **The upload.** cubecl 0.10 uploads a tensor through two host copies and wgpu's
//! `write_buffer` (0.65 GB/s measured on an H100's Vulkan adapter: 0.8 s for 1M × 128
//! float32, ten times the whole CPU fit). Here the rows go through a ring of wgpu buffers
//! that the host maps for writing (`MAP_WRITE | COPY_SRC`): the caller's fill writes each
//! chunk's rows straight into the mapped memory, in parallel blocks, then the chunk is
//! copied on the device's queue into a buffer of cubecl's pool and the product kernel runs
//! on it, while the host fills the next chunk. The staging buffers are kept per device
//! between calls (wgpu zeroes a mapped buffer's memory once, when it is first mapped).
//! On unified memory (Apple Silicon) the staging buffer and the kernel's buffer are the same
//! memory, and the copy is a blit at memory speed. On an H100's Vulkan adapter 1M × 136
//! float32 rows (512 MB) take 26–28 ms, 21–22 ms of it the host's fill, and the device keeps
//! up (docs/benchmarks.md, "Linear models and PCA on wgpu: our Gram kernel").
//!
//! **The product.** One cube (16 × 16 units) per 64 × 64 tile of the upper triangle and per
//! split of 1,024 rows: the split's rows pass through workgroup memory 16 at a time and
//! each unit keeps 4 × 4 sums in registers. A second kernel adds a chunk's splits into one
//! of 16 slots, and the host adds the slots in float64.
//!
//! **Precision: float32 inputs, float64-quality sums.** Every sum is a pair of float32s
//! (high + low, about 48 bits): each product is split exactly into its rounded value and
//! its rounding error (Dekker: each input cut into two 12-bit halves by Veltkamp's split,
//! whose products are exact in float32), the value is added with Knuth's two-sum (`t = s +
//! p`, and the addition's error recovered from `t`, `s` and `p`), and the errors go into the
//! low part; a step's 16 rows are summed that way, then added into the running pair, and
//! the splits into their slot, the same way. So the products of the float32 inputs are
//! summed almost exactly: on the golden data scikit-learn's coefficients and intercepts are
//! met within 1.2e-7 (the float32 rounding of the centred inputs is what is left; a
//! float64 fit of the same rounded inputs is 9e-8 off), where float32 products with
//! Kahan-compensated sums were 1.2e-6 and 1.9e-5 off. About twenty float32 operations a
//! product instead of one fused multiply-add (docs/benchmarks.md says what that costs).
//!
//! **Compilers.** No `fma`: lavapipe computes it as a multiply and an add (Vulkan allows
//! that), and HLSL's `mad` may too. And WGSL has no `precise`: Mesa's NIR folds `(s + p) − s`
//! to `p` (and `a·o − b·o` to `(a − b)·o`) wherever an operation is not marked exact, which
//! naga never does, and fast math (Metal compiles with it by default; wgpu 29 keeps it)
//! reassociates. So every value the error terms are recovered from passes through an
//! integer OR with a zero the kernel reads at run time (`opaque`): the compiler cannot see
//! what it equals and leaves the float arithmetic around it as written. [`wgpu_pairs_hold`]
//! runs the kernel once per device on a matrix where a float32 sum and a float32 product
//! both lose bits and says whether the pairs held; where they do not, the products are
//! float32 quality (scikit-learn within about 5e-5) and a warning says so. The golden tests
//! hold wgpu to 1e-6 where they hold (lavapipe in CI); CUDA's moments are float64 (cuBLAS).
//! Inputs beyond ±8e34 would overflow the split (4097·v); centred features never come near.
//! Workgroup memory: 8 KiB, under wgpu's portable 16 KiB and Metal's 32 KiB.

// Without wgpu only the refusal is built; the constants and the host's assembly serve the
// wgpu path (and its tests).
#![cfg_attr(not(feature = "wgpu"), allow(dead_code))]

use std::ops::Range;

use forexgpt_device::{ComputeDevice, DeviceError};

/// Writes rows `rows` of `Z`, row-major (`rows.len() × width` float32), into the slice.
/// Called for disjoint blocks of rows from several threads at once, in any order.
pub type FillBlock<'a> = dyn Fn(Range<usize>, &mut [f32]) + Sync + 'a;

/// The side of a square output tile.
const TILE: usize = 64;
/// Units along each side of a cube; each keeps `(TILE / SIDE)²` sums.
const SIDE: usize = 16;
/// Sums along each side of a unit's block: its rows and columns are `SIDE` apart.
const PER_UNIT: usize = TILE / SIDE;
/// Rows staged through workgroup memory at a time.
const STEP: usize = 16;
/// Rows one cube sums (a split of a chunk).
const SPLIT_ROWS: usize = 1024;
/// Bytes of rows a chunk (one staging buffer) holds.
const CHUNK_BYTES: usize = 32 << 20;
/// Staging buffers (and chunk buffers on the device) in flight.
const RING: usize = 3;
/// Sums of chunks kept on the device: chunk `k` adds into slot `k % SLOTS`.
const SLOTS: usize = 16;
/// Rows a block of the host's fill takes (a block is filled in cache, then copied).
const FILL_ROWS: usize = 256;

/// Most splits a chunk holds: each split keeps a whole tile of partial sums on the device
/// (16 KiB), so narrow rows (a chunk of millions) would otherwise need a buffer past wgpu's
/// 128 MiB binding limit.
const MAX_SPLITS: usize = 256;

/// Rows a chunk of `width` float32 columns holds: a whole number of splits, about 32 MiB.
pub fn chunk_rows(width: usize) -> usize {
    (CHUNK_BYTES / (4 * width.max(1)) / SPLIT_ROWS).clamp(1, MAX_SPLITS) * SPLIT_ROWS
}

/// `ZᵀZ` (`width × width`, row-major, symmetric to the last bit) of the `rows × width`
/// matrix that `fill` writes, on a wgpu device. The float32 inputs' products summed as
/// float32 pairs within a chunk (a split's rows, then the chunk's splits), in float64 across
/// the device's slots: float64 quality where [`wgpu_pairs_hold`] (checked here, once per
/// device, with a warning where they do not hold). Any other device is refused as
/// unsupported.
pub fn wgpu_gram(
    device: &ComputeDevice,
    rows: usize,
    width: usize,
    fill: &FillBlock<'_>,
) -> Result<Vec<f64>, DeviceError> {
    if rows > 0 && width > 0 {
        wgpu_pairs_hold(device)?;
    }
    wgpu_gram_in_chunks(device, rows, width, chunk_rows(width), fill)
}

/// [`wgpu_gram`] with `chunk` rows a chunk (at least one): tests reach many chunks, and
/// more chunks than the device keeps sums for, with little data.
pub fn wgpu_gram_in_chunks(
    device: &ComputeDevice,
    rows: usize,
    width: usize,
    chunk: usize,
    fill: &FillBlock<'_>,
) -> Result<Vec<f64>, DeviceError> {
    if rows == 0 || width == 0 {
        return Ok(vec![0.0; width * width]);
    }
    #[cfg(feature = "wgpu")]
    {
        let label = device.label();
        forexgpt_device::cube::run_wgpu_job(device, "Gram products", |dev, setup| {
            on_wgpu::gram(dev, setup, rows, width, chunk.max(1), fill)
        })?
        .map_err(|message| DeviceError::BackendFailed {
            device: label.to_string(),
            message,
        })
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = (device, chunk, fill);
        Err(DeviceError::NotBuilt(forexgpt_protocol::BackendKind::Wgpu))
    }
}

/// Rows of the pairs' check ([`wgpu_pairs_hold`]): a pattern of four repeated, so the sums
/// cross steps and chunks.
const CHECK_ROWS: usize = 40;

/// Row `r` of the pairs' check: column 0 holds 1, 2⁻¹³, −1, 1 + 2⁻¹² in turn, column 1 the
/// same a row later. Each column's square sums to `10 · (3 + 2⁻¹¹ + 2⁻²⁴ + 2⁻²⁶)`: a float32
/// sum loses 2⁻²⁶ (next to 1) and a float32 product 2⁻²⁴ (of `(1 + 2⁻¹²)²`).
fn check_row(r: usize) -> [f32; 2] {
    let pattern = [1.0, 2f32.powi(-13), -1.0, 1.0 + 2f32.powi(-12)];
    [pattern[r % 4], pattern[(r + 1) % 4]]
}

/// Devices already checked, by label, with the answer.
static CHECKED: std::sync::Mutex<Vec<(String, bool)>> = std::sync::Mutex::new(Vec::new());

/// Whether this wgpu device's compiler and hardware keep the float32 pairs of
/// [`wgpu_gram`] exact: the kernel's products of a small matrix whose float32 sums and
/// products both round (`check_row`) must match float64 to 2⁻⁴⁰. A compiler that
/// reassociates float arithmetic past the kernel's guards would fold the errors to zero;
/// there the products are float32 quality (about 5e-5 of scikit-learn on the golden data
/// against 1e-7). Run once per device (by label) and remembered.
pub fn wgpu_pairs_hold(device: &ComputeDevice) -> Result<bool, DeviceError> {
    let lock = || {
        CHECKED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some((_, holds)) = lock().iter().find(|(label, _)| label == device.label()) {
        return Ok(*holds);
    }
    let fill = |rows: Range<usize>, out: &mut [f32]| {
        for (r, o) in rows.zip(out.chunks_exact_mut(2)) {
            o.copy_from_slice(&check_row(r));
        }
    };
    let got = wgpu_gram_in_chunks(device, CHECK_ROWS, 2, 16, &fill)?;
    let mut want = [0.0f64; 4];
    for r in 0..CHECK_ROWS {
        let z = check_row(r).map(f64::from);
        for (at, w) in want.iter_mut().enumerate() {
            *w += z[at / 2] * z[at % 2];
        }
    }
    let holds = got
        .iter()
        .zip(&want)
        .all(|(g, w)| (g - w).abs() <= w.abs() * 2f64.powi(-40));
    if !holds {
        tracing::warn!(
            device = device.label(),
            ?got,
            ?want,
            "this device's compiler does not keep float32 pairs exact: its Gram products are float32 quality"
        );
    }
    lock().push((device.label().to_string(), holds));
    Ok(holds)
}

/// The symmetric `width × width` product from the slots' tiles: `slots` high parts then
/// `slots` low parts, each `tiles² × TILE²` float32. A slot's value is its high part plus
/// its low part, the slots added in float64; the upper triangle is read and mirrored.
fn assemble(sums: &[f32], slots: usize, width: usize) -> Vec<f64> {
    let tiles = width.div_ceil(TILE);
    let len = tiles * tiles * TILE * TILE;
    let mut total = vec![0.0f64; len];
    let (highs, lows) = sums.split_at(slots * len);
    for (high, low) in highs.chunks_exact(len).zip(lows.chunks_exact(len)) {
        for ((t, h), l) in total.iter_mut().zip(high).zip(low) {
            *t += f64::from(*h) + f64::from(*l);
        }
    }
    let mut out = vec![0.0; width * width];
    for i in 0..width {
        for j in i..width {
            let (ti, tj) = (i / TILE, j / TILE);
            let v = total[(ti * tiles + tj) * TILE * TILE + (i % TILE) * TILE + j % TILE];
            out[i * width + j] = v;
            out[j * width + i] = v;
        }
    }
    out
}

#[cfg(feature = "wgpu")]
mod on_wgpu {
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::{Duration, Instant};

    use cubecl::prelude::*;
    use cubecl::wgpu::{WgpuDevice, WgpuRuntime, WgpuSetup};
    use rayon::prelude::*;

    use super::*;
    use crate::fused_mlp::array_arg;

    /// `v` as it is, through an integer OR with `zero` (0, read at run time): the compiler
    /// cannot see what the result equals, so it cannot rewrite the float arithmetic around
    /// it. Mesa's NIR, for one, folds `(s + p) − s` to `p` and `a·o − b·o` to `(a − b)·o`
    /// wherever the operations are not marked exact, and naga marks none; fast math (Metal)
    /// reassociates freely.
    #[cube]
    fn opaque(v: f32, zero: u32) -> f32 {
        f32::reinterpret(u32::reinterpret(v) | zero)
    }

    /// Veltkamp's split: the high 12 bits of `v` (`v` less them, the low part, fits in 12
    /// bits too, so the halves' products are exact in float32).
    #[cube]
    fn high_half(v: f32, zero: u32) -> f32 {
        let c = v * 4097.0f32;
        c - opaque(c - v, zero)
    }

    /// Knuth's two-sum: the rounding error of `t`, the float32 sum `opaque(s + p)`, recovered
    /// exactly from `t`, `s` and `p`.
    #[cube]
    fn sum_error(s: f32, p: f32, t: f32, zero: u32) -> f32 {
        let back = opaque(t - s, zero);
        (s - opaque(t - back, zero)) + (p - back)
    }

    /// Adds `p + extra` (`extra` small beside `p`: its rounding error) into the pair
    /// (`hi[at]`, `lo[at]`): `t = hi + p`, and the addition's error goes into the low part
    /// with `extra`.
    #[cube]
    fn add_pair(
        hi: &mut Array<f32>,
        lo: &mut Array<f32>,
        at: usize,
        p: f32,
        extra: f32,
        zero: u32,
    ) {
        let s = hi[at];
        let t = opaque(s + p, zero);
        lo[at] += sum_error(s, p, t, zero) + extra;
        hi[at] = t;
    }

    /// Adds a cube's tile (`ti`, `tj`) of `ZᵀZ` over its split of the chunk's rows into
    /// `partials[split][ti][tj]` (`TILE × TILE`, row-major: the sums' high parts, then at
    /// `lo_at` their low parts). Cubes below the diagonal stop at once. Rows and columns past
    /// the chunk read as zeros, so a tile's padding sums to zero.
    ///
    /// Every sum is a float32 pair (high + low): each product is split exactly into its
    /// rounded value and its rounding error (Dekker's product of the inputs' 12-bit halves;
    /// a unit splits each value it reads once), the value is added to the step's pair with
    /// Knuth's two-sum (the addition's error kept) and the error goes into the low part;
    /// after `STEP` rows the step's pair is added into the running pair the same way. So
    /// the products of float32 inputs are summed to about 2⁻⁴⁴ of their magnitudes, as a
    /// float64 sum of them would be.
    ///
    /// Launched unchecked: `z` holds `rows × width` values, `partials` two `TILE²` tiles for
    /// every (split, ti, tj) of the launch, `lo_at` apart (the host sizes both), and every
    /// index below stays in them.
    #[cube(launch_unchecked)]
    fn gram_tiles(
        z: &Array<f32>,
        partials: &mut Array<f32>,
        rows: u32,
        width: u32,
        lo_at: u32,
        zero: u32,
    ) {
        let ti = CUBE_POS_X as usize;
        let tj = CUBE_POS_Y as usize;
        if ti > tj {
            terminate!();
        }
        let tiles = CUBE_COUNT_X as usize;
        let split = CUBE_POS_Z as usize;
        let tx = UNIT_POS_X as usize;
        let ty = UNIT_POS_Y as usize;
        let unit = ty * SIDE + tx;
        let rows = rows as usize;
        let width = width as usize;
        let mut a = SharedMemory::<f32>::new(STEP * TILE);
        let mut b = SharedMemory::<f32>::new(STEP * TILE);
        let mut hi = Array::<f32>::new(PER_UNIT * PER_UNIT);
        let mut lo = Array::<f32>::new(PER_UNIT * PER_UNIT);
        let mut step_hi = Array::<f32>::new(PER_UNIT * PER_UNIT);
        let mut step_lo = Array::<f32>::new(PER_UNIT * PER_UNIT);
        let mut bv = Array::<f32>::new(PER_UNIT);
        let mut bv_hi = Array::<f32>::new(PER_UNIT);
        let mut bv_lo = Array::<f32>::new(PER_UNIT);
        #[unroll]
        for i in 0..PER_UNIT * PER_UNIT {
            hi[i] = 0.0f32;
            lo[i] = 0.0f32;
        }
        let begin = split * SPLIT_ROWS;
        let mut end = begin + SPLIT_ROWS;
        if end > rows {
            end = rows;
        }
        for r0 in range_stepped(begin, end, STEP) {
            // Each unit stages STEP · TILE / (SIDE · SIDE) values of each panel, a row's
            // columns side by side (coalesced reads).
            #[unroll]
            for q in 0..STEP * TILE / (SIDE * SIDE) {
                let idx = unit + q * SIDE * SIDE;
                let row = r0 + idx / TILE;
                let ca = ti * TILE + idx % TILE;
                let cb = tj * TILE + idx % TILE;
                let mut va = 0.0f32;
                let mut vb = 0.0f32;
                if row < end {
                    if ca < width {
                        va = z[row * width + ca];
                    }
                    if cb < width {
                        vb = z[row * width + cb];
                    }
                }
                a[idx] = va;
                b[idx] = vb;
            }
            sync_cube();
            #[unroll]
            for i in 0..PER_UNIT * PER_UNIT {
                step_hi[i] = 0.0f32;
                step_lo[i] = 0.0f32;
            }
            #[unroll]
            for k in 0..STEP {
                #[unroll]
                for j in 0..PER_UNIT {
                    let v = b[k * TILE + tx + j * SIDE];
                    let v_hi = high_half(v, zero);
                    bv[j] = v;
                    bv_hi[j] = v_hi;
                    bv_lo[j] = v - v_hi;
                }
                #[unroll]
                for i in 0..PER_UNIT {
                    let av = a[k * TILE + ty + i * SIDE];
                    let av_hi = high_half(av, zero);
                    let av_lo = av - av_hi;
                    #[unroll]
                    for j in 0..PER_UNIT {
                        // Dekker's product: p rounded, and its error exactly from the
                        // halves' products (each exact in float32).
                        let p = av * bv[j];
                        let p_err = ((av_hi * bv_hi[j] - p) + av_hi * bv_lo[j] + av_lo * bv_hi[j])
                            + av_lo * bv_lo[j];
                        add_pair(&mut step_hi, &mut step_lo, i * PER_UNIT + j, p, p_err, zero);
                    }
                }
            }
            #[unroll]
            for i in 0..PER_UNIT * PER_UNIT {
                add_pair(&mut hi, &mut lo, i, step_hi[i], step_lo[i], zero);
            }
            sync_cube();
        }
        let base = ((split * tiles + ti) * tiles + tj) * TILE * TILE;
        #[unroll]
        for i in 0..PER_UNIT {
            #[unroll]
            for j in 0..PER_UNIT {
                let at = i * PER_UNIT + j;
                let out = base + (ty + i * SIDE) * TILE + tx + j * SIDE;
                partials[out] = hi[at];
                partials[lo_at as usize + out] = lo[at];
            }
        }
    }

    /// Adds a chunk's splits into its slot, as float32 pairs (two-sum, as in `gram_tiles`):
    /// for `i < len`, the slot's pair (`sums[at + i]`, `sums[lo_at + i]`) takes in every
    /// split's pair (`partials[s · len + i]`, `partials[split_lo + s · len + i]`) in split
    /// order (a slot's first chunk starts it at zero, `add` 0; later chunks add, `add` 1).
    ///
    /// Launched unchecked: `partials` holds both planes of `splits · len` values and `sums`
    /// at least `at + len` and `lo_at + len` (the host sizes both).
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    fn sum_splits(
        partials: &Array<f32>,
        sums: &mut Array<f32>,
        splits: u32,
        len: u32,
        split_lo: u32,
        at: u32,
        lo_at: u32,
        add: u32,
        zero: u32,
    ) {
        let i = ((CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) * CUBE_DIM_X + UNIT_POS_X) as usize;
        let len = len as usize;
        if i >= len {
            terminate!();
        }
        let at = at as usize + i;
        let lo_at = lo_at as usize + i;
        let mut hi = 0.0f32;
        let mut lo = 0.0f32;
        if add == 1 {
            hi = sums[at];
            lo = sums[lo_at];
        }
        for k in 0..splits as usize {
            let p = partials[k * len + i];
            let t = opaque(hi + p, zero);
            lo += sum_error(hi, p, t, zero) + partials[split_lo as usize + k * len + i];
            hi = t;
        }
        sums[at] = hi;
        sums[lo_at] = lo;
    }

    /// How a staging buffer stands: mapped for the host, or waiting for the device.
    type MapState = Arc<Mutex<Option<Result<(), String>>>>;

    /// A staging buffer: the host writes it while mapped; the device copies out of it.
    struct Slot {
        buffer: wgpu::Buffer,
        /// `Some(Ok)` when mapped for writing; `None` while a mapping is pending.
        state: MapState,
        /// The submission that last copied out of it.
        submitted: Option<wgpu::SubmissionIndex>,
    }

    impl Slot {
        fn new(device: &wgpu::Device, bytes: u64) -> Self {
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("forexgpt rows (staging)"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            });
            Self {
                buffer,
                state: Arc::new(Mutex::new(Some(Ok(())))),
                submitted: None,
            }
        }

        fn state(&self) -> Option<Result<(), String>> {
            self.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }

        /// Waits until the buffer is mapped for writing again.
        fn ready(&self, device: &wgpu::Device) -> Result<(), String> {
            for _ in 0..100 {
                if let Some(mapped) = self.state() {
                    return mapped.map_err(|e| format!("mapping a staging buffer: {e}"));
                }
                device
                    .poll(wgpu::PollType::Wait {
                        submission_index: self.submitted.clone(),
                        timeout: Some(Duration::from_secs(60)),
                    })
                    .map_err(|e| format!("waiting for the device's copy: {e}"))?;
            }
            Err("a staging buffer was never mapped again".into())
        }

        /// Asks for the buffer back once the copy of `submitted` is done.
        fn remap(&mut self, submitted: wgpu::SubmissionIndex) {
            *self.state.lock().unwrap_or_else(PoisonError::into_inner) = None;
            let state = self.state.clone();
            self.buffer
                .map_async(wgpu::MapMode::Write, .., move |mapped| {
                    *state.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(mapped.map_err(|e| e.to_string()));
                });
            self.submitted = Some(submitted);
        }
    }

    /// Staging buffers kept between calls, per wgpu device. A call takes a device's ring
    /// out and puts it back only when it ends well (every buffer mapped again).
    static RINGS: Mutex<Vec<(wgpu::Device, Vec<Slot>)>> = Mutex::new(Vec::new());

    fn take_ring(device: &wgpu::Device, bytes: u64) -> Vec<Slot> {
        let mut rings = RINGS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = rings.iter().position(|(d, _)| d == device) {
            let (_, ring) = rings.swap_remove(at);
            if ring.iter().all(|slot| slot.buffer.size() >= bytes) {
                return ring;
            }
        }
        (0..RING).map(|_| Slot::new(device, bytes)).collect()
    }

    fn put_ring(device: &wgpu::Device, ring: Vec<Slot>) {
        let mut rings = RINGS.lock().unwrap_or_else(PoisonError::into_inner);
        rings.push((device.clone(), ring));
    }

    /// A block of mapped memory handed to one rayon task.
    struct Block<'a>(wgpu::WriteOnly<'a, [u8]>);

    // SAFETY: a `WriteOnly<[u8]>` is an exclusive, write-only pointer to bytes of a mapped
    // buffer, like `&mut [u8]` (which is `Send`); the blocks are disjoint (`split_at`), and
    // the mapping outlives them (they are dropped before the buffer is unmapped). wgpu
    // implements `Send` only for sized targets, hence this wrapper.
    #[allow(unsafe_code)]
    unsafe impl Send for Block<'_> {}

    /// Fills rows `rows` into mapped memory `out`, `FILL_ROWS` rows a task.
    fn fill_mapped(
        out: wgpu::WriteOnly<'_, [u8]>,
        rows: Range<usize>,
        width: usize,
        fill: &FillBlock<'_>,
    ) {
        let mut blocks = Vec::with_capacity(rows.len().div_ceil(FILL_ROWS));
        let mut rest = out;
        for start in rows.clone().step_by(FILL_ROWS) {
            let end = (start + FILL_ROWS).min(rows.end);
            let (head, tail) = rest.split_at((end - start) * width * 4);
            blocks.push((start..end, Block(head)));
            rest = tail;
        }
        blocks.into_par_iter().for_each_init(
            Vec::new,
            |scratch: &mut Vec<f32>, (range, mut block)| {
                scratch.clear();
                scratch.resize(range.len() * width, 0.0);
                fill(range, scratch);
                block.0.copy_from_slice(f32::as_bytes(scratch));
            },
        );
    }

    pub(super) fn gram(
        device: &WgpuDevice,
        setup: &WgpuSetup,
        rows: usize,
        width: usize,
        chunk: usize,
        fill: &FillBlock<'_>,
    ) -> Result<Vec<f64>, String> {
        let started = Instant::now();
        let client = WgpuRuntime::client(device);
        let chunk = chunk.min(rows);
        let chunks = rows.div_ceil(chunk);
        let tiles = width.div_ceil(TILE);
        let tile_len = tiles * tiles * TILE * TILE;
        let splits = chunk.div_ceil(SPLIT_ROWS);
        let slots = chunks.min(SLOTS);
        let chunk_bytes = chunk * width * 4;
        // Every split's high parts, then their low parts.
        let partials = client.empty(2 * splits * tile_len * 4);
        // Each slot's high parts, then each slot's low parts.
        let sums = client.empty(2 * slots * tile_len * 4);
        let targets: Vec<_> = (0..RING.min(chunks))
            .map(|_| client.empty(chunk_bytes))
            .collect();
        let resources = targets
            .iter()
            .map(|handle| client.get_resource(handle.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the chunk buffers: {e}"))?;
        // Work already queued in cubecl (on memory these buffers reuse) is submitted before
        // the first of our copies.
        client
            .flush()
            .map_err(|e| format!("submitting earlier work: {e}"))?;
        let max = client.properties().hardware.max_cube_count;
        let mut ring = take_ring(&setup.device, chunk_bytes as u64);
        let (mut fill_s, mut wait_s) = (0.0, 0.0);
        for k in 0..chunks {
            let start = k * chunk;
            let n = chunk.min(rows - start);
            let bytes = (n * width * 4) as u64;
            let slot = &mut ring[k % RING];
            let waited = Instant::now();
            slot.ready(&setup.device)?;
            let filled = Instant::now();
            wait_s += (filled - waited).as_secs_f64();
            {
                let mut view = slot.buffer.slice(..bytes).get_mapped_range_mut();
                fill_mapped(view.slice(..), start..start + n, width, fill);
            }
            slot.buffer.unmap();
            fill_s += filled.elapsed().as_secs_f64();
            let target = resources[k % RING].resource();
            let mut encoder =
                setup
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("forexgpt rows (copy)"),
                    });
            encoder.copy_buffer_to_buffer(&slot.buffer, 0, &target.buffer, target.offset, bytes);
            let submitted = setup.queue.submit([encoder.finish()]);
            slot.remap(submitted);

            let n_splits = n.div_ceil(SPLIT_ROWS);
            let len = tile_len;
            let cubes = len.div_ceil(256);
            let across = cubes.min(max.0 as usize);
            // SAFETY: `gram_tiles` reads `z` below `n · width` (rows below `n`, columns below
            // `width`) and writes one `TILE²` tile per (split, ti, tj) of this launch in each
            // plane of `partials` (`splits · tiles²` tiles a plane, `n_splits ≤ splits`);
            // `sum_splits` reads `partials` below `n_splits · len` in each plane and writes
            // `sums` below `2 · slots · len`.
            #[allow(unsafe_code)]
            unsafe {
                gram_tiles::launch_unchecked::<WgpuRuntime>(
                    &client,
                    CubeCount::Static(tiles as u32, tiles as u32, n_splits as u32),
                    CubeDim::new_2d(SIDE as u32, SIDE as u32),
                    array_arg::<WgpuRuntime>(&targets[k % RING], n * width),
                    array_arg::<WgpuRuntime>(&partials, 2 * splits * tile_len),
                    n as u32,
                    width as u32,
                    (splits * tile_len) as u32,
                    0u32,
                );
                sum_splits::launch_unchecked::<WgpuRuntime>(
                    &client,
                    CubeCount::Static(across as u32, cubes.div_ceil(across) as u32, 1),
                    CubeDim::new_1d(256),
                    array_arg::<WgpuRuntime>(&partials, 2 * splits * tile_len),
                    array_arg::<WgpuRuntime>(&sums, 2 * slots * tile_len),
                    n_splits as u32,
                    len as u32,
                    (splits * len) as u32,
                    ((k % slots) * len) as u32,
                    ((slots + k % slots) * len) as u32,
                    u32::from(k >= slots),
                    0u32,
                );
            }
            client
                .flush()
                .map_err(|e| format!("submitting the products: {e}"))?;
        }
        let read = Instant::now();
        let bytes = client
            .read_one(sums)
            .map_err(|e| format!("reading the products: {e}"))?;
        let read_s = read.elapsed().as_secs_f64();
        // Every copy is done (the products read after them are): the ring goes back mapped.
        for slot in &ring {
            slot.ready(&setup.device)?;
        }
        put_ring(&setup.device, ring);
        drop(resources);
        tracing::debug!(
            rows,
            width,
            chunks,
            fill_ms = fill_s * 1e3,
            staging_wait_ms = wait_s * 1e3,
            final_wait_and_read_ms = read_s * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "Gram products (wgpu)"
        );
        Ok(assemble(f32::from_bytes(&bytes), slots, width))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_whole_splits_of_about_32_mib() {
        assert_eq!(chunk_rows(128) % SPLIT_ROWS, 0);
        assert!(chunk_rows(128) * 128 * 4 <= CHUNK_BYTES);
        assert!((chunk_rows(128) + SPLIT_ROWS) * 128 * 4 > CHUNK_BYTES);
        // A row wider than a chunk still gets a split.
        assert_eq!(chunk_rows(1 << 24), SPLIT_ROWS);
        // Narrow rows: at most MAX_SPLITS splits (4 MiB of partial sums), not 8M rows.
        assert_eq!(chunk_rows(1), MAX_SPLITS * SPLIT_ROWS);
    }

    #[test]
    fn assembly_adds_slots_and_mirrors_the_upper_triangle() {
        // Width 70: two tiles a side. Slot 0 holds i·100 + j in every tile element; slot 1
        // holds 0.5 everywhere.
        let width = 70;
        let tiles = 2;
        let len = tiles * tiles * TILE * TILE;
        // Then the low parts: 0.25 in slot 0, −0.25 in slot 1 (they cancel).
        let mut sums = vec![0.5f32; 4 * len];
        sums[2 * len..3 * len].fill(0.25);
        sums[3 * len..].fill(-0.25);
        for ti in 0..tiles {
            for tj in 0..tiles {
                for a in 0..TILE {
                    for b in 0..TILE {
                        let (i, j) = (ti * TILE + a, tj * TILE + b);
                        sums[(ti * tiles + tj) * TILE * TILE + a * TILE + b] = (i * 100 + j) as f32;
                    }
                }
            }
        }
        let g = assemble(&sums, 2, width);
        for i in 0..width {
            for j in 0..width {
                let (lo, hi) = (i.min(j), i.max(j));
                assert_eq!(g[i * width + j], (lo * 100 + hi) as f64 + 0.5, "({i}, {j})");
            }
        }
    }
}
