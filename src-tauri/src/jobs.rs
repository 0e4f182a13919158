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
/// last events, so that a fast loop cannot flood the webview. An event held back is sent
/// before the next stage starts and when the job ends, so the UI always sees where each
/// stage got to.
pub struct ChannelProgress {
    channel: Channel<ProgressEvent>,
    state: Mutex<Throttle>,
}

#[derive(Default)]
struct Throttle {
    last: Option<(Stage, Instant)>,
    held: Option<ProgressEvent>,
}

const MIN_INTERVAL: Duration = Duration::from_millis(50);

impl ChannelProgress {
    pub fn new(channel: Channel<ProgressEvent>) -> Self {
        ChannelProgress {
            channel,
            state: Mutex::new(Throttle::default()),
        }
    }

    fn send(&self, event: ProgressEvent) {
        // A closed window drops the channel; the job still finishes or is cancelled.
        if let Err(e) = self.channel.send(event) {
            tracing::debug!("progress not delivered: {e}");
        }
    }
}

impl Throttle {
    /// The events to send now for `event`, oldest first.
    fn admit(&mut self, event: ProgressEvent, now: Instant) -> Vec<ProgressEvent> {
        // Epoch losses are points of a loss curve: a few hundred per network, none dropped.
        let finished = event.total.is_some_and(|t| event.done >= t) || event.epoch.is_some();
        let (new_stage, due) = match self.last {
            Some((stage, at)) => (stage != event.stage, now - at >= MIN_INTERVAL),
            None => (true, true),
        };
        let mut out = Vec::new();
        if new_stage && let Some(held) = self.held.take() {
            out.push(held);
        }
        if new_stage || due || finished {
            self.last = Some((event.stage, now));
            self.held = None;
            out.push(event);
        } else {
            self.held = Some(event);
        }
        out
    }
}

impl ProgressSink for ChannelProgress {
    fn report(&self, event: ProgressEvent) {
        let now = Instant::now();
        let ready = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(event, now);
        for event in ready {
            self.send(event);
        }
    }
}

impl Drop for ChannelProgress {
    fn drop(&mut self) {
        let held = self
            .state
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .held
            .take();
        if let Some(event) = held {
            self.send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stage: Stage, done: u64) -> ProgressEvent {
        ProgressEvent::new(stage, done, Some(10), None)
    }

    #[test]
    fn epoch_events_are_never_held_back() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        let epoch = |n: usize| ProgressEvent {
            epoch: Some(forexgpt_protocol::EpochProgress {
                epoch: n,
                epochs: 100,
                train_loss: 1.0,
                validation_loss: 1.0,
                samples_per_s: 1.0,
            }),
            ..ProgressEvent::new(Stage::Encoder, n as u64, Some(100), None)
        };
        let sent: usize = (1..=20)
            .map(|n| throttle.admit(epoch(n), start).len())
            .sum();
        assert_eq!(sent, 20);
    }

    #[test]
    fn fast_events_are_held_back_but_each_stage_ends_where_it_got_to() {
        let mut throttle = Throttle::default();
        let t0 = Instant::now();
        let sent =
            |out: Vec<ProgressEvent>| out.iter().map(|e| (e.stage, e.done)).collect::<Vec<_>>();
        assert_eq!(
            sent(throttle.admit(event(Stage::Train, 0), t0)),
            [(Stage::Train, 0)]
        );
        // Within 50 ms: held back.
        assert!(throttle.admit(event(Stage::Train, 1), t0).is_empty());
        assert!(throttle.admit(event(Stage::Train, 2), t0).is_empty());
        // After 50 ms: sent.
        let later = t0 + MIN_INTERVAL;
        assert_eq!(
            sent(throttle.admit(event(Stage::Train, 3), later)),
            [(Stage::Train, 3)]
        );
        assert!(throttle.admit(event(Stage::Train, 4), later).is_empty());
        // A new stage first sends what was held back; a finished stage is always sent.
        assert_eq!(
            sent(throttle.admit(event(Stage::Save, 0), later)),
            [(Stage::Train, 4), (Stage::Save, 0)]
        );
        assert_eq!(
            sent(throttle.admit(event(Stage::Save, 10), later)),
            [(Stage::Save, 10)]
        );
        assert!(throttle.held.is_none());
    }

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
