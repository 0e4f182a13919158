//! What the cudarc-based CUDA paths (`cublas`, `cuda_walk`, `cuda_grow`) share: one stream per
//! device and module, kept in a process-wide slot, and a guard that turns cudarc's panics
//! (a library that cannot be loaded) and errors into [`DeviceError`]s naming the device.

use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaStream};

use forexgpt_device::DeviceError;
use forexgpt_device::probe::wgpu_adapters::panic_message;

/// A stream on CUDA device `index` (its primary context, which burn's backend shares).
pub(crate) fn new_stream(index: usize) -> Result<Arc<CudaStream>, String> {
    let ctx = CudaContext::new(index).map_err(|e| format!("CUDA context: {e}"))?;
    ctx.new_stream().map_err(|e| format!("CUDA stream: {e}"))
}

/// Runs `work` on the state kept in `slot`, one caller at a time. A failure (an error or a
/// panic) drops the state, since buffers may be left mid-use, and becomes
/// `BackendFailed { device: label, message: "{what}: …" }`.
pub(crate) fn guarded<S, T>(
    slot: &Mutex<Option<S>>,
    label: &str,
    what: &str,
    work: impl FnOnce(&mut Option<S>) -> Result<T, String>,
) -> Result<T, DeviceError> {
    let mut guard = slot.lock().unwrap_or_else(|poisoned| {
        let mut state = poisoned.into_inner();
        *state = None;
        state
    });
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        forexgpt_device::panics::caught(|| work(&mut guard))
    }));
    let message = match outcome {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(message)) => message,
        Err(panic) => panic_message(&panic),
    };
    *guard = None;
    Err(DeviceError::BackendFailed {
        device: label.to_string(),
        message: format!("{what}: {message}"),
    })
}
