//! A batched walk of flat binary trees (a random forest's prediction) on an NVIDIA GPU: the
//! rows arrive as float64 through pinned memory, chunk by chunk while the previous chunk is
//! binned and walked; one kernel bins them (a binary search of each feature's edges), another
//! walks every tree with one thread per row and averages the leaves. Both are compiled at run
//! time with NVRTC. The trees stay on the device between calls, keyed by the caller's
//! fingerprint of their contents.
//!
//! Why a kernel of its own (docs/design.md, "Forest prediction on CUDA"): through burn the walk
//! is ten gathers per tree level over (tree, row) pairs, and cubecl's upload path moves the
//! rows at ~0.5 GB/s; on an H100 that took 54 ms for 100 trees × 100K rows against an issue
//! goal of 10 ms. Binning on the host took 7.6 ms of the next 11.9 ms.

use std::ops::Range;

use forexgpt_device::ComputeDevice;
use forexgpt_device::DeviceError;

/// Trees as flat arrays, nodes of all trees concatenated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlatTrees {
    /// Per node: `feature << 8 | bin` for a split (go left when the row's bin ≤ `bin`), −1 for
    /// a leaf.
    pub split: Vec<i32>,
    /// Per node: the left child (global node index).
    pub left: Vec<i32>,
    /// Per node: the right child, or for a leaf its row in `values`.
    pub right: Vec<i32>,
    /// Each tree's root node.
    pub roots: Vec<i32>,
    /// `leaves × outputs`, row-major.
    pub values: Vec<f32>,
}

/// Which trees to walk: `key` fingerprints their contents (trees already on the device under
/// this key are not uploaded again), and `arrays` builds them when they are not.
pub struct WalkTrees<'a> {
    pub key: u64,
    pub outputs: usize,
    pub arrays: &'a (dyn Fn() -> FlatTrees + Sync),
}

/// The bin edges of every feature, flat: feature `f`'s edges, ascending, are
/// `values[offsets[f]..offsets[f + 1]]`, at most 255 of them; a value's bin is the number of
/// its feature's edges below it (NaN: 0).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlatEdges {
    pub offsets: Vec<i32>,
    pub values: Vec<f64>,
}

impl FlatEdges {
    /// The edges of each feature in turn.
    pub fn new<'e>(features: impl IntoIterator<Item = &'e [f64]>) -> Self {
        let mut flat = FlatEdges {
            offsets: vec![0],
            values: Vec::new(),
        };
        for edges in features {
            flat.values.extend_from_slice(edges);
            flat.offsets.push(flat.values.len() as i32);
        }
        flat
    }

    /// Why these edges cannot bin `d` features, if they cannot.
    fn problem(&self, d: usize) -> Option<String> {
        if self.offsets.len() != d + 1
            || self.offsets.first() != Some(&0)
            || self.offsets.last().copied() != i32::try_from(self.values.len()).ok()
        {
            return Some(format!(
                "bin edges for {} features, not {d}",
                self.offsets.len().max(1) - 1
            ));
        }
        self.offsets.windows(2).enumerate().find_map(|(f, w)| {
            let count = w[1] - w[0];
            let edges = usize::try_from(w[0])
                .ok()
                .zip(usize::try_from(w[1]).ok())
                .and_then(|(a, b)| self.values.get(a..b));
            let sorted = edges.is_some_and(|e| e.windows(2).all(|p| p[0] <= p[1]));
            (!(0..=255).contains(&count) || !sorted)
                .then(|| format!("feature {f}: {count} bin edges, or not ascending"))
        })
    }
}

/// Writes rows `range` of the features, row-major float64 (`range.len() × d`), into the slice.
/// Called once per chunk, in order, on the calling thread; it may use rayon.
pub type FillRows<'a> = dyn Fn(Range<usize>, &mut [f64]) + Sync + 'a;

