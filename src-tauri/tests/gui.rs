//! GUI end-to-end test: the real app under Xvfb, driven through tauri-driver and
//! WebKitWebDriver the way a person uses it. `cargo xtask test` runs it (it is `#[ignore]`d
//! in a plain `cargo test`, which has no display); it drives the app binary cargo built with
//! the tests (`FOREXGPT_APP_BIN` names another, e.g. a release build), needs `TAURI_DRIVER`
//! (tauri-driver), and writes a screenshot of every tab to `FOREXGPT_SCREENSHOTS`. Linux only: WebKitWebDriver has no macOS or Windows
//! counterpart that tauri-driver supports here.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The W3C WebDriver key that holds an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const DRIVER_PORT: u16 = 4444;

/// tauri-driver in its own process group, killed with everything it started.
struct Driver(Child);

impl Driver {
    fn start(db: &Path) -> Driver {
        let driver = std::env::var("TAURI_DRIVER").unwrap_or_else(|_| "tauri-driver".into());
        let mut cmd = Command::new(driver);
        cmd.args(["--port", &DRIVER_PORT.to_string()])
            .env("FOREXGPT_DB", db)
            .env("FOREXGPT_LOG", "info")
            .stdout(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        Driver(cmd.spawn().expect("start tauri-driver"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

/// A WebDriver session on the app's window.
struct Session {
    agent: ureq::Agent,
    base: String,
    screenshots: PathBuf,
}

impl Session {
    fn new(app: &str, screenshots: PathBuf) -> Session {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let root = format!("http://127.0.0.1:{DRIVER_PORT}");
        let caps =
            json!({"capabilities": {"alwaysMatch": {"tauri:options": {"application": app}}}});
        let deadline = Instant::now() + Duration::from_secs(60);
        let reply = loop {
            match agent.post(format!("{root}/session")).send_json(&caps) {
                Ok(mut r) => break r.body_mut().read_json::<Value>().expect("session reply"),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("waiting for tauri-driver: {e}");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("tauri-driver did not answer: {e}"),
            }
        };
        let id = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_string();
        std::fs::create_dir_all(&screenshots).expect("screenshot folder");
        Session {
            agent,
            base: format!("{root}/session/{id}"),
            screenshots,
        }
    }

    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let reply = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, body) => self.agent.post(&url).send_json(body.unwrap_or(json!({}))),
        };
        let mut reply = reply.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        reply
            .body_mut()
            .read_json::<Value>()
            .unwrap_or_else(|e| panic!("{method} {path}: unreadable reply: {e}"))
    }

    /// Runs `script` in the page and returns its value.
    fn script(&self, script: &str, args: Value) -> Value {
        let reply = self.send(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        );
        reply["value"].clone()
    }

    /// The element `css` selects, waiting up to `timeout` for it to appear.
    fn find(&self, css: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let reply = self.send(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            );
            if let Some(id) = reply["value"][ELEMENT_KEY].as_str() {
                return id.to_string();
            }
            assert!(Instant::now() < deadline, "no element '{css}': {reply}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn click(&self, css: &str) {
        let id = self.find(css, Duration::from_secs(30));
        let reply = self.send("POST", &format!("/element/{id}/click"), None);
        assert!(reply["value"].is_null(), "click '{css}': {reply}");
    }

    fn text(&self, css: &str) -> String {
        let id = self.find(css, Duration::from_secs(30));
        let reply = self.send("GET", &format!("/element/{id}/text"), None);
        reply["value"].as_str().unwrap_or_default().to_string()
    }

    /// Sets an input's value as typing would (the UI listens to `input`).
    fn type_into(&self, css: &str, text: &str) {
        self.find(css, Duration::from_secs(30));
        self.script(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
             e.dispatchEvent(new Event('input', {bubbles: true}));",
            json!([css, text]),
        );
    }

    /// Chooses an option of a select as a person would (the UI listens to `change`).
    fn choose(&self, css: &str, value: &str) {
        self.find(css, Duration::from_secs(30));
        self.script(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
             e.dispatchEvent(new Event('change', {bubbles: true}));",
            json!([css, value]),
        );
    }

    /// Runs `script` in the page as an async script: its last argument is the callback that
    /// returns the value.
    fn script_async(&self, script: &str, args: Value) -> Value {
        let reply = self.send(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        );
        reply["value"].clone()
    }

    /// Calls an IPC command from the page as its own code would; `Ok` with the reply or `Err`
    /// with the refusal.
    fn invoke(&self, command: &str) -> Result<String, String> {
        let reply = self.script_async(
            "const done = arguments[arguments.length - 1]; \
             window.__TAURI_INTERNALS__.invoke(arguments[0], {}) \
                 .then(v => done({ok: JSON.stringify(v)}), e => done({err: String(e)}));",
            json!([command]),
        );
        match (reply["ok"].as_str(), reply["err"].as_str()) {
            (Some(ok), _) => Ok(ok.to_string()),
            (_, Some(err)) => Err(err.to_string()),
            _ => Err(format!("no reply: {reply}")),
        }
    }

    /// Records every text `css` shows from now on, for [`Session::seen`]: progress lines
    /// change faster than a test can poll them, and are cleared when the job ends.
    fn watch(&self, css: &str) {
        self.find(css, Duration::from_secs(30));
        self.script(
            "const e = document.querySelector(arguments[0]); \
             window.__seen = window.__seen || {}; \
             const log = window.__seen[arguments[0]] = []; \
             new MutationObserver(() => log.push(e.textContent)) \
                 .observe(e, {childList: true, subtree: true, characterData: true});",
            json!([css]),
        );
    }

    /// Every text `css` showed since [`Session::watch`], joined by newlines.
    fn seen(&self, css: &str) -> String {
        self.script(
            "return ((window.__seen || {})[arguments[0]] || []).join('\\n');",
            json!([css]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Whether `css` exists (without waiting).
    fn exists(&self, css: &str) -> bool {
        self.count(css) > 0
    }

    fn count(&self, css: &str) -> u64 {
        self.script(
            "return document.querySelectorAll(arguments[0]).length;",
            json!([css]),
        )
        .as_u64()
        .unwrap_or(0)
    }

    /// Waits until the text of `css` satisfies `ok`; returns it.
    fn wait_text(&self, css: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self
                .script(
                    "const e = document.querySelector(arguments[0]); \
                     if (e) { e.scrollIntoView({block: 'nearest'}); } \
                     return e ? e.textContent : null;",
                    json!([css]),
                )
                .as_str()
                .unwrap_or_default()
                .to_string();
            if ok(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "'{css}' never matched; last text: {text:?}; errors on the page: {:?}",
                self.script(
                    "return Array.from(document.querySelectorAll('.error')).map(e => e.innerText);",
                    json!([])
                )
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits for the page to settle, then saves a screenshot as `name`.png.
    fn screenshot(&self, name: &str) {
        std::thread::sleep(Duration::from_millis(700));
        let reply = self.send("GET", "/screenshot", None);
        let data = reply["value"].as_str().expect("screenshot data");
        let bytes = base64_decode(data);
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &d)| acc | (u32::from(d) << (18 - 6 * i)));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

const LONG: Duration = Duration::from_secs(300);

#[test]
#[ignore = "needs tauri-driver, WebKitWebDriver and a display: run by `cargo xtask test`"]
fn the_app_works_as_a_person_uses_it() {
    // The app cargo built with this test (or another build of it, e.g. the release one).
    let app = std::env::var("FOREXGPT_APP_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_forexgpt-workbench").to_string());
    let screenshots = std::env::var("FOREXGPT_SCREENSHOTS")
        .map_or_else(|_| std::env::temp_dir().join("forexgpt-gui"), PathBuf::from);
    let home = tempfile::tempdir().expect("temp dir");
    let db = home.path().join("forexgpt.sqlite");
    let _driver = Driver::start(&db);
    let ui = Session::new(&app, screenshots);
    // The window size the app opens with (tauri.conf.json), set explicitly: every screenshot
    // and layout check below is of a 1280×800 window.
    ui.send(
        "POST",
        "/window/rect",
        Some(json!({"width": 1280, "height": 800})),
    );
    let viewport = ui.script("return [window.innerWidth, window.innerHeight];", json!([]));
    eprintln!("viewport: {viewport}");

    // Devices: the CPU is listed, `auto` says what it runs on, and without a usable GPU the
    // Training tab's GPU checkbox is disabled with the reason next to it.
    ui.click("[data-test=tab-devices]");
    let auto = ui.wait_text("[data-test=auto-device]", LONG, |t| !t.is_empty());
    let cpu = ui.text("[data-test=cpu-model]");
    assert!(cpu.contains("threads"), "CPU row: {cpu}");
    ui.screenshot("devices");
    let no_gpu = auto.starts_with("cpu");
    if no_gpu {
        let reason = ui.text("[data-test=gpu-unavailable]");
        assert!(reason.contains("No GPU is used"), "{reason}");
    }
    // An empty device list says what would be there, instead of showing headers only.
    let cuda_reason = ui.text("[data-test=cuda-reason]");
    if cuda_reason != "—" {
        let empty = ui.text("[data-test=cuda-devices-empty]");
        assert!(empty.starts_with("No CUDA devices:"), "{empty}");
    }
    // The app carries CUDA, as the installed packages do (`cargo xtask test` builds it with
    // the `cuda` feature): the Devices tab says why CUDA is unavailable on this machine (no
    // driver, or NVRTC and the headers missing, which it offers to fetch), never that the
    // build left it out.
    assert_eq!(
        ui.text("[data-test=cuda-built]"),
        "yes",
        "the app under test was built without CUDA: {cuda_reason}"
    );
    assert!(!cuda_reason.contains("not built"), "{cuda_reason}");
    if cuda_reason.contains("no NVIDIA driver") {
        let hint = ui.text("[data-test=cuda-fetch-hint]");
        assert!(hint.contains("needs the NVIDIA driver first"), "{hint}");
        assert!(
            ui.script(
                "return document.querySelector('[data-test=cuda-fetch-button]').disabled;",
                json!([])
            ) == json!(true),
            "the fetch button works without a driver"
        );
    }

    // The page's boundary: it may call the app's own commands and nothing else (no plugin,
    // no core window command), and the CSP runs no inline, remote or eval'd script.
    assert!(ui.invoke("list_series").is_ok(), "the app's own command");
    for refused in [
        "plugin:dialog|open",
        "plugin:shell|open",
        "plugin:fs|read_text_file",
        "plugin:window|set_title",
    ] {
        let reply = ui.invoke(refused);
        assert!(reply.is_err(), "{refused} was allowed: {reply:?}");
    }
    let ran = ui.script(
        "window.__violations = []; \
         document.addEventListener('securitypolicyviolation', \
             e => window.__violations.push(e.violatedDirective)); \
         const inline = document.createElement('script'); \
         inline.textContent = 'window.__inlineRan = true;'; \
         document.head.appendChild(inline); \
         const remote = document.createElement('script'); \
         remote.src = 'https://example.com/evil.js'; \
         document.head.appendChild(remote); \
         let evalRan = false; \
         try { evalRan = window.eval('true'); } catch (e) {} \
         return [window.__inlineRan === true, evalRan === true];",
        json!([]),
    );
    assert_eq!(ran, json!([false, false]), "inline script, eval");
    std::thread::sleep(Duration::from_millis(500));
    let violations = ui.script("return window.__violations;", json!([]));
    let blocked = violations.as_array().map_or(0, |v| {
        v.iter()
            .filter(|d| d.as_str().is_some_and(|d| d.starts_with("script-src")))
            .count()
    });
    assert!(blocked >= 2, "CSP violations reported: {violations}");

    // Data: the sample series are listed and the chart draws candles.
    ui.click("[data-test=tab-data]");
    ui.wait_text("[data-test=series-table]", LONG, |t| t.contains("EURUSD"));
    let caption = ui.wait_text("[data-test=chart-caption]", LONG, |t| t.contains("bars"));
    assert!(caption.contains("of the 500 loaded"), "{caption}");
    assert!(ui.count("[data-test=candle-chart] .candle") >= 100);
    // The chart fits the window without scrolling.
    let overflow = ui.script(
        "window.scrollTo(0, 0); \
         return document.querySelector('[data-test=candle-chart]').getBoundingClientRect().bottom \
             - window.innerHeight;",
        json!([]),
    );
    assert!(
        overflow.as_f64().is_some_and(|o| o <= 0.0),
        "the candle chart runs {overflow} px past the window's bottom"
    );
    ui.screenshot("data");

    // A bad CSV: the error names the line and field, and nothing is stored.
    let bad = home.path().join("bad.csv");
    std::fs::write(
        &bad,
        "time,open,high,low,close,volume\n\
         2024-01-02 13:00,1.1000,1.1010,1.0990,1.1005,10\n\
         2024-01-02 14:00,1.1005,1.1001,1.0990,1.1004,10\n",
    )
    .expect("write bad csv");
    ui.type_into("[data-test=import-path]", &bad.to_string_lossy());
    ui.type_into("[data-test=import-symbol]", "BADCSV");
    ui.click("[data-test=import-button]");
    let error = ui.wait_text("[data-test=import-error]", LONG, |t| !t.is_empty());
    assert!(
        error.contains("line 3") && error.contains("high"),
        "import error: {error}"
    );
    let listed = ui.text("[data-test=series-table]");
    assert!(
        !listed.contains("BADCSV"),
        "a failed import stored data: {listed}"
    );
    ui.screenshot("data-import-error");

    // Training: (none, autoencoder) × (ridge, lasso, random forest) on the sample, progress
    // (epochs, trees) and the autoencoder's loss curve shown, models listed.
    ui.click("[data-test=tab-training]");
    if no_gpu {
        let disabled = ui.script(
            "return document.querySelector('[data-test=train-gpu]').disabled;",
            json!([]),
        );
        assert_eq!(disabled, json!(true), "GPU checkbox enabled without a GPU");
        let reason = ui.text("[data-test=train-gpu-reason]");
        assert!(reason.starts_with("Unavailable:"), "{reason}");
    }
    ui.wait_text("[data-test=train-series]", LONG, |t| t.contains("EURUSD"));
    let empty = ui.wait_text("[data-test=models-empty]", LONG, |t| !t.is_empty());
    assert!(empty.starts_with("No stored models."), "{empty}");
    ui.type_into("[data-test=train-horizons]", "1, 4, 12");
    ui.click("[data-test=regressor-lasso]");
    ui.click("[data-test=encoder-ae]");
    ui.type_into("[data-test=net-hidden]", "32");
    ui.type_into("[data-test=net-latent]", "4");
    ui.type_into("[data-test=net-epochs]", "3");
    ui.click("[data-test=regressor-rf]");
    ui.type_into("[data-test=rf-trees]", "5");
    ui.type_into("[data-test=rf-depth]", "6");
    ui.watch("[data-test=train-progress]");
    ui.click("[data-test=train-button]");
    let report = ui.wait_text("[data-test=train-report]", LONG, |t| t.contains("Trained"));
    assert!(report.contains("Trained 6 models"), "{report}");
    // Progress went through the stages while it ran, and is gone once the models are shown.
    let steps = ui.seen("[data-test=train-progress]");
    assert!(steps.contains("training encoder 3/3"), "progress: {steps}");
    assert!(steps.contains("growing trees 5/5"), "progress: {steps}");
    ui.wait_text("[data-test=train-progress]", LONG, str::is_empty);
    let loss = ui.text("[data-test=loss-label]");
    assert!(loss.starts_with("ae4: epoch 3/3"), "{loss}");
    assert_eq!(ui.count("[data-test=loss-chart] polyline"), 2);
    // One group of rows per model: its id once, beside its three horizons; the unit named.
    assert_eq!(ui.count("[data-test=train-model-id]"), 6);
    assert_eq!(ui.count("[data-test=train-results] tbody tr"), 18);
    let header = ui.text("[data-test=train-results] thead");
    assert!(header.contains("val. MAE (log return)"), "{header}");
    ui.wait_text("[data-test=model-table]", LONG, |t| t.contains("ae4"));
    assert!(!ui.exists("[data-test=models-empty]"));
    let table = ui.text("[data-test=model-table]");
    assert!(table.contains("rf(trees=5,max_depth=6"), "{table}");
    ui.screenshot("training");

    // Forecast: the ensemble of all six models, drawn with its band, one row per horizon.
    ui.click("[data-test=tab-forecast]");
    ui.click("[data-test=forecast-button]");
    ui.wait_text("[data-test=forecast-summary]", LONG, |t| {
        t.contains("6 models")
    });
    assert_eq!(ui.count("[data-test=forecast-table] tbody tr"), 3);
    assert_eq!(ui.count("[data-test=forecast-chart] .band"), 1);
    assert!(ui.count("[data-test=forecast-chart] .candle") >= 100);
    ui.screenshot("forecast");

    // Backtest of the same ensemble over the test period, with its progress.
    ui.watch("[data-test=backtest-progress]");
    ui.click("[data-test=backtest-button]");
    let summary = ui.wait_text("[data-test=backtest-summary]", LONG, |t| {
        t.contains("Backtest")
    });
    assert!(summary.contains("6 models"), "{summary}");
    let steps = ui.seen("[data-test=backtest-progress]");
    assert!(steps.contains("backtesting"), "progress: {steps}");
    ui.wait_text("[data-test=backtest-progress]", LONG, str::is_empty);

    // Benchmark: a small run of the forecast suite shows its bars and is kept in the history.
    ui.click("[data-test=tab-benchmark]");
    let empty = ui.wait_text("[data-test=bench-history-empty]", LONG, |t| !t.is_empty());
    assert!(empty.starts_with("No benchmark runs yet."), "{empty}");
    ui.choose("[data-test=bench-suite]", "forecast");
    ui.choose("[data-test=bench-size]", "small");
    ui.watch("[data-test=bench-progress]");
    ui.click("[data-test=bench-button]");
    ui.wait_text("[data-test=bench-run-header]", LONG, |t| {
        t.contains("Run #1")
    });
    assert!(ui.count("[data-test=bench-chart] .bar") >= 4);
    let steps = ui.seen("[data-test=bench-progress]");
    assert!(steps.contains("benchmarking"), "progress: {steps}");
    // No progress text once the run is shown, and no "1 model(s)".
    ui.wait_text("[data-test=bench-progress]", LONG, str::is_empty);
    let table = ui.text("[data-test=bench-table]");
    assert!(
        table.contains("1 model, 1 bar") && !table.contains("(s)"),
        "{table}"
    );
    // Every label of the chart is whole: device names end before their bar starts, times and
    // speedups end inside the chart.
    let clipped = ui.script(
        "const svg = document.querySelector('[data-test=bench-chart]'); \
         const width = svg.viewBox.baseVal.width; \
         return Array.from(svg.querySelectorAll('.bar')).flatMap(g => { \
             const device = g.querySelector('text.device').getBBox(); \
             const value = g.querySelector('text.value').getBBox(); \
             const bar = g.querySelector('rect').x.baseVal.value; \
             const out = []; \
             if (device.x + device.width > bar - 2) { out.push(g.querySelector('text.device').textContent); } \
             if (value.x + value.width > width) { out.push(g.querySelector('text.value').textContent); } \
             return out; });",
        json!([]),
    );
    assert_eq!(clipped, json!([]), "clipped chart labels");
    assert!(!ui.exists("[data-test=bench-history-empty]"));
    let history = ui.text("[data-test=bench-history]");
    assert!(history.contains("#1"), "{history}");
    ui.screenshot("benchmark");
}
