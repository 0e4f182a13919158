//! Small pieces every tab uses: error and notice boxes, the progress bar, the GPU checkbox and
//! the series picker.

use forexgpt_protocol::{
    AppError, BackendKind, DeviceInfo, EpochProgress, ProgressEvent, SeriesInfo, Timeframe,
};
use leptos::prelude::*;

/// Shows an error in red, with its kind for tests and styling; nothing when there is none.
#[component]
pub fn ErrorBox(
    #[prop(into)] error: Signal<Option<AppError>>,
    #[prop(optional)] test_id: Option<&'static str>,
) -> impl IntoView {
    move || {
        error.get().map(|e| {
            let kind = format!("{:?}", e.kind);
            view! {
                <div class="error" role="alert" data-kind=kind data-test=test_id.unwrap_or("error")>
                    {e.message}
                </div>
            }
        })
    }
}

/// A bar for `done / total` with the stage and message; indeterminate without a total.
#[component]
pub fn ProgressBar(#[prop(into)] progress: Signal<Option<ProgressEvent>>) -> impl IntoView {
    move || {
        progress.get().map(|p| {
            let share = p.total.filter(|&t| t > 0).map(|t| p.done as f64 / t as f64);
            let width = share.map_or("100%".to_string(), |s| format!("{:.1}%", s * 100.0));
            let counts = p
                .total
                .map_or(format!("{}", p.done), |t| format!("{} / {t}", p.done));
            let label = match &p.message {
                Some(m) => format!("{}: {counts} — {m}", p.stage.label()),
                None => format!("{}: {counts}", p.stage.label()),
            };
            view! {
                <div class="progress" class:indeterminate=share.is_none()>
                    <div class="progress-fill" style:width=width></div>
                    <span class="progress-label">{label}</span>
                </div>
            }
        })
    }
}

/// The progress of one job: the latest event for the bar, and one line per stage it went
/// through. A job that ends well leaves no progress text behind (its result says it is done);
/// one that fails or is cancelled keeps the stages, so the user sees where it stopped.
#[derive(Clone, Copy)]
pub struct JobProgress {
    current: RwSignal<Option<ProgressEvent>>,
    log: RwSignal<Vec<ProgressEvent>>,
    running: RwSignal<bool>,
    /// Set when the job ended without its result.
    stopped: RwSignal<bool>,
    /// Epoch losses of each network the job trained, by its label: the loss curves.
    pub epochs: RwSignal<Vec<(String, Vec<EpochProgress>)>>,
}

impl Default for JobProgress {
    fn default() -> Self {
        JobProgress::new()
    }
}

impl JobProgress {
    pub fn new() -> JobProgress {
        JobProgress {
            current: RwSignal::new(None),
            log: RwSignal::new(Vec::new()),
            running: RwSignal::new(false),
            stopped: RwSignal::new(false),
            epochs: RwSignal::new(Vec::new()),
        }
    }

    pub fn start(self) {
        self.current.set(None);
        self.log.set(Vec::new());
        self.epochs.set(Vec::new());
        self.stopped.set(false);
        self.running.set(true);
    }

    /// Events may arrive just after the job's reply: they still add to the loss curves, but
    /// no longer to the bar or the stages.
    pub fn report(self, event: ProgressEvent) {
        if let Some(point) = event.epoch {
            let label = event.message.clone().unwrap_or_default();
            self.epochs.update(
                |curves| match curves.iter_mut().find(|(l, _)| *l == label) {
                    Some((_, points)) => points.push(point),
                    None => curves.push((label, vec![point])),
                },
            );
        }
        if !self.running.get_untracked() {
            return;
        }
        self.current.set(Some(event.clone()));
        self.log.update(|log| match log.last_mut() {
            Some(last) if last.stage == event.stage => *last = event,
            _ => log.push(event),
        });
    }

    /// Ends the job: `completed` clears the stages, otherwise they stay as "stopped at …".
    pub fn finish(self, completed: bool) {
        self.running.set(false);
        self.current.set(None);
        self.stopped.set(!completed);
        if completed {
            self.log.set(Vec::new());
        }
    }
}

/// The bar while a job runs, and the stages it went through.
#[component]
pub fn JobProgressView(progress: JobProgress, test_id: &'static str) -> impl IntoView {
    let steps = move || {
        let stages = progress.log.with(|log| {
            log.iter()
                .map(|e| match e.total {
                    Some(t) => format!("{} {}/{t}", e.stage.label(), e.done),
                    None => e.stage.label().to_string(),
                })
                .collect::<Vec<_>>()
                .join(" → ")
        });
        if progress.stopped.get() && !stages.is_empty() {
            format!("stopped at: {stages}")
        } else {
            stages
        }
    };
    view! {
        <ProgressBar progress=progress.current />
        <p class="hint progress-log" data-test=test_id>{steps}</p>
    }
}

