//! Random-forest trees grown on an NVIDIA GPU: one thread block per tree runs the CPU grower's
//! algorithm (`kernels/grow_trees.cu`), many trees at once, compiled at run time with NVRTC and
//! launched through cudarc.
//!
//! The caller supplies each tree's bootstrap (weights, in-bag rows and the random stream's
//! state after drawing them), so the GPU draws features from the same stream in the same order
//! as the CPU, and on data whose sums are exact the trees are the CPU's trees. What comes back
//! is each tree's flat node arrays and its raw impurity decreases per feature.

use crate::backend::ComputeDevice;
use crate::manager::DeviceError;

/// The training data and the growth rules, as the CPU grower reads them.
#[derive(Debug, Clone, Copy)]
pub struct GrowData<'a> {
    /// Column-major bins: `bins[f·n + r]`.
    pub bins: &'a [u8],
    pub n: usize,
    pub d: usize,
    /// Row-major targets, `n × k`.
    pub y: &'a [f64],
    pub k: usize,
    /// Bins per feature (≤ 256).
    pub n_bins: &'a [usize],
    pub max_depth: usize,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub max_features: usize,
}

/// One tree's bootstrap.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeStart {
    /// Per row: how often the bootstrap drew it (0: out of bag).
    pub weight: Vec<f64>,
    /// The in-bag rows, ascending.
    pub rows: Vec<u32>,
    /// The SplitMix64 state after the bootstrap draws.
    pub rng: u64,
}

/// One grown tree: per node the split feature (−1 for a leaf), split bin, children (for a
/// leaf both are its leaf index), leaf values (`leaves × k`), and per feature the raw
/// impurity decrease weighted by node weight.
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
    data: &GrowData<'_>,
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
    imp::grow(device.label(), index, data, n_trees, start, observe)
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use super::*;
    use forexgpt_protocol::BackendKind;

    pub(super) fn grow(
        _: &str,
        _: usize,
        _: &GrowData<'_>,
        _: usize,
        _: &(dyn Fn(usize) -> TreeStart + Sync),
        _: &(dyn Fn(usize) -> bool + Sync),
    ) -> Result<Option<Vec<GrownTree>>, DeviceError> {
        Err(DeviceError::NotBuilt(BackendKind::Cuda))
    }
}

#[cfg(feature = "cuda")]
#[allow(unsafe_code)] // kernel launches; each unsafe block states its contract.
mod imp {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
    use cudarc::driver::{CudaFunction, CudaStream, LaunchConfig, PushKernelArg};

    use super::*;
    use crate::cuda_common::{guarded, new_stream};

    const SOURCE: &str = include_str!("kernels/grow_trees.cu");
    /// Device memory for one batch of trees' working arrays.
    const BATCH_BYTES: usize = 1 << 30;
    /// Shared memory the histograms of one block may take.
    const SHARED_BYTES: usize = 200 << 10;

    struct Session {
        index: usize,
        stream: Arc<CudaStream>,
        /// One compiled kernel per (outputs, features, warps).
        kernels: Vec<((usize, usize, usize), CudaFunction)>,
    }

    static SESSION: Mutex<Option<Session>> = Mutex::new(None);

    pub(super) fn grow(
        label: &str,
        index: usize,
        data: &GrowData<'_>,
        n_trees: usize,
        start: &(dyn Fn(usize) -> TreeStart + Sync),
        observe: &(dyn Fn(usize) -> bool + Sync),
    ) -> Result<Option<Vec<GrownTree>>, DeviceError> {
        if n_trees == 0 || data.n == 0 {
            return Ok(Some(Vec::new()));
        }
        guarded(&SESSION, label, "growing trees", |slot| {
            run(slot, index, data, n_trees, start, observe)
        })
    }

    /// Warps per block: one feature each (for nodes of more than 16 rows), as many as the
    /// histograms' shared memory allows, at most 16 (512 threads).
    fn warps(k: usize) -> usize {
        (SHARED_BYTES / (256 * (2 + k) * 8)).clamp(1, 16)
    }

