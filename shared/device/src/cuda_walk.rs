//! A batched walk of flat binary trees (a random forest's prediction) on an NVIDIA GPU: one
//! CUDA thread per row walks every tree and averages the leaves, in one kernel compiled at run
//! time with NVRTC. The rows arrive already binned (one byte per feature), written by the
//! caller straight into pinned memory; the trees stay on the device between calls, keyed by
//! the caller's fingerprint of their contents.
//!
//! Why a kernel of its own (docs/design.md, "Forest prediction on CUDA"): through burn the walk
//! is ten gathers per tree level over (tree, row) pairs, and cubecl's upload path moves the
//! rows at ~0.5 GB/s; on an H100 that took 54 ms for 100 trees × 100K rows against an issue
//! goal of 10 ms.

use crate::backend::ComputeDevice;
use crate::manager::DeviceError;

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

/// Writes the bins of rows `range` (row-major, one byte per feature) into the slice.
pub type FillBins<'a> = dyn Fn(std::ops::Range<usize>, &mut [u8]) + Sync + 'a;

/// `rows × outputs` means over the trees, row-major, for `rows` rows of `d` binned features.
pub fn cuda_tree_walk(
    device: &ComputeDevice,
    trees: &WalkTrees<'_>,
    rows: usize,
    d: usize,
    fill: &FillBins<'_>,
) -> Result<Vec<f32>, DeviceError> {
    let Some(index) = device.cuda_index() else {
        return Err(DeviceError::BackendFailed {
            device: device.label().to_string(),
            message: "the CUDA tree walk needs a CUDA device".into(),
        });
    };
    if trees.outputs == 0 || d > 1 << 23 {
        return Err(DeviceError::BackendFailed {
            device: device.label().to_string(),
            message: format!("cannot walk {} outputs over {d} features", trees.outputs),
        });
    }
    imp::walk(device.label(), index, trees, rows, d, fill)
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use super::*;
    use forexgpt_protocol::BackendKind;

    pub(super) fn walk(
        _: &str,
        _: usize,
        _: &WalkTrees<'_>,
        _: usize,
        _: usize,
        _: &FillBins<'_>,
    ) -> Result<Vec<f32>, DeviceError> {
        Err(DeviceError::NotBuilt(BackendKind::Cuda))
    }
}

#[cfg(feature = "cuda")]
#[allow(unsafe_code)] // kernel launches and pinned allocations; each unsafe block states its contract.
mod imp {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use cudarc::driver::{
        CudaFunction, CudaSlice, CudaStream, DevicePtrMut, LaunchConfig, PinnedHostSlice,
        PushKernelArg, result,
    };

    use super::*;
    use crate::cuda_common::{guarded, new_stream};