/// The one row of an empty table: what would be listed there and how to get it.
pub fn empty_row(columns: u32, test_id: &'static str, text: String) -> impl IntoView {
    view! {
        <tr class="empty"><td colspan=columns data-test=test_id>{text}</td></tr>
    }
}

/// Why no GPU can be used on this machine, or `None` when `auto` finds one.
pub fn gpu_unavailable(info: &DeviceInfo) -> Option<String> {
    if info.auto.backend != BackendKind::Cpu {
        return None;
    }
    let mut reasons = Vec::new();
    if let Some(r) = &info.cuda.reason {
        reasons.push(format!("CUDA: {r}"));
    }
    if let Some(r) = &info.wgpu.reason {
        reasons.push(format!("wgpu: {r}"));
    }
    if reasons.is_empty() {
        reasons.push(
            info.auto
                .notice
                .clone()
                .unwrap_or_else(|| "no usable GPU was found".into()),
        );
    }
    Some(reasons.join("; "))
}

/// "Use GPU (if available)": disabled, with the reason beside it, when no GPU can be used.
#[component]
pub fn GpuCheckbox(
    label: &'static str,
    checked: RwSignal<bool>,
    /// `None` while the devices are being probed.
    #[prop(into)]
    unavailable: Signal<Option<Option<String>>>,
    test_id: &'static str,
) -> impl IntoView {
    let disabled = move || !matches!(unavailable.get(), Some(None));
    // A checkbox that cannot be used is shown unticked, whatever was ticked before.
    Effect::new(move |_| {
        if disabled() {
            checked.set(false);
        }
    });
    view! {
        <div class="gpu-option">
            <label class="gpu-checkbox">
                <input
                    type="checkbox"
                    data-test=test_id
                    prop:checked=move || checked.get()
                    prop:disabled=disabled
                    on:change=move |ev| checked.set(event_target_checked(&ev))
                />
                {label}
            </label>
            {move || match unavailable.get() {
                None => Some(view! { <div class="hint">"probing devices…"</div> }.into_any()),
                Some(Some(reason)) => Some(
                    view! { <div class="hint gpu-reason" data-test=format!("{test_id}-reason")>"Unavailable: "{reason}</div> }
                        .into_any(),
                ),
                Some(None) => None,
            }}
        </div>
    }
}

/// `EURUSD 1h`, the key series pickers use.
pub fn series_key(symbol: &str, timeframe: Timeframe) -> String {
    format!("{symbol} {timeframe}")
}

pub fn parse_series_key(key: &str) -> Option<(String, Timeframe)> {
    let (symbol, tf) = key.split_once(' ')?;
    Some((symbol.to_string(), tf.parse().ok()?))
}

/// A select of the stored series; `selected` holds the chosen key (`EURUSD 1h`).
#[component]
pub fn SeriesSelect(
    #[prop(into)] series: Signal<Vec<SeriesInfo>>,
    selected: RwSignal<String>,
    test_id: &'static str,
) -> impl IntoView {
    // Pick the first series once the list arrives, or when the chosen one was deleted.
    Effect::new(move |_| {
        let list = series.get();
        let current = selected.get_untracked();
        if !list
            .iter()
            .any(|s| series_key(&s.symbol, s.timeframe) == current)
            && let Some(first) = list.first()
        {
            selected.set(series_key(&first.symbol, first.timeframe));
        }
    });
    view! {
        <select
            data-test=test_id
            prop:value=move || selected.get()
            on:change=move |ev| selected.set(event_target_value(&ev))
        >
            {move || {
                series
                    .get()
                    .into_iter()
                    .map(|s| {
                        let key = series_key(&s.symbol, s.timeframe);
                        let label = format!("{key} ({} bars)", s.bars);
                        view! { <option value=key.clone() selected=move || selected.get() == key>{label}</option> }
                    })
                    .collect_view()
            }}
        </select>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keys_round_trip() {
        let key = series_key("EURUSD", Timeframe::H4);
        assert_eq!(key, "EURUSD 4h");
        assert_eq!(
            parse_series_key(&key),
            Some(("EURUSD".to_string(), Timeframe::H4))
        );
        assert_eq!(parse_series_key("EURUSD"), None);
    }
}