/// `rows × outputs` means over the trees, row-major, for `rows` rows of `d` float64 features
/// that `fill` supplies, binned on the device by `edges`.
pub fn cuda_tree_walk(
    device: &ComputeDevice,
    trees: &WalkTrees<'_>,
    edges: &FlatEdges,
    rows: usize,
    d: usize,
    fill: &FillRows<'_>,
) -> Result<Vec<f32>, DeviceError> {
    // 4 MB of rows per chunk; a walk covers as many chunks as 64 MB of bins hold.
    let chunk = ((4 << 20) / (8 * d.max(1))).clamp(1, rows.max(1));
    let walk_chunks = ((64 << 20) / d.max(1) / chunk).max(1);
    cuda_tree_walk_in_chunks(device, trees, edges, rows, d, chunk, walk_chunks, fill)
}

/// [`cuda_tree_walk`] with `chunk` rows per upload and a walk every `walk_chunks` chunks
/// (tests use small ones to cross many boundaries).
#[allow(clippy::too_many_arguments)] // the walk's arguments and the two sizes
pub fn cuda_tree_walk_in_chunks(
    device: &ComputeDevice,
    trees: &WalkTrees<'_>,
    edges: &FlatEdges,
    rows: usize,
    d: usize,
    chunk: usize,
    walk_chunks: usize,
    fill: &FillRows<'_>,
) -> Result<Vec<f32>, DeviceError> {
    let refuse = |message: String| DeviceError::BackendFailed {
        device: device.label().to_string(),
        message,
    };
    let Some(index) = device.cuda_index() else {
        return Err(refuse("the CUDA tree walk needs a CUDA device".into()));
    };
    if trees.outputs == 0 || d == 0 || d > 1 << 23 {
        return Err(refuse(format!(
            "cannot walk {} outputs over {d} features",
            trees.outputs
        )));
    }
    if let Some(problem) = edges.problem(d) {
        return Err(refuse(problem));
    }
    let sizes = (chunk.max(1), walk_chunks.max(1));
    if rows == 0 {
        return Ok(Vec::new());
    }
    #[cfg(feature = "cuda")]
    {
        crate::cuda_common::guarded(&imp::SESSION, device.label(), "forest walk", |slot| {
            imp::run(slot, index, trees, edges, rows, d, sizes, fill)
        })
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (index, rows, sizes, fill);
        Err(crate::NOT_BUILT)
    }
}

#[cfg(feature = "cuda")]
#[allow(unsafe_code)] // kernel launches and pinned allocations; each unsafe block states its contract.
mod imp {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use cudarc::driver::{
        CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtrMut, LaunchConfig,
        PinnedHostSlice, PushKernelArg, result,
    };

    use super::*;
    use crate::cuda_common::new_stream;

    /// The kernels; `K` (outputs per leaf) is defined in front of them, so the walk's sums
    /// stay in registers.
    const SOURCE: &str = r#"
// A value's bin: how many of its feature's edges are below it (NaN: none), as the host's
// BinEdges::bin.
extern "C" __global__ void bin_rows(
    const double* __restrict__ x, int rows, int d, const int* __restrict__ offsets,
    const double* __restrict__ edges, unsigned char* __restrict__ bins, int row0)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * d) return;
    int f = (int)(i % (size_t)d);
    double v = x[i];
    int lo = offsets[f], hi = offsets[f + 1], first = lo;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (edges[mid] < v) lo = mid + 1; else hi = mid;
    }
    bins[(size_t)row0 * d + i] = (unsigned char)(lo - first);
}

