//! Random-forest trees grown on an NVIDIA GPU (`kernels/grow_trees.cu`): one thread block per
//! tree runs the CPU grower's algorithm, big nodes with the whole block, then small subtrees a
//! warp each, many trees at once; compiled at run time with NVRTC and launched through cudarc.
//!
//! The caller supplies each tree's bootstrap (weights, in-bag rows and the root's seed); every
//! node draws its features from a stream of its own, derived from its parent's, so the GPU
//! draws what the CPU draws whatever the order in which the nodes are grown, and on data whose
//! sums are exact the trees are the CPU's trees. What comes back is each tree's node arrays in
//! the order the nodes were grown (the root first) and its raw impurity decreases per feature.

use forexgpt_device::ComputeDevice;
use forexgpt_device::DeviceError;

/// The binned training rows, as the CPU grower and this builder both read them.
#[derive(Debug, Clone, Copy)]
pub struct BinnedRows<'a> {
    /// Column-major bins: `bins[f·n + r]`.
    pub bins: &'a [u8],
    pub n: usize,
    pub d: usize,
    /// Row-major targets, `n × k`: `y[r·k + j]`.
    pub y: &'a [f64],
    pub k: usize,
    /// Bins per feature (≤ 256).
    pub n_bins: &'a [usize],
}

/// When a node may split, as the CPU grower and this builder both apply it (scikit-learn's
/// parameters, checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrowLimits {
    pub max_depth: usize,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    /// Non-constant features to evaluate per node.
    pub max_features: usize,
}

/// One tree's bootstrap.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeStart {
    /// Per row: how often the bootstrap drew it (0: out of bag).
    pub weight: Vec<f64>,
    /// The in-bag rows, ascending.
    pub rows: Vec<u32>,
    /// The root node's seed.
    pub seed: u64,
}

/// One grown tree, nodes in the order they were grown, the root first: per node the split
/// feature (−1 for a leaf), split bin, children (for a leaf both are its leaf index), leaf
/// values (`leaves × k`, in the order the leaves were grown), and per feature the raw impurity
/// decrease weighted by node weight.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrownTree {
    pub feature: Vec<i32>,
    pub bin: Vec<i32>,
    pub left: Vec<i32>,
    pub right: Vec<i32>,
    pub values: Vec<f32>,
    pub n_leaves: u32,
    pub depth: u32,
    pub importance: Vec<f64>,
}

/// Grows `n_trees` trees on `device` (a CUDA device). `start(t)` gives tree `t`'s bootstrap;
/// `observe(done)` hears after each batch of trees and returns false to cancel, which gives
/// `Ok(None)`.
pub fn cuda_grow_trees(
    device: &ComputeDevice,
    data: &BinnedRows<'_>,
    limits: &GrowLimits,
    n_trees: usize,
    start: &(dyn Fn(usize) -> TreeStart + Sync),
    observe: &(dyn Fn(usize) -> bool + Sync),
) -> Result<Option<Vec<GrownTree>>, DeviceError> {
    let fail = |message: String| DeviceError::BackendFailed {
        device: device.label().to_string(),
        message,
    };
    if data.bins.len() != data.n * data.d
        || data.y.len() != data.n * data.k
        || data.n_bins.len() != data.d
        || data.n_bins.iter().any(|&b| b > 256)
        || data.k == 0
        || data.n >= i32::MAX as usize / 5
    {
        return Err(fail(format!(
            "inconsistent forest data ({} rows × {} features → {} outputs)",
            data.n, data.d, data.k
        )));
    }
    let Some(index) = device.cuda_index() else {
        return Err(fail("growing trees on CUDA needs a CUDA device".into()));
    };
    if n_trees == 0 || data.n == 0 {
        return Ok(Some(Vec::new()));
    }
    #[cfg(feature = "cuda")]
    {
        crate::cuda_common::guarded(&imp::SESSION, device.label(), "growing trees", |slot| {
            imp::run(slot, index, data, limits, n_trees, start, observe)
        })
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (index, limits, n_trees, start, observe);
        Err(crate::NOT_BUILT)
    }
}

#[cfg(feature = "cuda")]
#[allow(unsafe_code)] // kernel launches; each unsafe block states its contract.
mod imp {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
    use cudarc::driver::{
        CudaFunction, CudaStream, DevicePtr, LaunchConfig, PinnedHostSlice, PushKernelArg, result,
    };

