//! Float64 cross products `XᵀX` and `XᵀY` on an NVIDIA GPU through cuBLAS, with the rows
//! streamed from the host in chunks through pinned memory.
//!
//! Why not burn for this one job (docs/design.md, "Linear products on CUDA"): cubecl 0.10
//! uploads every tensor through two host copies and a pageable transfer (~0.5 GB/s measured on
//! an H100, so 1 s for 1M × 128 float32), and its float32 matmul runs on TF32 tensor cores
//! (1.6e-4 off float64 even with a hi/lo split). Here the caller writes each chunk straight
//! into pinned memory while the previous chunk crosses the bus, and cuBLAS sums the products in
//! float64, so the GPU result matches the CPU's float64 path to rounding and no kernel has to
//! be compiled on first use.
//!
//! cuBLAS is loaded at run time; a machine without it gets an error naming the library, and
//! the caller falls back to the CPU (`DeviceManager::place`).

use std::ops::Range;

use forexgpt_device::ComputeDevice;
use forexgpt_device::DeviceError;

/// Writes rows `rows` of the operands, row-major, into `x` (`rows.len() × dx`) and `y`
/// (`rows.len() × t`). Called once per chunk, in order, on the calling thread; it may use rayon.
pub type FillRows<'a> = dyn Fn(Range<usize>, &mut [f64], &mut [f64]) + Sync + 'a;

/// `XᵀX` (`dx × dx`) and `XᵀY` (`dx × t`), row-major, float64.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossProducts {
    pub xtx: Vec<f64>,
    pub xty: Vec<f64>,
}

/// Bytes of host rows per chunk (per pinned buffer; two of them alternate).
const CHUNK_BYTES: usize = 32 << 20;

/// Rows per chunk for operands of `dx + t` float64 columns.
pub fn chunk_rows(rows: usize, dx: usize, t: usize) -> usize {
    (CHUNK_BYTES / (8 * (dx + t).max(1)))
        .clamp(1024, 1 << 20)
        .min(rows.max(1))
}

/// `XᵀX` and `XᵀY` of `rows` rows on `device`, which must be a CUDA device, in float64 through
/// cuBLAS. `fill` supplies the rows chunk by chunk ([`FillRows`]).
pub fn cuda_cross_products(
    device: &ComputeDevice,
    rows: usize,
    dx: usize,
    t: usize,
    fill: &FillRows<'_>,
) -> Result<CrossProducts, DeviceError> {
    cuda_cross_products_in_chunks(device, rows, dx, t, chunk_rows(rows, dx, t), fill)
}

/// [`cuda_cross_products`] with a given number of rows per chunk (tests use small chunks to
/// cross many chunk boundaries).
pub fn cuda_cross_products_in_chunks(
    device: &ComputeDevice,
    rows: usize,
    dx: usize,
    t: usize,
    chunk: usize,
    fill: &FillRows<'_>,
) -> Result<CrossProducts, DeviceError> {
    let Some(index) = device.cuda_index() else {
        return Err(DeviceError::BackendFailed {
            device: device.label().to_string(),
            message: "cuBLAS products need a CUDA device".into(),
        });
    };
    if rows == 0 || dx == 0 {
        return Ok(CrossProducts {
            xtx: vec![0.0; dx * dx],
            xty: vec![0.0; dx * t],
        });
    }
    // cudarc panics when a library cannot be loaded; `guarded` makes that an error.
    #[cfg(feature = "cuda")]
    {
        crate::cuda_common::guarded(&imp::SESSION, device.label(), "cuBLAS products", |slot| {
            imp::run(slot, index, rows, dx, t, chunk.max(1), fill)
        })
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (index, rows, dx, t, chunk, fill);
        Err(crate::NOT_BUILT)
    }
}

#[cfg(feature = "cuda")]
#[allow(unsafe_code)] // cuBLAS calls and pinned allocations; each unsafe block states its contract.
mod imp {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use cudarc::cublas::sys::cublasOperation_t;
    use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
    use cudarc::driver::{CudaEvent, CudaSlice, CudaStream, DevicePtrMut, PinnedHostSlice, result};

    use super::*;
    use crate::cuda_common::new_stream;

    /// One device's stream, cuBLAS handle and buffers, kept between calls: pinned allocations
    /// cost milliseconds each, and fits on one dataset come in series (grids, repeats).
    pub(super) struct Session {
        index: usize,
        stream: Arc<CudaStream>,
        blas: CudaBlas,
        buffers: Option<Buffers>,
    }

    /// Two slots, each a pinned host buffer and its device twin per operand, plus the event
    /// that says the slot's last upload has finished (so the host may overwrite it).
    struct Buffers {
        x_len: usize,
        y_len: usize,
        host_x: [PinnedHostSlice<f64>; 2],
        host_y: [PinnedHostSlice<f64>; 2],
        dev_x: [CudaSlice<f64>; 2],
        dev_y: [CudaSlice<f64>; 2],
        uploaded: [Option<CudaEvent>; 2],
    }

