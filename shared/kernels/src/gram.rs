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
//! each unit keeps 4 × 4 sums in registers (float32). A step's 16 products are summed
//! afresh and added into the running sums with Kahan's compensation; a second kernel adds a
//! chunk's splits into one of 16 slots, compensated too, and the host adds the slots in
//! float64. So a sum carries about one float32 rounding of each split's total.
//!
//! **Precision: float32 inputs and products.** Each product rounds in float32 (splitting the
//! inputs into float32 hi/lo pairs changed nothing on the golden data for that reason), and
//! Metal has no float64. The compensation is what keeps the sums near float32's rounding
//! (on lavapipe it took the golden ridge from 1.4e-5 to 1.2e-6 of scikit-learn's largest
//! coefficient); WGSL has no `precise`, so a compiler that reassociates (Metal compiles
//! with fast math by default, and wgpu 29 keeps it) may fold it away. The scikit-learn
//! golden tests hold wgpu to 5e-5; CUDA's moments are float64 (cuBLAS).
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
/// matrix that `fill` writes, on a wgpu device. Float32 products, compensated float32 sums
/// within a chunk (a split's rows, then the chunk's splits), float64 across the device's
/// slots. Any other device is refused as unsupported.
pub fn wgpu_gram(
    device: &ComputeDevice,
    rows: usize,
    width: usize,
    fill: &FillBlock<'_>,
) -> Result<Vec<f64>, DeviceError> {
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

/// The symmetric `width × width` product from the slots' tiles: `slots` sums then `slots`
/// compensations, each `tiles² × TILE²` float32. A slot's value is its sum less its
/// compensation, the slots added in float64; the upper triangle is read and mirrored.
fn assemble(sums: &[f32], slots: usize, width: usize) -> Vec<f64> {
    let tiles = width.div_ceil(TILE);
    let len = tiles * tiles * TILE * TILE;
    let mut total = vec![0.0f64; len];
    let (values, comps) = sums.split_at(slots * len);
    for (slot, comp) in values.chunks_exact(len).zip(comps.chunks_exact(len)) {
        for ((t, v), c) in total.iter_mut().zip(slot).zip(comp) {
            *t += f64::from(*v) - f64::from(*c);
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

    /// Adds a cube's tile (`ti`, `tj`) of `ZᵀZ` over its split of the chunk's rows into
    /// `partials[split][ti][tj]` (`TILE × TILE`, row-major). Cubes below the diagonal stop at
    /// once. Rows and columns past the chunk read as zeros, so a tile's padding sums to zero.
    ///
    /// Each unit sums `STEP` rows' products afresh, then adds that step's sums into its
    /// running sums with Kahan's compensation; the split's sums are written rounded once.
    ///
    /// Launched unchecked: `z` holds `rows × width` values, `partials` a `TILE²` tile for every
    /// (split, ti, tj) of the launch (the host sizes both), and every index below stays in them.
    #[cube(launch_unchecked)]
    fn gram_tiles(z: &Array<f32>, partials: &mut Array<f32>, rows: u32, width: u32) {
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
        let mut acc = Array::<f32>::new(PER_UNIT * PER_UNIT);
        let mut comp = Array::<f32>::new(PER_UNIT * PER_UNIT);
        let mut step = Array::<f32>::new(PER_UNIT * PER_UNIT);
        let mut bv = Array::<f32>::new(PER_UNIT);
        #[unroll]
        for i in 0..PER_UNIT * PER_UNIT {
            acc[i] = 0.0f32;
            comp[i] = 0.0f32;
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
                step[i] = 0.0f32;
            }
            #[unroll]
            for k in 0..STEP {
                #[unroll]
                for j in 0..PER_UNIT {
                    bv[j] = b[k * TILE + tx + j * SIDE];
                }
                #[unroll]
                for i in 0..PER_UNIT {
                    let av = a[k * TILE + ty + i * SIDE];
                    #[unroll]
                    for j in 0..PER_UNIT {
                        step[i * PER_UNIT + j] += av * bv[j];
                    }
                }
            }
            #[unroll]
            for i in 0..PER_UNIT * PER_UNIT {
                let y = step[i] - comp[i];
                let t = acc[i] + y;
                comp[i] = (t - acc[i]) - y;
                acc[i] = t;
            }
            sync_cube();
        }
        let base = ((split * tiles + ti) * tiles + tj) * TILE * TILE;
        #[unroll]
        for i in 0..PER_UNIT {
            #[unroll]
            for j in 0..PER_UNIT {
                let at = i * PER_UNIT + j;
                partials[base + (ty + i * SIDE) * TILE + tx + j * SIDE] = acc[at] - comp[at];
            }
        }
    }

    /// Adds a chunk's splits into its slot with Kahan's compensation: for `i < len`, the
    /// slot's sum `sums[at + i]` and compensation `sums[comp_at + i]` take in
    /// `partials[s · len + i]` for every split `s` (a slot's first chunk starts them at zero,
    /// `add` 0; later chunks add, `add` 1).
    ///
    /// Launched unchecked: `partials` holds `splits · len` values and `sums` at least
    /// `at + len` and `comp_at + len` (the host sizes both).
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    fn sum_splits(
        partials: &Array<f32>,
        sums: &mut Array<f32>,
        splits: u32,
        len: u32,
        at: u32,
        comp_at: u32,
        add: u32,
    ) {
        let i = ((CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) * CUBE_DIM_X + UNIT_POS_X) as usize;
        let len = len as usize;
        if i >= len {
            terminate!();
        }
        let at = at as usize + i;
        let comp_at = comp_at as usize + i;
        let mut s = 0.0f32;
        let mut c = 0.0f32;
        if add == 1 {
            s = sums[at];
            c = sums[comp_at];
        }
        for k in 0..splits as usize {
            let y = partials[k * len + i] - c;
            let t = s + y;
            c = (t - s) - y;
            s = t;
        }
        sums[at] = s;
        sums[comp_at] = c;
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
        let partials = client.empty(splits * tile_len * 4);
        // Each slot's sums, then each slot's compensations.
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
            // `width`) and writes one `TILE²` tile per (split, ti, tj) of this launch, inside
            // `partials` (`splits · tiles²` tiles, `n_splits ≤ splits`); `sum_splits` reads
            // `partials` below `n_splits · len` and writes `sums` below `2 · slots · len`.
            #[allow(unsafe_code)]
            unsafe {
                gram_tiles::launch_unchecked::<WgpuRuntime>(
                    &client,
                    CubeCount::Static(tiles as u32, tiles as u32, n_splits as u32),
                    CubeDim::new_2d(SIDE as u32, SIDE as u32),
                    array_arg::<WgpuRuntime>(&targets[k % RING], n * width),
                    array_arg::<WgpuRuntime>(&partials, splits * tile_len),
                    n as u32,
                    width as u32,
                );
                sum_splits::launch_unchecked::<WgpuRuntime>(
                    &client,
                    CubeCount::Static(across as u32, cubes.div_ceil(across) as u32, 1),
                    CubeDim::new_1d(256),
                    array_arg::<WgpuRuntime>(&partials, splits * tile_len),
                    array_arg::<WgpuRuntime>(&sums, 2 * slots * tile_len),
                    n_splits as u32,
                    len as u32,
                    ((k % slots) * len) as u32,
                    ((slots + k % slots) * len) as u32,
                    u32::from(k >= slots),
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
        // Then the compensations: 0.25 in slot 0, −0.25 in slot 1 (they cancel).
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