    use super::*;
    use crate::cuda_common::new_stream;

    const SOURCE: &str = include_str!("kernels/grow_trees.cu");
    /// Device memory for one batch of trees' working arrays.
    const BATCH_BYTES: usize = 1 << 30;
    /// Shared memory a block may take at most (less where the device offers less).
    const SHARED_BYTES: usize = 200 << 10;
    /// Shared memory the kernel declares statically (reductions, the node being grown), with
    /// room to spare.
    const STATIC_SHARED: usize = 4 << 10;
    /// `SMALL` in the kernel: nodes of at most this many rows are grown by one warp.
    const SMALL: usize = 64;
    /// Bytes of one pending node (`Work` in the kernel).
    const WORK_BYTES: usize = 32;

    /// A compiled kernel and its launch shape.
    #[derive(Clone)]
    struct Kernel {
        key: (usize, usize),
        function: CudaFunction,
        warps: usize,
        shared: usize,
    }

    pub(super) struct Session {
        index: usize,
        stream: Arc<CudaStream>,
        /// One compiled kernel per (outputs, features).
        kernels: Vec<Kernel>,
        /// Pinned host memory the node arrays and the leaf values come back to, kept between
        /// calls (pageable read-backs into fresh vectors took 20–40 ms for 100 trees).
        host_nodes: Option<PinnedHostSlice<i32>>,
        host_values: Option<PinnedHostSlice<f32>>,
    }