    pub(super) static SESSION: Mutex<Option<Session>> = Mutex::new(None);

    fn session(slot: &mut Option<Session>, index: usize) -> Result<&mut Session, String> {
        if slot.as_ref().is_none_or(|s| s.index != index) {
            *slot = None;
            let stream = new_stream(index)?;
            let blas = CudaBlas::new(stream.clone()).map_err(|e| format!("cuBLAS: {e}"))?;
            *slot = Some(Session {
                index,
                stream,
                blas,
                buffers: None,
            });
        }
        slot.as_mut().ok_or_else(|| "no CUDA session".to_string())
    }

    fn buffers<'a>(
        slot: &'a mut Option<Buffers>,
        stream: &Arc<CudaStream>,
        x_len: usize,
        y_len: usize,
    ) -> Result<&'a mut Buffers, String> {
        let fits = |b: &Buffers| b.x_len >= x_len && b.y_len >= y_len;
        if !slot.as_ref().is_some_and(fits) {
            *slot = None; // free the old pair before allocating a larger one
            let ctx = stream.context();
            let pinned = |len: usize| {
                // SAFETY: the memory is uninitialised; every element the device reads is
                // written by `fill` first (rows beyond a chunk's count are never copied).
                unsafe { ctx.alloc_pinned::<f64>(len.max(1)) }
                    .map_err(|e| format!("pinned host memory ({len} values): {e}"))
            };
            let device = |len: usize| {
                stream
                    .alloc_zeros::<f64>(len.max(1))
                    .map_err(|e| format!("device memory ({len} values): {e}"))
            };
            *slot = Some(Buffers {
                x_len,
                y_len,
                host_x: [pinned(x_len)?, pinned(x_len)?],
                host_y: [pinned(y_len)?, pinned(y_len)?],
                dev_x: [device(x_len)?, device(x_len)?],
                dev_y: [device(y_len)?, device(y_len)?],
                uploaded: [None, None],
            });
        }
        slot.as_mut().ok_or_else(|| "no buffers".to_string())
    }

    /// `C += A·Bᵀ` for column-major `A` (`m × k`), `B` (`n × k`) and `C` (`m × n`), each
    /// packed (leading dimension = rows).
    fn accumulate_a_bt(m: i32, n: i32, k: i32) -> GemmConfig<f64> {
        GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_N,
            transb: cublasOperation_t::CUBLAS_OP_T,
            m,
            n,
            k,
            alpha: 1.0,
            lda: m,
            ldb: n,
            beta: 1.0,
            ldc: m,
        }
    }

    pub(super) fn run(
        slot: &mut Option<Session>,
        index: usize,
        rows: usize,
        dx: usize,
        t: usize,
        chunk: usize,
        fill: &FillRows<'_>,
    ) -> Result<CrossProducts, String> {
        let started = Instant::now();
        let Session {
            stream,
            blas,
            buffers: kept,
            ..
        } = session(slot, index)?;
        let stream = stream.clone();
        let mut xtx_dev = stream
            .alloc_zeros::<f64>(dx * dx)
            .map_err(|e| format!("device memory: {e}"))?;
        let mut xty_dev = stream
            .alloc_zeros::<f64>((dx * t).max(1))
            .map_err(|e| format!("device memory: {e}"))?;
        let blas: &CudaBlas = blas;
        let buffers = buffers(kept, &stream, chunk * dx, chunk * t)?;
        let setup = started.elapsed();
        let mut fill_time = std::time::Duration::ZERO;
        for (i, start) in (0..rows).step_by(chunk).enumerate() {
            let end = (start + chunk).min(rows);
            let k = end - start;
            let s = i % 2;
            // The slot's previous upload must have finished before its pinned memory is
            // rewritten; meanwhile the other slot's upload and product run.
            if let Some(event) = buffers.uploaded[s].take() {
                event
                    .synchronize()
                    .map_err(|e| format!("CUDA event: {e}"))?;
            }
            let filled = Instant::now();
            let host_x = &mut buffers.host_x[s]
                .as_mut_slice()
                .map_err(|e| format!("pinned memory: {e}"))?[..k * dx];
            let host_y = &mut buffers.host_y[s]
                .as_mut_slice()
                .map_err(|e| format!("pinned memory: {e}"))?[..k * t];
            fill(start..end, host_x, host_y);
            fill_time += filled.elapsed();
            {
                let (dst, _record) = buffers.dev_x[s].device_ptr_mut(&stream);
                // SAFETY: `dst` holds at least `chunk * dx ≥ k * dx` values; the pinned source
                // stays alive and untouched until `uploaded[s]` has completed.
                unsafe { result::memcpy_htod_async(dst, host_x, stream.cu_stream()) }
                    .map_err(|e| format!("upload: {e}"))?;
            }
            if t > 0 {
                let (dst, _record) = buffers.dev_y[s].device_ptr_mut(&stream);
                // SAFETY: as above, with `chunk * t ≥ k * t` values.
                unsafe { result::memcpy_htod_async(dst, host_y, stream.cu_stream()) }
                    .map_err(|e| format!("upload: {e}"))?;
            }
            buffers.uploaded[s] = Some(
                stream
                    .record_event(None)
                    .map_err(|e| format!("CUDA event: {e}"))?,
            );
            let k = i32::try_from(k).map_err(|_| "chunk too large".to_string())?;
            let (dxi, ti) = (dx as i32, t as i32);
            // Row-major `k × dx` is column-major `dx × k` (ld = dx): XᵀX = A·Aᵀ.
            let gram = accumulate_a_bt(dxi, dxi, k);
            // SAFETY: A and B are the `dx × k` chunk (≥ k·dx values), C is `dx × dx`.
            unsafe { blas.gemm(gram, &buffers.dev_x[s], &buffers.dev_x[s], &mut xtx_dev) }
                .map_err(|e| format!("cuBLAS dgemm: {e}"))?;
            if t > 0 {
                // Column-major `t × dx` (ld = t) is row-major `dx × t`: (XᵀY)ᵀ = Yc·Xcᵀ with
                // Yc the column-major `t × k` view of Y.
                let cross = accumulate_a_bt(ti, dxi, k);
                // SAFETY: A is `t × k` (≥ k·t values), B is `dx × k`, C is `t × dx`.
                unsafe { blas.gemm(cross, &buffers.dev_y[s], &buffers.dev_x[s], &mut xty_dev) }
                    .map_err(|e| format!("cuBLAS dgemm: {e}"))?;
            }
        }
        let xtx = stream
            .clone_dtoh(&xtx_dev)
            .map_err(|e| format!("read-back: {e}"))?;
        let mut xty = stream
            .clone_dtoh(&xty_dev)
            .map_err(|e| format!("read-back: {e}"))?;
        xty.truncate(dx * t);
        stream
            .synchronize()
            .map_err(|e| format!("CUDA stream: {e}"))?;
        tracing::debug!(
            rows,
            dx,
            t,
            chunk,
            setup_ms = setup.as_secs_f64() * 1e3,
            fill_ms = fill_time.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "cuBLAS cross products"
        );
        Ok(CrossProducts { xtx, xty })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forexgpt_device::testing::for_each_device;

    fn value(r: usize, c: usize) -> f64 {
        ((r * 31 + c * 17) % 23) as f64 * 0.25 - 2.0 + (r as f64 * 1e-3)
    }

    fn fill(dx: usize, t: usize) -> impl Fn(Range<usize>, &mut [f64], &mut [f64]) + Sync {
        move |rows: Range<usize>, x: &mut [f64], y: &mut [f64]| {
            for (i, r) in rows.enumerate() {
                (0..dx).for_each(|c| x[i * dx + c] = value(r, c));
                (0..t).for_each(|c| y[i * t + c] = value(r, dx + c));
            }
        }
    }

    #[test]
    fn chunks_stay_within_the_pinned_budget() {
        assert_eq!(chunk_rows(10, 128, 8), 10);
        let rows = chunk_rows(1_000_000, 129, 8);
        assert!(rows * 137 * 8 <= CHUNK_BYTES && rows >= 1024, "{rows}");
        assert_eq!(chunk_rows(0, 4, 0), 1);
    }

    #[test]
    fn a_non_cuda_device_is_refused_by_name() {
        let cpu = ComputeDevice::cpu("test cpu");
        let err = cuda_cross_products(&cpu, 4, 2, 1, &fill(2, 1)).unwrap_err();
        assert!(err.to_string().contains("test cpu"), "{err}");
    }

    #[test]
    fn cuda_products_match_float64_host_products() {
        let (rows, dx, t) = (5_000, 7, 3);
        let mut want_xtx = vec![0.0; dx * dx];
        let mut want_xty = vec![0.0; dx * t];
        for r in 0..rows {
            for i in 0..dx {
                for j in 0..dx {
                    want_xtx[i * dx + j] += value(r, i) * value(r, j);
                }
                for k in 0..t {
                    want_xty[i * t + k] += value(r, i) * value(r, dx + k);
                }
            }
        }
        for_each_device(|device| {
            if device.cuda_index().is_none() {
                return;
            }
            // 1,024-row chunks: five chunks, the last one short, both slots reused.
            for (chunk, t) in [(1024, t), (rows, t), (999, 0)] {
                let got = cuda_cross_products_in_chunks(device, rows, dx, t, chunk, &fill(dx, t))
                    .unwrap();
                let close = |a: &[f64], b: &[f64]| {
                    a.len() == b.len()
                        && a.iter()
                            .zip(b)
                            .all(|(p, q)| (p - q).abs() <= 1e-12 * q.abs().max(1.0))
                };
                assert!(close(&got.xtx, &want_xtx), "XᵀX, chunk {chunk}");
                let want_y: Vec<f64> = if t == 0 { Vec::new() } else { want_xty.clone() };
                assert!(close(&got.xty, &want_y), "XᵀY, chunk {chunk}, t {t}");
            }
        });
    }
}
