//! `cargo xtask <task>`: project automation written in Rust instead of shell scripts.
//!
//! - `setup`  installs what a fresh Debian/Ubuntu machine lacks (idempotent: checks first)
//! - `test`   setup, then rustfmt check, clippy with warnings denied (also over the CUDA-only
//!   code), a type check of the Metal paths for Apple Silicon, every test, and the GUI
//!   end-to-end tests of the app (the test build's binary) under Xvfb
//! - `app`    setup, then builds and starts the desktop app on the built-in sample data; with
//!   `--cli` (or when there is no display) walks through the same work with the CLI instead
//! - `frontend` builds the leptos UI to WebAssembly into `frontend/dist`
//! - `bundle` builds the installable package of this platform (`.deb`, `.dmg`, `.msi`) with
//!   tauri-cli
//! - `clean-debian [DEB]`  installs the app's `.deb` (default: the newest `bundle` made) on a
//!   clean Debian in a chroot and runs the GUI end-to-end test against the installed binary
//!   (root, network to a Debian mirror; not part of `test`)
//! - `bench`  release build, then the benchmark suite (extra arguments go to `forexgpt bench`)
//! - `cuda-runtime [--cuda X.Y] [--dir DIR]`  assembles NVRTC and the CUDA headers, which the
//!   CUDA backend needs at run time, from NVIDIA's redistributable wheels on PyPI

use std::process::Command;

use anyhow::{Context, Result, bail};

mod clean_debian;
mod cuda_runtime;
mod desktop;

/// Debian packages the build and the tests need: a C toolchain for the bundled SQLite; the
/// Vulkan loader with Mesa's software driver (lavapipe) so the wgpu backend really runs in
/// tests on machines without a GPU; WebKitGTK and the libraries Tauri links; and Xvfb with
/// WebKitWebDriver for the GUI end-to-end tests.
const APT_PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "file",
    "libvulkan1",
    "mesa-vulkan-drivers",
    "libwebkit2gtk-4.1-dev",
    "libxdo-dev",
    "libssl-dev",
    "libayatana-appindicator3-dev",
    "librsvg2-dev",
    "xvfb",
    "xauth",
    "webkit2gtk-driver",
];
/// rustup components the checks need.
const RUSTUP_COMPONENTS: &[&str] = &["rustfmt", "clippy"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = args
        .split_first()
        .map(|(t, r)| (t.as_str(), r))
        .unwrap_or(("help", &[]));
    match task {
        "setup" => setup(),
        "test" => {
            setup()?;
            test()
        }
        "app" => {
            setup()?;
            if rest.iter().any(|a| a == "--cli") {
                cli_walkthrough()
            } else if !desktop::has_display() {
                eprintln!(
                    "xtask: no display (DISPLAY and WAYLAND_DISPLAY are unset), so the window \
                     cannot open; walking through the same work with the CLI instead. In a \
                     desktop session, `cargo xtask app` opens the app."
                );
                cli_walkthrough()
            } else {
                desktop::app()
            }
        }
        "frontend" => {
            setup()?;
            desktop::frontend()
        }
        "bundle" => {
            setup()?;
            desktop::bundle(rest)
        }
        "bench" => {
            setup()?;
            bench(rest)
        }
        "clean-debian" => {
            setup()?;
            desktop::frontend()?;
            clean_debian::clean_debian(rest)
        }
        "cuda-runtime" => cuda_runtime::assemble(rest),
        "help" | "-h" | "--help" => {
            println!(
                "usage: cargo xtask <setup|test|app [--cli]|frontend|bundle|clean-debian [DEB]|bench|cuda-runtime> [args]"
            );
            Ok(())
        }
        other => bail!(
            "unknown task '{other}'; expected setup, test, app, frontend, bundle, clean-debian, bench or cuda-runtime"
        ),
    }
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()))
}

pub(crate) fn run(mut cmd: Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: running {shown}");
    let started = std::time::Instant::now();
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    // Each phase's time, so a slow test command shows where the time goes.
    eprintln!(
        "xtask: {:.0} s for {shown}",
        started.elapsed().as_secs_f64()
    );
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

pub(crate) fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn apt_installed(package: &str) -> bool {
    output_of("dpkg-query", &["-W", "-f=${Status}", package])
        .is_some_and(|s| s.contains("install ok installed"))
}

fn is_root() -> bool {
    output_of("id", &["-u"]).is_some_and(|s| s.trim() == "0")
}

/// Installs missing apt packages and rustup components; does nothing when all are present.
fn setup() -> Result<()> {
    // On macOS and Windows the system provides the webview; only Linux needs packages.
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| cfg!(target_os = "linux") && !apt_installed(p))
        .collect();
    if !missing.is_empty() {
        if output_of("apt-get", &["--version"]).is_none() {
            bail!(
                "missing packages {missing:?} and no apt-get here: install them with your package manager"
            );
        }
        let sudo = if is_root() { None } else { Some("sudo") };
        let apt = |args: &[&str]| {
            let mut cmd = Command::new(sudo.unwrap_or("apt-get"));
            if sudo.is_some() {
                cmd.arg("apt-get");
            }
            cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            cmd
        };
        run(apt(&["update", "-q"]))?;
        let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
        install.args(&missing);
        run(install)?;
    }
    if let Some(installed) = output_of("rustup", &["component", "list", "--installed"]) {
        for component in RUSTUP_COMPONENTS {
            if !installed.lines().any(|l| l.starts_with(component)) {
                let mut cmd = Command::new("rustup");
                cmd.args(["component", "add", component]);
                run(cmd)?;
            }
        }
    }
    eprintln!("xtask: setup complete");
    Ok(())
}