    fn kernel(session: &mut Session, k: usize, d: usize) -> Result<CudaFunction, String> {
        let key = (k, d, warps(k));
        if let Some((_, f)) = session.kernels.iter().find(|(kk, _)| *kk == key) {
            return Ok(f.clone());
        }
        let ctx = session.stream.context();
        let cc = |a| {
            ctx.attribute(a)
                .map_err(|e| format!("compute capability: {e}"))
        };
        let major = cc(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = cc(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        if major < 6 {
            return Err(format!(
                "compute capability {major}.{minor}: the tree builder needs 6.0 or later"
            ));
        }
        let source = format!(
            "#define K {k}\n#define D {d}\n#define WARPS {}\n{SOURCE}",
            key.2
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
        let f = module
            .load_function("grow_trees")
            .map_err(|e| format!("loading the kernel: {e}"))?;
        let shared = (key.2 * 256 * (2 + k) * 8) as i32;
        f.set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            shared,
        )
        .map_err(|e| format!("shared memory of {shared} bytes: {e}"))?;
        session.kernels.push((key, f.clone()));
        Ok(f)
    }

    fn run(
        slot: &mut Option<Session>,
        index: usize,
        data: &GrowData<'_>,
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
            });
        }
        let session = slot.as_mut().ok_or("no CUDA session")?;
        let (n, d, k) = (data.n, data.d, data.k);
        let f = kernel(session, k, d)?;
        let stream = session.stream.clone();
        let compiled = started.elapsed();
        let up = |e| format!("upload: {e}");
        let bins = stream.clone_htod(data.bins).map_err(up)?;
        let y = stream.clone_htod(data.y).map_err(up)?;
        let n_bins: Vec<i32> = data.n_bins.iter().map(|&b| b as i32).collect();
        let n_bins = stream.clone_htod(&n_bins).map_err(up)?;
        // Per tree: weights, rows, tmp, stack, node arrays, values, scratch.
        let per_tree = n * (8 + 4 + 4 + 20 + 32 + 4 * k) + d * 20 + 16;
        let batch = (BATCH_BYTES / per_tree).clamp(1, n_trees);
        let warps = warps(k);
        let clamp = |v: usize| i32::try_from(v.min(i32::MAX as usize)).unwrap_or(i32::MAX);
        let rules = [
            clamp(data.max_depth),
            clamp(data.min_samples_split),
            clamp(data.min_samples_leaf),
            clamp(data.max_features),
        ];
        let n_i = n as i32;
        let mut grown = Vec::with_capacity(n_trees);
        let mut kernel_time = std::time::Duration::ZERO;
        for first in (0..n_trees).step_by(batch) {
            let count = batch.min(n_trees - first);
            let mut weights = vec![0.0f64; count * n];
            let mut rows = vec![0u32; count * n];
            let mut n_rows = vec![0i32; count];
            let mut rng = vec![0u64; count];
            for b in 0..count {
                let s = start(first + b);
                if s.weight.len() != n || s.rows.len() > n {
                    return Err("a tree's bootstrap does not match the data".into());
                }
                weights[b * n..(b + 1) * n].copy_from_slice(&s.weight);
                rows[b * n..b * n + s.rows.len()].copy_from_slice(&s.rows);
                n_rows[b] = s.rows.len() as i32;
                rng[b] = s.rng;
            }
            let alloc_i32 = |len: usize| {
                stream
                    .alloc_zeros::<i32>(len.max(1))
                    .map_err(|e| format!("device memory: {e}"))
            };
            let weights = stream.clone_htod(&weights).map_err(up)?;
            let mut rows = stream.clone_htod(&rows).map_err(up)?;
            let n_rows = stream.clone_htod(&n_rows).map_err(up)?;
            let rng = stream.clone_htod(&rng).map_err(up)?;
            let mut tmp = stream
                .alloc_zeros::<u32>(count * n)
                .map_err(|e| format!("device memory: {e}"))?;
            let mut stack = alloc_i32(count * (n + 1) * 5)?;
            let mut scratch = alloc_i32(count * 3 * d)?;
            let mut feature = alloc_i32(count * 2 * n)?;
            let mut bin = alloc_i32(count * 2 * n)?;
            let mut left = alloc_i32(count * 2 * n)?;
            let mut right = alloc_i32(count * 2 * n)?;
            let mut values = stream
                .alloc_zeros::<f32>(count * n * k)
                .map_err(|e| format!("device memory: {e}"))?;
            let mut importance = stream
                .alloc_zeros::<f64>(count * d.max(1))
                .map_err(|e| format!("device memory: {e}"))?;
            let mut counts = alloc_i32(count * 4)?;
            let launched = Instant::now();
            let mut launch = stream.launch_builder(&f);
            launch
                .arg(&bins)
                .arg(&n_i)
                .arg(&y)
                .arg(&n_bins)
                .arg(&weights)
                .arg(&mut rows)
                .arg(&mut tmp)
                .arg(&n_rows)
                .arg(&rng)
                .arg(&mut stack)
                .arg(&mut scratch)
                .arg(&mut feature)
                .arg(&mut bin)
                .arg(&mut left)
                .arg(&mut right)
                .arg(&mut values)
                .arg(&mut importance)
                .arg(&mut counts)
                .arg(&rules[0])
                .arg(&rules[1])
                .arg(&rules[2])
                .arg(&rules[3]);
            let cfg = LaunchConfig {
                grid_dim: (count as u32, 1, 1),
                block_dim: (warps as u32 * 32, 1, 1),
                shared_mem_bytes: (warps * 256 * (2 + k) * 8) as u32,
            };
            // SAFETY: the arguments match `grow_trees`' signature in order and type, and every
            // buffer has the per-tree size the kernel indexes (see its parameter comments):
            // weights/rows/tmp n, stack (n + 1)·5, scratch 3·D, nodes 2n, values n·K,
            // importance D, counts 4, for `count` trees.
            unsafe { launch.launch(cfg) }.map_err(|e| format!("launch: {e}"))?;
            let down = |e| format!("read-back: {e}");
            let counts = stream.clone_dtoh(&counts).map_err(down)?;
            kernel_time += launched.elapsed();
            let feature = stream.clone_dtoh(&feature).map_err(down)?;
            let bin = stream.clone_dtoh(&bin).map_err(down)?;
            let left = stream.clone_dtoh(&left).map_err(down)?;
            let right = stream.clone_dtoh(&right).map_err(down)?;
            let values = stream.clone_dtoh(&values).map_err(down)?;
            let importance = stream.clone_dtoh(&importance).map_err(down)?;
            for b in 0..count {
                let c = &counts[b * 4..b * 4 + 4];
                let (nodes, leaves) = (c[0] as usize, c[1] as usize);
                if nodes == 0 || nodes > 2 * n || leaves > n {
                    return Err(format!(
                        "tree {} came back with {nodes} nodes and {leaves} leaves",
                        first + b
                    ));
                }
                let node = |v: &[i32]| v[b * 2 * n..b * 2 * n + nodes].to_vec();
                grown.push(GrownTree {
                    feature: node(&feature),
                    bin: node(&bin),
                    left: node(&left),
                    right: node(&right),
                    values: values[b * n * k..(b * n + leaves) * k].to_vec(),
                    n_leaves: leaves as u32,
                    depth: c[2] as u32,
                    importance: importance[b * d..(b + 1) * d].to_vec(),
                });
            }
            if !observe(grown.len()) {
                return Ok(None);
            }
        }
        tracing::debug!(
            trees = n_trees,
            rows = n,
            features = d,
            batch,
            compile_ms = compiled.as_secs_f64() * 1e3,
            kernel_ms = kernel_time.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "CUDA trees grown"
        );
        Ok(Some(grown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data<'a>(bins: &'a [u8], y: &'a [f64], n_bins: &'a [usize]) -> GrowData<'a> {
        GrowData {
            bins,
            n: 4,
            d: 1,
            y,
            k: 1,
            n_bins,
            max_depth: usize::MAX,
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: 1,
        }
    }

    #[test]
    fn refuses_other_devices_and_inconsistent_data_by_name() {
        let (bins, y, n_bins) = ([0u8, 1, 2, 3], [1.0, 2.0, 3.0, 4.0], [4usize]);
        let start = |_: usize| TreeStart {
            weight: vec![1.0; 4],
            rows: vec![0, 1, 2, 3],
            rng: 1,
        };
        let cpu = ComputeDevice::cpu("test cpu");
        let err =
            cuda_grow_trees(&cpu, &data(&bins, &y, &n_bins), 2, &start, &|_| true).unwrap_err();
        assert!(err.to_string().contains("test cpu"), "{err}");
        let short = [1.0, 2.0];
        let err =
            cuda_grow_trees(&cpu, &data(&bins, &short, &n_bins), 2, &start, &|_| true).unwrap_err();
        assert!(
            err.to_string().contains("inconsistent forest data"),
            "{err}"
        );
    }
}
