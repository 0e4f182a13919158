//! Progress bars (indicatif) for engine progress events, and Ctrl-C as cancellation.

use std::sync::Mutex;

use forexgpt_engine::{CancelToken, ProgressSink};
use forexgpt_protocol::{ProgressEvent, Stage};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws one bar per stage on stderr; hidden with `--json` or when stderr is not a terminal.
pub struct BarProgress {
    bar: ProgressBar,
    stage: Mutex<Option<Stage>>,
}

impl BarProgress {
    pub fn new(hidden: bool) -> Self {
        let bar = ProgressBar::with_draw_target(
            None,
            if hidden {
                ProgressDrawTarget::hidden()
            } else {
                ProgressDrawTarget::stderr()
            },
        );
        BarProgress {
            bar,
            stage: Mutex::new(None),
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl ProgressSink for BarProgress {
    fn report(&self, event: ProgressEvent) {
        let mut stage = self.stage.lock().unwrap_or_else(|e| e.into_inner());
        if *stage != Some(event.stage) {
            *stage = Some(event.stage);
            let template = match event.stage {
                Stage::ReadCsv | Stage::Download => {
                    "{msg:>18} [{bar:40}] {binary_bytes}/{binary_total_bytes} ({eta})"
                }
                Stage::Encoder => "{msg:>18} [{bar:30}] epoch {pos}/{len} {prefix} {elapsed}",
                _ => "{msg:>18} [{bar:40}] {pos}/{len} {elapsed}",
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                self.bar.set_style(style.progress_chars("=> "));
            }
            self.bar.set_message(event.stage.label());
            self.bar.reset();
        }
        if let Some(total) = event.total {
            self.bar.set_length(total);
        }
        self.bar.set_position(event.done);
        if let Some(message) = event.message {
            self.bar.set_message(message);
        }
        if let Some(epoch) = event.epoch {
            self.bar.set_prefix(format!(
                "loss {:.4} · validation {:.4} · {:.0} rows/s",
                epoch.train_loss, epoch.validation_loss, epoch.samples_per_s
            ));
        }
    }
}

/// A cancel token that Ctrl-C sets, so long work stops cleanly and stores nothing partial.
pub fn ctrl_c_token() -> CancelToken {
    let token = CancelToken::new();
    let handler_token = token.clone();
    if let Err(e) = ctrlc::set_handler(move || handler_token.cancel()) {
        tracing::warn!("Ctrl-C will not cancel cleanly: {e}");
    }
    token
}
