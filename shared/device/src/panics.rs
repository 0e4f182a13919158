//! What a panic inside a GPU library prints. cubecl and wgpu report some device failures (out
//! of memory, a lost device) by panicking, on the job's thread or on their own threads, and a
//! failing call can panic many times over. The jobs catch these panics and turn them into typed
//! errors ([`crate::DeviceError::BackendFailed`]), which the CLI and the app show; the panic
//! messages themselves are noise on top. The hook installed here logs at debug level a panic
//! of a caught job, and any panic while a device job runs (the library's own threads panic
//! when the job's device fails: measured on an H200 whose memory another program held, six
//! panics on cubecl's stream threads for one failed autoencoder); any other panic prints once
//! per distinct message and place.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

/// How many [`caught`] scopes are open in the process (device jobs running).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// How many [`caught`] scopes this thread is inside.
    static CAUGHT: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f`, whose panics the caller catches and reports as an error: the hook does not print
/// them, nor other threads' panics while it runs.
pub fn caught<T>(f: impl FnOnce() -> T) -> T {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            CAUGHT.with(|c| c.set(c.get().saturating_sub(1)));
            RUNNING.fetch_sub(1, Ordering::SeqCst);
        }
    }
    CAUGHT.with(|c| c.set(c.get() + 1));
    RUNNING.fetch_add(1, Ordering::SeqCst);
    let _leave = Leave;
    f()
}

/// Installs the hook (once per process; later calls do nothing).
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        let seen = Mutex::new(HashSet::new());
        std::panic::set_hook(Box::new(move |info| {
            let message = info.payload_as_str().unwrap_or("(no message)");
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            if CAUGHT.with(Cell::get) > 0 {
                tracing::debug!(message, at, "panic in a device job (reported as its error)");
                return;
            }
            if RUNNING.load(Ordering::SeqCst) > 0 {
                tracing::debug!(
                    message,
                    at,
                    "panic while a device job runs (its error says why)"
                );
                return;
            }
            let first = seen
                .lock()
                .map(|mut s| s.insert(format!("{message} at {at}")))
                .unwrap_or(true);
            if first {
                default(info);
            } else {
                tracing::debug!(message, at, "the same panic again (printed once)");
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_scopes_nest_and_unwind() {
        install_hook();
        let depth = || CAUGHT.with(Cell::get);
        assert_eq!(depth(), 0);
        let inner = caught(|| caught(depth));
        assert_eq!(inner, 2);
        let panicked = std::panic::catch_unwind(|| caught(|| panic!("inside")));
        assert!(panicked.is_err());
        assert_eq!(depth(), 0, "a panic leaves the scope too");
    }
}