    /// The kernel; `K` (outputs per leaf) is defined in front of it, so the sums stay in
    /// registers.
    const SOURCE: &str = r#"
extern "C" __global__ void forest_walk(
    const unsigned char* __restrict__ bins, int rows, int d,
    const int4* __restrict__ nodes, const int* __restrict__ roots, int n_trees,
    const float* __restrict__ values, float* __restrict__ out)
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
    for (int j = 0; j < K; ++j) out[(size_t)r * K + j] = acc[j] / (float)n_trees;
}
"#;

    /// Rows per launch: 64 MB of bins at most.
    const CHUNK_BYTES: usize = 64 << 20;
    /// Forests kept on the device (a 100-tree, fully grown forest is ~20 MB).
    const RESIDENT: usize = 4;

    struct DeviceTrees {
        key: u64,
        nodes: CudaSlice<i32>,
        roots: CudaSlice<i32>,
        values: CudaSlice<f32>,
        n_trees: i32,
    }

    struct Session {
        index: usize,
        stream: Arc<CudaStream>,
        /// One compiled kernel per number of outputs.
        kernels: Vec<(usize, CudaFunction)>,
        forests: Vec<DeviceTrees>,
        pinned: Option<PinnedHostSlice<u8>>,
    }

    static SESSION: Mutex<Option<Session>> = Mutex::new(None);

    pub(super) fn walk(
        label: &str,
        index: usize,
        trees: &WalkTrees<'_>,
        rows: usize,
        d: usize,
        fill: &FillBins<'_>,
    ) -> Result<Vec<f32>, DeviceError> {
        if rows == 0 {
            return Ok(Vec::new());
        }
        guarded(&SESSION, label, "forest walk", |slot| {
            run(slot, index, trees, rows, d, fill)
        })
    }

    fn session(slot: &mut Option<Session>, index: usize) -> Result<&mut Session, String> {
        if slot.as_ref().is_none_or(|s| s.index != index) {
            *slot = None;
            *slot = Some(Session {
                index,
                stream: new_stream(index)?,
                kernels: Vec::new(),
                forests: Vec::new(),
                pinned: None,
            });
        }
        slot.as_mut().ok_or_else(|| "no CUDA session".to_string())
    }

    fn kernel(session: &mut Session, outputs: usize) -> Result<CudaFunction, String> {
        if let Some((_, f)) = session.kernels.iter().find(|(k, _)| *k == outputs) {
            return Ok(f.clone());
        }
        let source = format!("#define K {outputs}\n{SOURCE}");
        let ptx = cudarc::nvrtc::compile_ptx(source).map_err(|e| format!("NVRTC: {e}"))?;
        let module = session
            .stream
            .context()
            .load_module(ptx)
            .map_err(|e| format!("loading the kernel: {e}"))?;
        let f = module
            .load_function("forest_walk")
            .map_err(|e| format!("loading the kernel: {e}"))?;
        session.kernels.push((outputs, f.clone()));
        Ok(f)
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

    fn run(
        slot: &mut Option<Session>,
        index: usize,
        trees: &WalkTrees<'_>,
        rows: usize,
        d: usize,
        fill: &FillBins<'_>,
    ) -> Result<Vec<f32>, String> {
        let started = Instant::now();
        let k = trees.outputs;
        let session = session(slot, index)?;
        let f = kernel(session, k)?;
        let Session {
            stream,
            forests,
            pinned,
            ..
        } = session;
        let stream = stream.clone();
        let forest = resident(forests, &stream, trees)?;
        let chunk = (CHUNK_BYTES / d.max(1)).clamp(1, rows);
        if pinned.as_ref().is_none_or(|p| p.len() < chunk * d.max(1)) {
            *pinned = None;
            // SAFETY: uninitialised; `fill` writes every byte that is copied.
            let fresh = unsafe { stream.context().alloc_pinned::<u8>(chunk * d.max(1)) }
                .map_err(|e| format!("pinned host memory: {e}"))?;
            *pinned = Some(fresh);
        }
        let host = pinned.as_mut().ok_or("no pinned memory")?;
        let mut bins = stream
            .alloc_zeros::<u8>(chunk * d.max(1))
            .map_err(|e| format!("device memory: {e}"))?;
        let mut out_dev = stream
            .alloc_zeros::<f32>(chunk * k)
            .map_err(|e| format!("device memory: {e}"))?;
        let prepared = started.elapsed();
        let mut out = Vec::with_capacity(rows * k);
        let mut binning = std::time::Duration::ZERO;
        for start in (0..rows).step_by(chunk) {
            let n = chunk.min(rows - start);
            let filled = Instant::now();
            let host_bins = &mut host
                .as_mut_slice()
                .map_err(|e| format!("pinned memory: {e}"))?[..n * d];
            fill(start..start + n, host_bins);
            binning += filled.elapsed();
            {
                let (dst, _record) = bins.device_ptr_mut(&stream);
                // SAFETY: `bins` holds `chunk · d ≥ n · d` bytes; the pinned source is not
                // touched again before the read-back below synchronises the stream.
                unsafe { result::memcpy_htod_async(dst, host_bins, stream.cu_stream()) }
                    .map_err(|e| format!("upload: {e}"))?;
            }
            let (rows_i, d_i) = (n as i32, d as i32);
            let mut launch = stream.launch_builder(&f);
            launch
                .arg(&bins)
                .arg(&rows_i)
                .arg(&d_i)
                .arg(&forest.nodes)
                .arg(&forest.roots)
                .arg(&forest.n_trees)
                .arg(&forest.values)
                .arg(&mut out_dev);
            let cfg = LaunchConfig {
                grid_dim: ((n as u32).div_ceil(128), 1, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: the arguments match the kernel's signature in order and type; every
            // index the kernel reads was checked on the host (`Trees::check`) before upload,
            // and `out_dev` holds `chunk · K ≥ n · K` floats.
            unsafe { launch.launch(cfg) }.map_err(|e| format!("launch: {e}"))?;
            let got = stream
                .clone_dtoh(&out_dev)
                .map_err(|e| format!("read-back: {e}"))?;
            out.extend_from_slice(&got[..n * k]);
        }
        tracing::debug!(
            rows,
            trees = forest.n_trees,
            prepare_ms = prepared.as_secs_f64() * 1e3,
            binning_ms = binning.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "CUDA forest walk"
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::for_each_device;

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

    #[test]
    fn a_non_cuda_device_is_refused_by_name() {
        let cpu = ComputeDevice::cpu("test cpu");
        let arrays = forest;
        let trees = WalkTrees {
            key: 1,
            outputs: 2,
            arrays: &arrays,
        };
        let err = cuda_tree_walk(&cpu, &trees, 1, 2, &|_, _| {}).unwrap_err();
        assert!(err.to_string().contains("test cpu"), "{err}");
    }

    #[test]
    fn the_cuda_walk_matches_the_host_walk() {
        let rows = 3_000;
        let bins: Vec<u8> = (0..rows * 2).map(|i| ((i * 7) % 9) as u8).collect();
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
            let fill = |r: std::ops::Range<usize>, out: &mut [u8]| {
                out.copy_from_slice(&bins[r.start * 2..r.end * 2]);
            };
            // Twice: the second call finds the trees already on the device.
            for _ in 0..2 {
                let got = cuda_tree_walk(device, &trees, rows, 2, &fill).unwrap();
                assert_eq!(got, want);
            }
        });
    }
}
