//! One progress abstraction for every front end: the CLI draws bars, the app sends events.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use forexgpt_protocol::ProgressEvent;

/// Receives progress of long work. Implementations must be cheap: they are called from the
/// worker thread.
pub trait ProgressSink: Send + Sync {
    fn report(&self, event: ProgressEvent);
}

/// Ignores progress.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&self, _event: ProgressEvent) {}
}

/// Cooperative cancellation: the front end sets it, the job checks it between steps and stops
/// without leaving partial results behind.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        CancelToken::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