    /// `kept` if it holds at least `len` values, else a fresh pinned buffer of `len`.
    fn pinned<'a, T: cudarc::driver::DeviceRepr + Default>(
        kept: &'a mut Option<PinnedHostSlice<T>>,
        stream: &Arc<CudaStream>,
        len: usize,
    ) -> Result<&'a mut PinnedHostSlice<T>, String> {
        if kept.as_ref().is_none_or(|p| p.len() < len) {
            *kept = None;
            // SAFETY: uninitialised; only the part a read-back has written is read.
            let fresh = unsafe { stream.context().alloc_pinned::<T>(len.max(1)) }
                .map_err(|e| format!("pinned host memory: {e}"))?;
            *kept = Some(fresh);
        }
        kept.as_mut().ok_or_else(|| "no pinned memory".to_string())
    }

    pub(super) static SESSION: Mutex<Option<Session>> = Mutex::new(None);

    /// Shared bytes per warp: a big node's histogram of one feature, or a small subtree's
    /// staging (its stack, rows, weights, targets and feature draws), whichever is larger.
    fn region(k: usize, d: usize) -> usize {
        let histogram = 256 * (2 + k) * 8;
        let staging = (SMALL + 1) * WORK_BYTES + SMALL * 8 + SMALL * k * 8 + SMALL * 4 + 9 * d;
        histogram.max(staging).next_multiple_of(16)
    }

    fn kernel(session: &mut Session, k: usize, d: usize) -> Result<Kernel, String> {
        if let Some(found) = session.kernels.iter().find(|c| c.key == (k, d)) {
            return Ok(found.clone());
        }
        let ctx = session.stream.context();
        let attribute = |a| {
            ctx.attribute(a)
                .map_err(|e| format!("device attribute {a:?}: {e}"))
        };
        let major = attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        if major < 6 {
            return Err(format!(
                "compute capability {major}.{minor}: the tree builder needs 6.0 or later"
            ));
        }
        let opt_in =
            attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?;
        let budget = (opt_in.max(0) as usize)
            .saturating_sub(STATIC_SHARED)
            .min(SHARED_BYTES);
        let region = region(k, d);
        // The block's per-feature arrays: best proxy (f64), permutation, visiting order, has a
        // split, split bin (i32), constant (u8).
        let block_arrays = (25 * d).next_multiple_of(16);
        let warps = (budget.saturating_sub(block_arrays) / region).min(16);
        if warps == 0 {
            return Err(format!(
                "{d} features and {k} outputs need more shared memory than the device's \
                 {opt_in} bytes per block"
            ));
        }
        let shared = warps * region + block_arrays;
        let source = format!(
            "#define K {k}\n#define D {d}\n#define WARPS {warps}\n#define REGION {region}\n{SOURCE}"
        );
        let options = cudarc::nvrtc::CompileOptions {
            options: vec![format!("--gpu-architecture=compute_{major}{minor}")],
            // No fused multiply-adds: the CPU grower rounds every product, and equal
            // arithmetic is what makes equal trees.
            fmad: Some(false),
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(source, options)
            .map_err(|e| format!("NVRTC: {e:?}"))?;
        let module = ctx
            .load_module(ptx)
            .map_err(|e| format!("loading the kernel: {e}"))?;
        let function = module
            .load_function("grow_trees")
            .map_err(|e| format!("loading the kernel: {e}"))?;
        function
            .set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                shared as i32,
            )
            .map_err(|e| format!("shared memory of {shared} bytes: {e}"))?;
        let compiled = Kernel {
            key: (k, d),
            function,
            warps,
            shared,
        };
        session.kernels.push(compiled.clone());
        Ok(compiled)
    }

    pub(super) fn run(
        slot: &mut Option<Session>,
        index: usize,
        data: &BinnedRows<'_>,
        limits: &GrowLimits,
        n_trees: usize,
        start: &(dyn Fn(usize) -> TreeStart + Sync),
        observe: &(dyn Fn(usize) -> bool + Sync),
    ) -> Result<Option<Vec<GrownTree>>, String> {
        let started = Instant::now();
        if slot.as_ref().is_none_or(|s| s.index != index) {
            *slot = None;
            *slot = Some(Session {
                index,
                stream: new_stream(index)?,
                kernels: Vec::new(),
                host_nodes: None,
                host_values: None,
            });
        }
        let session = slot.as_mut().ok_or("no CUDA session")?;
        let (n, d, k) = (data.n, data.d, data.k);
        let kernel = kernel(session, k, d)?;
        let stream = session.stream.clone();
        let compiled = started.elapsed();
        let up = |e| format!("upload: {e}");
        // Column-major bins for the big nodes (a warp reads one feature over many rows),
        // row-major for the small ones (a lane per feature reads one row's features).
        let mut row_major = vec![0u8; n * d];
        for (f, column) in data.bins.chunks_exact(n).enumerate() {
            for (r, &b) in column.iter().enumerate() {
                row_major[r * d + f] = b;
            }
        }
        let bins = stream.clone_htod(data.bins).map_err(up)?;
        let rbins = stream.clone_htod(&row_major).map_err(up)?;
        let y = stream.clone_htod(data.y).map_err(up)?;
        let n_bins: Vec<i32> = data.n_bins.iter().map(|&b| b as i32).collect();
        let n_bins = stream.clone_htod(&n_bins).map_err(up)?;
        // Per tree: weights, rows, tmp, pending nodes, ≤ 2n nodes, ≤ n leaves, importances.
        let per_tree = n * (8 + 4 + 4 + 2 * 16 + 4 * k) + (n + 1) * WORK_BYTES + d * 8 + 16;
        let batch = (BATCH_BYTES / per_tree).clamp(1, n_trees);
        let clamp = |v: usize| i32::try_from(v.min(i32::MAX as usize)).unwrap_or(i32::MAX);
        let rules = [
            clamp(limits.max_depth),
            clamp(limits.min_samples_split),
            clamp(limits.min_samples_leaf),
            clamp(limits.max_features),
        ];
        let n_i = n as i32;
        let mut grown = Vec::with_capacity(n_trees);
        // Where a block's time goes: its phase 1 (big nodes) in clock cycles.
        let clock_khz = stream
            .context()
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)
            .unwrap_or(0)
            .max(1) as f64;
        let mut phase1_ms: Vec<f64> = Vec::with_capacity(n_trees);
        let (mut prepare, mut kernel_time, mut read_back) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for first in (0..n_trees).step_by(batch) {
            let prepared = Instant::now();
            let count = batch.min(n_trees - first);
            // The bootstraps, drawn on every core (scoped threads over groups of trees).
            let mut weights = vec![0.0f64; count * n];
            let mut rows = vec![0u32; count * n];
            let mut n_rows = vec![0i32; count];
            let mut seeds = vec![0u64; count];
            let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
            let per = count.div_ceil(threads.clamp(1, count));
            let mismatch = AtomicBool::new(false);
            std::thread::scope(|scope| {
                let groups = weights
                    .chunks_mut(per * n)
                    .zip(rows.chunks_mut(per * n))
                    .zip(n_rows.chunks_mut(per).zip(seeds.chunks_mut(per)));
                for (g, ((weights, rows), (n_rows, seeds))) in groups.enumerate() {
                    let mismatch = &mismatch;
                    scope.spawn(move || {
                        for b in 0..n_rows.len() {
                            let s = start(first + g * per + b);
                            if s.weight.len() != n || s.rows.len() > n {
                                mismatch.store(true, Ordering::Relaxed);
                                return;
                            }
                            weights[b * n..(b + 1) * n].copy_from_slice(&s.weight);
                            rows[b * n..b * n + s.rows.len()].copy_from_slice(&s.rows);
                            n_rows[b] = s.rows.len() as i32;
                            seeds[b] = s.seed;
                        }
                    });
                }
            });
            if mismatch.into_inner() {
                return Err("a tree's bootstrap does not match the data".into());
            }
            // A tree of m rows has at most 2m − 1 nodes and m leaves.
            let most_rows = n_rows.iter().copied().max().unwrap_or(0).max(1) as usize;
            let cap = 2 * most_rows;
            let leaf_cap = cap / 2 + 1;
            let device_memory = |e| format!("device memory: {e}");
            let alloc_i32 =
                |len: usize| stream.alloc_zeros::<i32>(len.max(1)).map_err(device_memory);
            let weights = stream.clone_htod(&weights).map_err(up)?;
            let mut rows = stream.clone_htod(&rows).map_err(up)?;
            let n_rows = stream.clone_htod(&n_rows).map_err(up)?;
            let seeds = stream.clone_htod(&seeds).map_err(up)?;
            let mut tmp = stream
                .alloc_zeros::<u32>(count * n)
                .map_err(device_memory)?;
            let mut work = stream
                .alloc_zeros::<u64>(count * (n + 1) * WORK_BYTES / 8)
                .map_err(device_memory)?;
            let mut nodes = alloc_i32(4 * count * cap)?;
            let mut values = stream
                .alloc_zeros::<f32>(count * leaf_cap * k)
                .map_err(device_memory)?;
            let mut importance = stream
                .alloc_zeros::<f64>(count * d.max(1))
                .map_err(device_memory)?;
            let mut counts = alloc_i32(count * 4)?;
            let cap_i = clamp(cap);
            prepare += prepared.elapsed();
            let launched = Instant::now();
            let mut launch = stream.launch_builder(&kernel.function);
            launch
                .arg(&bins)
                .arg(&rbins)
                .arg(&n_i)
                .arg(&y)
                .arg(&n_bins)
                .arg(&weights)
                .arg(&mut rows)
                .arg(&mut tmp)
                .arg(&n_rows)
                .arg(&seeds)
                .arg(&mut work)
                .arg(&cap_i)
                .arg(&mut nodes)
                .arg(&mut values)
                .arg(&mut importance)
                .arg(&mut counts)
                .arg(&rules[0])
                .arg(&rules[1])
                .arg(&rules[2])
                .arg(&rules[3]);
            let cfg = LaunchConfig {
                grid_dim: (count as u32, 1, 1),
                block_dim: (kernel.warps as u32 * 32, 1, 1),
                shared_mem_bytes: kernel.shared as u32,
            };
            // SAFETY: the arguments match `grow_trees`' signature in order and type, and every
            // buffer has the per-tree size the kernel indexes (see its parameter comments):
            // weights/rows/tmp n, work (n + 1) entries of 32 bytes, nodes 4·`cap`, values
            // (cap / 2 + 1)·K, importance D, counts 4, for `count` trees; no tree has more
            // than cap / 2 in-bag rows, so no more than cap − 1 nodes.
            unsafe { launch.launch(cfg) }.map_err(|e| format!("launch: {e}"))?;
            let down = |e| format!("read-back: {e}");
            let counts = stream.clone_dtoh(&counts).map_err(down)?;
            kernel_time += launched.elapsed();
            let fetched = Instant::now();
            let importance = stream.clone_dtoh(&importance).map_err(down)?;
            let Session {
                host_nodes,
                host_values,
                ..
            } = &mut *session;
            // Into the front of the kept pinned buffers (cudarc's `memcpy_dtoh` would copy the
            // whole destination's length).
            let host_nodes = &mut pinned(host_nodes, &stream, nodes.len())?
                .as_mut_slice()
                .map_err(down)?[..nodes.len()];
            let host_values = &mut pinned(host_values, &stream, values.len())?
                .as_mut_slice()
                .map_err(down)?[..values.len()];
            {
                let (src, _record) = nodes.device_ptr(&stream);
                // SAFETY: the destination holds exactly `nodes.len()` values; the stream is
                // synchronised below before it is read.
                unsafe { result::memcpy_dtoh_async(&mut *host_nodes, src, stream.cu_stream()) }
                    .map_err(down)?;
                let (src, _record) = values.device_ptr(&stream);
                // SAFETY: as above, `values.len()` values.
                unsafe { result::memcpy_dtoh_async(&mut *host_values, src, stream.cu_stream()) }
                    .map_err(down)?;
            }
            stream.synchronize().map_err(down)?;
            let (node_arrays, values) = (&*host_nodes, &*host_values);
            for b in 0..count {
                let c = &counts[b * 4..b * 4 + 4];
                let (n_nodes, leaves) = (c[0] as usize, c[1] as usize);
                if n_nodes == 0 || n_nodes > cap || leaves > leaf_cap {
                    return Err(format!(
                        "tree {} came back with {n_nodes} nodes and {leaves} leaves",
                        first + b
                    ));
                }
                phase1_ms.push(f64::from(c[3]) * 1024.0 / clock_khz);
            }
            // Each tree's arrays copied out on every core.
            let tree = |b: usize| {
                let c = &counts[b * 4..b * 4 + 4];
                let (n_nodes, leaves) = (c[0] as usize, c[1] as usize);
                let field = |i: usize| {
                    let at = (i * count + b) * cap;
                    node_arrays[at..at + n_nodes].to_vec()
                };
                GrownTree {
                    feature: field(0),
                    bin: field(1),
                    left: field(2),
                    right: field(3),
                    values: values[b * leaf_cap * k..(b * leaf_cap + leaves) * k].to_vec(),
                    n_leaves: leaves as u32,
                    depth: c[2] as u32,
                    importance: importance[b * d..(b + 1) * d].to_vec(),
                }
            };
            let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
            let per = count.div_ceil(threads.clamp(1, count));
            let groups: Vec<Vec<GrownTree>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..count)
                    .step_by(per)
                    .map(|b0| scope.spawn(move || (b0..(b0 + per).min(count)).map(tree).collect()))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            grown.extend(groups.into_iter().flatten());
            if grown.len() != first + count {
                return Err("copying the trees out failed".into());
            }
            read_back += fetched.elapsed();
            if !observe(grown.len()) {
                return Ok(None);
            }
        }
        tracing::debug!(
            trees = n_trees,
            rows = n,
            features = d,
            batch,
            warps = kernel.warps,
            shared_bytes = kernel.shared,
            compile_ms = compiled.as_secs_f64() * 1e3,
            phase1_mean_ms = phase1_ms.iter().sum::<f64>() / phase1_ms.len().max(1) as f64,
            phase1_max_ms = phase1_ms.iter().copied().fold(0.0, f64::max),
            prepare_ms = prepare.as_secs_f64() * 1e3,
            kernel_ms = kernel_time.as_secs_f64() * 1e3,
            read_back_ms = read_back.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "CUDA trees grown"
        );
        Ok(Some(grown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data<'a>(bins: &'a [u8], y: &'a [f64], n_bins: &'a [usize]) -> BinnedRows<'a> {
        BinnedRows {
            bins,
            n: 4,
            d: 1,
            y,
            k: 1,
            n_bins,
        }
    }

    const LIMITS: GrowLimits = GrowLimits {
        max_depth: usize::MAX,
        min_samples_split: 2,
        min_samples_leaf: 1,
        max_features: 1,
    };

    #[test]
    fn refuses_other_devices_and_inconsistent_data_by_name() {
        let (bins, y, n_bins) = ([0u8, 1, 2, 3], [1.0, 2.0, 3.0, 4.0], [4usize]);
        let start = |_: usize| TreeStart {
            weight: vec![1.0; 4],
            rows: vec![0, 1, 2, 3],
            seed: 1,
        };
        let cpu = ComputeDevice::cpu("test cpu");
        let err = cuda_grow_trees(&cpu, &data(&bins, &y, &n_bins), &LIMITS, 2, &start, &|_| {
            true
        })
        .unwrap_err();
        assert!(err.to_string().contains("test cpu"), "{err}");
        let short = [1.0, 2.0];
        let err = cuda_grow_trees(
            &cpu,
            &data(&bins, &short, &n_bins),
            &LIMITS,
            2,
            &start,
            &|_| true,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("inconsistent forest data"),
            "{err}"
        );
    }
}