// One thread per row walks every tree; the mean of the leaves goes to out[row0 + r].
// (Launched over many chunks' rows at once: a chunk's rows alone leave most of the GPU idle.)
extern "C" __global__ void forest_walk(
    const unsigned char* __restrict__ bins, int rows, int d,
    const int4* __restrict__ nodes, const int* __restrict__ roots, int n_trees,
    const float* __restrict__ values, float* __restrict__ out, int row0)
{
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const unsigned char* row = bins + (size_t)r * d;
    float acc[K];
    for (int j = 0; j < K; ++j) acc[j] = 0.0f;
    for (int t = 0; t < n_trees; ++t) {
        int4 n = nodes[roots[t]];
        while (n.x >= 0) {
            n = nodes[(int)row[n.x >> 8] <= (n.x & 255) ? n.y : n.z];
        }
        const float* v = values + (size_t)n.z * K;
        for (int j = 0; j < K; ++j) acc[j] += v[j];
    }
    for (int j = 0; j < K; ++j) out[((size_t)row0 + r) * K + j] = acc[j] / (float)n_trees;
}
"#;

    /// Forests kept on the device (a 100-tree, fully grown forest is ~20 MB).
    const RESIDENT: usize = 4;

    struct DeviceTrees {
        key: u64,
        nodes: CudaSlice<i32>,
        roots: CudaSlice<i32>,
        values: CudaSlice<f32>,
        n_trees: i32,
    }

    /// Two slots of `len` float64 values (pinned host rows, their device twin, and the event
    /// after which the pinned rows may be rewritten), and the bins of `bins_len` values.
    struct Slots {
        len: usize,
        bins_len: usize,
        host: [PinnedHostSlice<f64>; 2],
        rows: [CudaSlice<f64>; 2],
        bins: CudaSlice<u8>,
        uploaded: [Option<CudaEvent>; 2],
    }

    pub(super) struct Session {
        index: usize,
        stream: Arc<CudaStream>,
        /// The two kernels per number of outputs.
        kernels: Vec<(usize, CudaFunction, CudaFunction)>,
        forests: Vec<DeviceTrees>,
        slots: Option<Slots>,
    }

    pub(super) static SESSION: Mutex<Option<Session>> = Mutex::new(None);

    fn session(slot: &mut Option<Session>, index: usize) -> Result<&mut Session, String> {
        if slot.as_ref().is_none_or(|s| s.index != index) {
            *slot = None;
            *slot = Some(Session {
                index,
                stream: new_stream(index)?,
                kernels: Vec::new(),
                forests: Vec::new(),
                slots: None,
            });
        }
        slot.as_mut().ok_or_else(|| "no CUDA session".to_string())
    }

    fn kernels(
        session: &mut Session,
        outputs: usize,
    ) -> Result<(CudaFunction, CudaFunction), String> {
        if let Some((_, bin, walk)) = session.kernels.iter().find(|(k, ..)| *k == outputs) {
            return Ok((bin.clone(), walk.clone()));
        }
        let source = format!("#define K {outputs}\n{SOURCE}");
        let ptx = cudarc::nvrtc::compile_ptx(source).map_err(|e| format!("NVRTC: {e}"))?;
        let module = session
            .stream
            .context()
            .load_module(ptx)
            .map_err(|e| format!("loading the kernels: {e}"))?;
        let load = |name| {
            module
                .load_function(name)
                .map_err(|e| format!("loading the kernel {name}: {e}"))
        };
        let (bin, walk) = (load("bin_rows")?, load("forest_walk")?);
        session.kernels.push((outputs, bin.clone(), walk.clone()));
        Ok((bin, walk))
    }

    /// The trees on the device, uploaded unless already there; the newest few are kept.
    fn resident<'a>(
        forests: &'a mut Vec<DeviceTrees>,
        stream: &Arc<CudaStream>,
        trees: &WalkTrees<'_>,
    ) -> Result<&'a DeviceTrees, String> {
        if let Some(i) = forests.iter().position(|f| f.key == trees.key) {
            let found = forests.remove(i);
            forests.insert(0, found);
        } else {
            let flat = (trees.arrays)();
            let n = flat.split.len();
            if flat.left.len() != n || flat.right.len() != n || flat.roots.is_empty() {
                return Err("inconsistent tree arrays".into());
            }
            let mut nodes = Vec::with_capacity(4 * n);
            for i in 0..n {
                nodes.extend([flat.split[i], flat.left[i], flat.right[i], 0]);
            }
            let up = |e| format!("uploading the trees: {e}");
            let uploaded = DeviceTrees {
                key: trees.key,
                nodes: stream.clone_htod(&nodes).map_err(up)?,
                roots: stream.clone_htod(&flat.roots).map_err(up)?,
                values: stream.clone_htod(&flat.values).map_err(up)?,
                n_trees: i32::try_from(flat.roots.len()).map_err(|_| "too many trees")?,
            };
            forests.insert(0, uploaded);
            forests.truncate(RESIDENT);
        }
        forests.first().ok_or_else(|| "no trees".to_string())
    }

    /// Two slots of at least `len` values and bins of at least `bins_len`, kept between calls.
    fn slots<'a>(
        kept: &'a mut Option<Slots>,
        stream: &Arc<CudaStream>,
        len: usize,
        bins_len: usize,
    ) -> Result<&'a mut Slots, String> {
        if kept
            .as_ref()
            .is_none_or(|s| s.len < len || s.bins_len < bins_len)
        {
            *kept = None;
            let ctx = stream.context();
            let pinned = || {
                // SAFETY: uninitialised; `fill` writes every value that is copied.
                unsafe { ctx.alloc_pinned::<f64>(len) }
                    .map_err(|e| format!("pinned host memory ({len} values): {e}"))
            };
            let memory = |e| format!("device memory: {e}");
            *kept = Some(Slots {
                len,
                bins_len,
                host: [pinned()?, pinned()?],
                rows: [
                    stream.alloc_zeros::<f64>(len).map_err(memory)?,
                    stream.alloc_zeros::<f64>(len).map_err(memory)?,
                ],
                bins: stream.alloc_zeros::<u8>(bins_len).map_err(memory)?,
                uploaded: [None, None],
            });
        }
        kept.as_mut().ok_or_else(|| "no buffers".to_string())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn run(
        slot: &mut Option<Session>,
        index: usize,
        trees: &WalkTrees<'_>,
        edges: &FlatEdges,
        rows: usize,
        d: usize,
        (chunk, walk_chunks): (usize, usize),
        fill: &FillRows<'_>,
    ) -> Result<Vec<f32>, String> {
        let started = Instant::now();
        let k = trees.outputs;
        let session = session(slot, index)?;
        let (bin_rows, forest_walk) = kernels(session, k)?;
        let Session {
            stream,
            forests,
            slots: kept,
            ..
        } = session;
        let stream = stream.clone();
        let forest = resident(forests, &stream, trees)?;
        let chunk = chunk.min(rows);
        let walk_rows = walk_chunks * chunk;
        let slots = slots(kept, &stream, chunk * d, walk_rows.min(rows) * d)?;
        let memory = |e| format!("device memory: {e}");
        let up = |e| format!("upload: {e}");
        let offsets = stream.clone_htod(&edges.offsets).map_err(up)?;
        let edge_values = stream
            .clone_htod(
                &edges
                    .values
                    .iter()
                    .copied()
                    .chain([0.0])
                    .collect::<Vec<_>>(),
            )
            .map_err(up)?;
        let mut out_dev = stream.alloc_zeros::<f32>(rows * k).map_err(memory)?;
        let prepared = started.elapsed();
        let mut fill_time = Duration::ZERO;
        let d_i = d as i32;
        i32::try_from(rows).map_err(|_| format!("{rows} rows are too many for one walk"))?;
        for (i, start) in (0..rows).step_by(chunk).enumerate() {
            let n = chunk.min(rows - start);
            let s = i % 2;
            // The slot's previous upload must have finished before its pinned rows are
            // rewritten; meanwhile the other slot's rows are binned and walked.
            if let Some(event) = slots.uploaded[s].take() {
                event
                    .synchronize()
                    .map_err(|e| format!("CUDA event: {e}"))?;
            }
            let filled = Instant::now();
            let host = &mut slots.host[s]
                .as_mut_slice()
                .map_err(|e| format!("pinned memory: {e}"))?[..n * d];
            fill(start..start + n, host);
            fill_time += filled.elapsed();
            {
                let (dst, _record) = slots.rows[s].device_ptr_mut(&stream);
                // SAFETY: the device slot holds `chunk · d ≥ n · d` values; the pinned source
                // stays alive and untouched until `uploaded[s]` has completed.
                unsafe { result::memcpy_htod_async(dst, host, stream.cu_stream()) }
                    .map_err(|e| format!("upload: {e}"))?;
            }
            slots.uploaded[s] = Some(
                stream
                    .record_event(None)
                    .map_err(|e| format!("CUDA event: {e}"))?,
            );
            // This chunk's bins go after the window's earlier chunks.
            let window = start - start % walk_rows;
            let (n_i, in_window) = (n as i32, (start - window) as i32);
            let values = n * d;
            let mut launch = stream.launch_builder(&bin_rows);
            launch
                .arg(&slots.rows[s])
                .arg(&n_i)
                .arg(&d_i)
                .arg(&offsets)
                .arg(&edge_values)
                .arg(&mut slots.bins)
                .arg(&in_window);
            let cfg = LaunchConfig {
                grid_dim: (values.div_ceil(256) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: the arguments match `bin_rows`' signature; the slot holds n·d values,
            // the bins hold `walk_rows · d ≥ (in_window + n) · d`, and `offsets` has d + 1
            // entries (checked) indexing `edge_values`.
            unsafe { launch.launch(cfg) }.map_err(|e| format!("launch: {e}"))?;
            let end = start + n;
            if !end.is_multiple_of(walk_rows) && end != rows {
                continue;
            }
            // The window is binned: walk its rows.
            let (window_rows, row0) = ((end - window) as i32, window as i32);
            let mut launch = stream.launch_builder(&forest_walk);
            launch
                .arg(&slots.bins)
                .arg(&window_rows)
                .arg(&d_i)
                .arg(&forest.nodes)
                .arg(&forest.roots)
                .arg(&forest.n_trees)
                .arg(&forest.values)
                .arg(&mut out_dev)
                .arg(&row0);
            let cfg = LaunchConfig {
                grid_dim: ((window_rows as u32).div_ceil(128), 1, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: the arguments match `forest_walk`'s signature; every index the kernel
            // reads was checked on the host (`Trees::check`) before upload, the window's
            // `window_rows · d` bins were all written above, and `out_dev` holds rows · K
            // floats with row0 + window_rows ≤ rows.
            unsafe { launch.launch(cfg) }.map_err(|e| format!("launch: {e}"))?;
        }
        let out = stream
            .clone_dtoh(&out_dev)
            .map_err(|e| format!("read-back: {e}"))?;
        tracing::debug!(
            rows,
            trees = forest.n_trees,
            chunk,
            walk_rows,
            prepare_ms = prepared.as_secs_f64() * 1e3,
            fill_ms = fill_time.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "CUDA forest walk"
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forexgpt_device::testing::for_each_device;

    /// Two trees over two features, two outputs:
    /// tree 0 splits feature 1 at bin 3 into leaves 0 and 1; tree 1 is the single leaf 2.
    fn forest() -> FlatTrees {
        FlatTrees {
            split: vec![1 << 8 | 3, -1, -1, -1],
            left: vec![1, 1, 2, 3],
            right: vec![2, 0, 1, 2],
            roots: vec![0, 3],
            values: vec![1.0, 10.0, 3.0, 30.0, 5.0, 50.0],
        }
    }

    fn host_walk(f: &FlatTrees, bins: &[u8], d: usize, k: usize) -> Vec<f32> {
        let mut out = Vec::new();
        for row in bins.chunks(d) {
            let mut acc = vec![0.0f32; k];
            for &root in &f.roots {
                let mut n = root as usize;
                while f.split[n] >= 0 {
                    let s = f.split[n];
                    n = if i32::from(row[(s >> 8) as usize]) <= (s & 255) {
                        f.left[n]
                    } else {
                        f.right[n]
                    } as usize;
                }
                let v = f.right[n] as usize * k;
                acc.iter_mut()
                    .zip(&f.values[v..v + k])
                    .for_each(|(a, x)| *a += x);
            }
            out.extend(acc.iter().map(|a| a / f.roots.len() as f32));
        }
        out
    }

    #[test]
    fn the_host_reference_walks_as_described() {
        // Bin 3 on feature 1 goes left (node 1, values row 0), bin 4 right (node 2, values
        // row 1); tree 1 always gives values row 2.
        let got = host_walk(&forest(), &[0, 3, 0, 4], 2, 2);
        assert_eq!(got, vec![3.0, 30.0, 4.0, 40.0]);
    }

    /// Edges 0.5, 1.5, …, 7.5 for both features: a value's bin is how many lie below it.
    fn edges() -> (Vec<f64>, FlatEdges) {
        let e: Vec<f64> = (0..8).map(|i| f64::from(i) + 0.5).collect();
        let flat = FlatEdges::new([&e[..], &e[..]]);
        (e, flat)
    }

    #[test]
    fn a_non_cuda_device_and_bad_edges_are_refused_by_name() {
        let cpu = ComputeDevice::cpu("test cpu");
        let arrays = forest;
        let trees = WalkTrees {
            key: 1,
            outputs: 2,
            arrays: &arrays,
        };
        let (_, flat) = edges();
        let err = cuda_tree_walk(&cpu, &trees, &flat, 1, 2, &|_, _| {}).unwrap_err();
        assert!(err.to_string().contains("test cpu"), "{err}");
        assert_eq!(flat.problem(2), None);
        assert!(flat.problem(3).unwrap().contains("not 3"));
        let unsorted = FlatEdges::new([&[0.5, 1.5][..], &[2.0, 1.0][..]]);
        assert!(unsorted.problem(2).unwrap().contains("feature 1"));
        let overlong = FlatEdges {
            offsets: vec![0, 3, 2],
            values: vec![0.5, 1.5],
        };
        assert!(overlong.problem(2).unwrap().contains("feature 0"));
    }

    #[test]
    fn the_cuda_walk_bins_and_walks_as_the_host() {
        let rows = 1_200_000; // five chunks of 4 MB
        let (e, flat) = edges();
        // Values on, just above and below the edges, NaN and infinities among them.
        let special = [
            0.5,
            3.5,
            3.5f64.next_up(),
            3.5f64.next_down(),
            f64::NAN,
            -f64::INFINITY,
            f64::INFINITY,
            -0.0,
        ];
        let x: Vec<f64> = (0..rows * 2)
            .map(|i| match i % 11 {
                0 => special[(i / 11) % special.len()],
                _ => ((i * 7) % 9) as f64 + ((i % 5) as f64 - 2.0) * 0.25,
            })
            .collect();
        let bins: Vec<u8> = x
            .iter()
            .map(|&v| e.partition_point(|&b| b < v) as u8)
            .collect();
        let want = host_walk(&forest(), &bins, 2, 2);
        for_each_device(|device| {
            if device.cuda_index().is_none() {
                return;
            }
            let arrays = forest;
            let trees = WalkTrees {
                key: 0xf0f0,
                outputs: 2,
                arrays: &arrays,
            };
            let fill = |r: std::ops::Range<usize>, out: &mut [f64]| {
                out.copy_from_slice(&x[r.start * 2..r.end * 2]);
            };
            // Twice: the second call finds the trees already on the device.
            for _ in 0..2 {
                let got = cuda_tree_walk(device, &trees, &flat, rows, 2, &fill).unwrap();
                assert_eq!(got, want);
            }
            // Many chunks and walks, the last of each short.
            let got =
                cuda_tree_walk_in_chunks(device, &trees, &flat, rows, 2, 70_001, 3, &fill).unwrap();
            assert_eq!(got, want);
        });
    }
}
