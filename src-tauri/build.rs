//! Embeds the frontend and generates one permission per app command, so that the capability
//! file can grant exactly the commands the UI calls and nothing else.

const COMMANDS: &[&str] = &[
    "device_info",
    "fetch_cuda_runtime",
    "list_series",
    "series_candles",
    "pick_csv_file",
    "import_csv",
    "train_models",
    "list_models",
    "delete_model",
    "forecast",
    "backtest",
    "run_benchmark",
    "bench_runs",
    "compare_bench_runs",
    "delete_bench_run",
    "cancel_job",
];

fn main() {
    let git_rev = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(rev) = git_rev.filter(|r| !r.is_empty()) {
        println!("cargo:rustc-env=FOREXGPT_GIT_REV={rev}");
    }
    for path in ["../.git/HEAD", "../.git/refs/heads", "../.git/index"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    // The frontend is embedded at compile time: a rebuilt `dist` must rebuild the app.
    println!("cargo:rerun-if-changed=../frontend/dist");
    let manifest = tauri_build::AppManifest::new().commands(COMMANDS);
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(manifest))
        .expect("tauri build step (is frontend/dist built? run `cargo xtask frontend`)");
}