/// The features of the test build, whose app binary the GUI tests drive.
pub const TEST_FEATURES: &str = "forexgpt-regressors/linfa,forexgpt-app/cuda";

/// The CUDA version cudarc builds its bindings for when no CUDA toolkit is installed (CUDA is
/// loaded at run time).
pub const CUDARC_CUDA_VERSION: &str = "13000";

fn test() -> Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;
    // The app embeds the built frontend, so it must exist before the workspace compiles.
    desktop::frontend()?;
    // One clippy pass over everything, the CUDA-only code included (our kernels, cubecl's
    // CUDA runtime, cuBLAS): it cannot run here but must compile, with the CUDA version
    // cudarc would otherwise ask a CUDA toolkit for. One pass checks the stack once, not twice.
    let mut clippy = cargo();
    clippy
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--features",
            "forexgpt-engine/cuda,forexgpt-regressors/linfa",
            "--",
            "-D",
            "warnings",
        ])
        .env("CUDARC_CUDA_VERSION", CUDARC_CUDA_VERSION);
    run(clippy)?;
    apple_check()?;
    let mut test = cargo();
    // linfa's traits for our estimators are a feature (nothing in the app needs them); their
    // tests, with linfa as a second oracle, run here. The app is built with CUDA, as the
    // installed packages are (`cargo xtask bundle`), so the GUI tests below see its Devices
    // tab say why CUDA is unavailable on this machine rather than that it was left out; the
    // GPU-less tests of the CUDA paths run (and skip their device parts, saying so) too.
    test.args([
        "test",
        "--workspace",
        "--locked",
        "--features",
        TEST_FEATURES,
    ])
    .env("CUDARC_CUDA_VERSION", CUDARC_CUDA_VERSION);
    run(test)?;
    // The GUI tests drive the app binary the test build above already made (same profile,
    // same features), so nothing is built a second time.
    desktop::gui_tests()
}

/// Apple Silicon, which we cannot run here: its GPU is reached through wgpu's Metal backend.
const APPLE_TARGET: &str = "aarch64-apple-darwin";

/// Type-checks for Apple Silicon the crates that hold the Metal paths: the device crate with
/// wgpu (its Metal backend and the adapter probe), our CubeCL kernels for wgpu, and the
/// regressors and networks that run on them. Not checkable without Apple's SDK: the crates
/// that compile C for the target (the bundled SQLite under core, and so the engine, the CLI
/// and the app), and nothing can run or link.
fn apple_check() -> Result<()> {
    desktop::ensure_target(APPLE_TARGET)?;
    let mut check = cargo();
    check.args([
        "check",
        "--locked",
        "--target",
        APPLE_TARGET,
        "-p",
        "forexgpt-device",
        "-p",
        "forexgpt-kernels",
        "-p",
        "forexgpt-regressors",
        "-p",
        "forexgpt-models",
        "--features",
        "forexgpt-device/wgpu,forexgpt-kernels/wgpu,forexgpt-regressors/wgpu",
    ]);
    run(check)
}

/// `cargo run --release -p forexgpt-cli -- ARGS`.
fn forexgpt(args: &[&str]) -> Command {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "--locked",
        "-p",
        "forexgpt-cli",
        "--",
    ])
    .args(args);
    cmd
}

/// The engine's whole path through the CLI on the sample data: data, features, a first
/// training of a small model grid, an ensemble forecast and a backtest.
fn cli_walkthrough() -> Result<()> {
    let mut build = cargo();
    build.args(["build", "--release", "--locked", "-p", "forexgpt-cli"]);
    run(build)?;
    run(forexgpt(&["data", "--gaps"]))?;
    run(forexgpt(&["features"]))?;
    // A first run trains a small grid on the sample; later runs reuse the stored models.
    let listed = forexgpt(&["models", "--json"])
        .output()
        .context("listing stored models")?;
    let has_models = String::from_utf8_lossy(&listed.stdout).contains("\"id\"");
    if !has_models {
        run(forexgpt(&[
            "train",
            "--encoder",
            "none,pca",
            "--regressor",
            "ridge,lasso",
            "--use-gpu",
        ]))?;
    }
    run(forexgpt(&["models"]))?;
    // The same combination for both: weights from each model's validation error.
    run(forexgpt(&["forecast", "--combine", "weighted"]))?;
    run(forexgpt(&["backtest", "--combine", "weighted"]))
}

fn bench(rest: &[String]) -> Result<()> {
    let mut cmd = forexgpt(&["bench"]);
    cmd.args(rest);
    run(cmd)
}
