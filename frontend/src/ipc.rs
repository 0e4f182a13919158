//! Calls into the shell: `invoke` with typed requests and replies from `protocol`, and progress
//! channels. Every failure comes back as an `AppError` the UI can show.

use std::sync::atomic::{AtomicU64, Ordering};

use forexgpt_protocol::{AppError, AppErrorKind, JobId, ProgressEvent};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::prelude::*;

use crate::widgets::JobProgress;

#[wasm_bindgen]
extern "C" {
    /// `window.__TAURI__.core.invoke` (the shell sets `withGlobalTauri`).
    #[wasm_bindgen(js_namespace = ["__TAURI__", "core"], js_name = invoke, catch)]
    async fn tauri_invoke(cmd: &str, args: JsValue) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(js_namespace = ["__TAURI__", "core"], js_name = Channel)]
    type TauriChannel;

    #[wasm_bindgen(constructor, js_namespace = ["__TAURI__", "core"], js_class = "Channel")]
    fn new() -> TauriChannel;

    #[wasm_bindgen(method, setter, js_name = onmessage)]
    fn set_onmessage(this: &TauriChannel, handler: &js_sys::Function);
}

/// The named arguments of a command.
pub struct Args(js_sys::Object);

impl Default for Args {
    fn default() -> Self {
        Args(js_sys::Object::new())
    }
}

impl Args {
    pub fn new() -> Args {
        Args::default()
    }

    pub fn with(self, name: &str, value: &impl Serialize) -> Args {
        let serializer = serde_wasm_bindgen::Serializer::json_compatible();
        // Request types are plain data; serializing them cannot fail.
        let value = value.serialize(&serializer).unwrap_or(JsValue::NULL);
        let _ = js_sys::Reflect::set(&self.0, &JsValue::from_str(name), &value);
        self
    }

    /// Passes a progress channel as `on_progress` and the job id as `job`.
    pub fn job(self, job: &Job) -> Args {
        let _ = js_sys::Reflect::set(&self.0, &JsValue::from_str("on_progress"), &job.channel);
        self.with("job", &job.id)
    }
}

fn internal(message: String) -> AppError {
    AppError {
        kind: AppErrorKind::Internal,
        message,
    }
}

/// Runs command `cmd`; the shell's `AppError` (or the webview's own error) on failure.
pub async fn call<R: DeserializeOwned>(cmd: &str, args: Args) -> Result<R, AppError> {
    match tauri_invoke(cmd, args.0.into()).await {
        Ok(reply) => serde_wasm_bindgen::from_value(reply)
            .map_err(|e| internal(format!("unexpected reply to {cmd}: {e}"))),
        Err(error) => Err(serde_wasm_bindgen::from_value::<AppError>(error.clone())
            .unwrap_or_else(|_| {
                internal(
                    error
                        .as_string()
                        .unwrap_or_else(|| format!("{cmd} failed: {error:?}")),
                )
            })),
    }
}

static NEXT_JOB: AtomicU64 = AtomicU64::new(1);

/// A long-running command: its id (for `cancel_job`) and the channel its progress arrives on.
/// Keep it alive until the command returns.
pub struct Job {
    pub id: JobId,
    channel: TauriChannel,
    _handler: Closure<dyn FnMut(JsValue)>,
}

impl Job {
    pub fn new(on_progress: impl Fn(ProgressEvent) + 'static) -> Job {
        let channel = TauriChannel::new();
        let handler = Closure::<dyn FnMut(JsValue)>::new(move |message: JsValue| {
            if let Ok(event) = serde_wasm_bindgen::from_value::<ProgressEvent>(message) {
                on_progress(event);
            }
        });
        channel.set_onmessage(handler.as_ref().unchecked_ref());
        Job {
            id: NEXT_JOB.fetch_add(1, Ordering::Relaxed),
            channel,
            _handler: handler,
        }
    }
}

/// Asks the shell to stop job `id`.
pub async fn cancel(id: JobId) {
    let _ = call::<bool>("cancel_job", Args::new().with("job", &id)).await;
}

/// A long command a tab runs: its progress, the running job (for Cancel) and its error.
#[derive(Clone, Copy)]
pub struct JobControl {
    pub progress: JobProgress,
    pub running: RwSignal<Option<JobId>>,
    pub error: RwSignal<Option<AppError>>,
}

impl JobControl {
    pub fn new() -> JobControl {
        JobControl {
            progress: JobProgress::new(),
            running: RwSignal::new(None),
            error: RwSignal::new(None),
        }
    }

    /// Whether a job runs now (tracked, for disabling buttons).
    pub fn is_running(self) -> bool {
        self.running.with(Option::is_some)
    }

    /// Runs `cmd` with `request` and a progress channel; `done` gets the reply, the error box
    /// gets a failure.
    pub fn run<Req, Reply>(
        self,
        cmd: &'static str,
        request: Req,
        done: impl FnOnce(Reply) + 'static,
    ) where
        Req: Serialize + 'static,
        Reply: DeserializeOwned + 'static,
    {
        self.error.set(None);
        self.progress.start();
        let job = Job::new(move |event| self.progress.report(event));
        self.running.set(Some(job.id));
        spawn_local(async move {
            let result = call::<Reply>(cmd, Args::new().with("request", &request).job(&job)).await;
            drop(job);
            self.running.set(None);
            self.progress.finish(result.is_ok());
            match result {
                Ok(reply) => done(reply),
                Err(e) => self.error.set(Some(e)),
            }
        });
    }

    /// Asks the running job, if any, to stop.
    pub fn cancel(self) {
        if let Some(id) = self.running.get_untracked() {
            spawn_local(cancel(id));
        }
    }
}

impl Default for JobControl {
    fn default() -> Self {
        JobControl::new()
    }
}
