//! Running jobs: their cancel tokens by job id, and progress sent to the UI over a channel.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use forexgpt_engine::{CancelToken, ProgressSink};
use forexgpt_protocol::{JobId, ProgressEvent, Stage};
use tauri::ipc::Channel;

/// Cancel tokens of the jobs now running.
#[derive(Default)]
pub struct Jobs(Mutex<HashMap<JobId, CancelToken>>);

impl Jobs {
    /// Registers `id`; the returned guard removes it again when the job ends.
    pub fn start(&self, id: JobId) -> JobGuard<'_> {
        let token = CancelToken::new();
        self.lock().insert(id, token.clone());
        JobGuard {
            jobs: self,
            id,
            token,
        }
    }

    /// Asks job `id` to stop; false when no such job runs (it may have just finished).
    pub fn cancel(&self, id: JobId) -> bool {
        self.lock().get(&id).map(CancelToken::cancel).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, CancelToken>> {
        // A panic elsewhere cannot leave the map half-updated: every access is one call.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct JobGuard<'a> {
    jobs: &'a Jobs,
    id: JobId,
    pub token: CancelToken,
}

impl Drop for JobGuard<'_> {
    fn drop(&mut self) {
        self.jobs.lock().remove(&self.id);
    }
}

/// Sends progress to the UI, at most every 50 ms per stage except for a stage's first and
/// last events, so that a fast loop cannot flood the webview.
pub struct ChannelProgress {
    channel: Channel<ProgressEvent>,
    last: Mutex<Option<(Stage, Instant)>>,
}

const MIN_INTERVAL: Duration = Duration::from_millis(50);

impl ChannelProgress {
    pub fn new(channel: Channel<ProgressEvent>) -> Self {
        ChannelProgress {
            channel,
            last: Mutex::new(None),
        }
    }
}

impl ProgressSink for ChannelProgress {
    fn report(&self, event: ProgressEvent) {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let finished = event.total.is_some_and(|t| event.done >= t);
        let due = match *last {
            Some((stage, at)) => stage != event.stage || now - at >= MIN_INTERVAL,
            None => true,
        };
        if due || finished {
            *last = Some((event.stage, now));
            // A closed window drops the channel; the job still finishes or is cancelled.
            if let Err(e) = self.channel.send(event) {
                tracing::debug!("progress not delivered: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_job_can_no_longer_be_cancelled() {
        let jobs = Jobs::default();
        {
            let guard = jobs.start(7);
            assert!(jobs.cancel(7));
            assert!(guard.token.is_cancelled());
            assert!(!jobs.cancel(8));
        }
        assert!(!jobs.cancel(7));
    }
}
