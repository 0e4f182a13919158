//! `cargo xtask cuda-runtime`: NVRTC and the CUDA headers without a CUDA toolkit.
//!
//! burn's CUDA backend (cubecl) compiles kernels at run time with NVRTC and includes the CUDA
//! headers (`crt/` among them: without it kernels were measured ~3× slower). NVIDIA publishes
//! these as redistributable wheels (nvidia-cuda-nvrtc, -runtime, -crt, -cccl; about 140 MB).
//! This task downloads them with pip and merges their `include/` and `lib/` folders into one
//! directory, by default `~/.local/share/forexgpt/cuda-runtime`, where the app looks for them
//! (or point `CUDA_PATH` at it).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{output_of, run};

const WHEELS: &[&str] = &[
    "nvidia-cuda-nvrtc",
    "nvidia-cuda-runtime",
    "nvidia-cuda-crt",
    "nvidia-cuda-cccl",
];

/// The CUDA version the driver supports, from `nvidia-smi` ("CUDA Version: 13.0").
fn driver_cuda_version() -> Option<String> {
    let out = output_of("nvidia-smi", &[])?;
    let after = out.split("CUDA Version:").nth(1)?;
    Some(after.split_whitespace().next()?.to_string())
}

fn default_dir() -> Result<PathBuf> {
    let home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .context("neither XDG_DATA_HOME nor HOME is set; pass --dir")?;
    Ok(home.join("forexgpt/cuda-runtime"))
}

pub fn assemble(args: &[String]) -> Result<()> {
    let mut cuda = None;
    let mut dir = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--cuda" => cuda = it.next().cloned(),
            "--dir" => dir = it.next().map(PathBuf::from),
            other => bail!("unknown argument '{other}' (expected --cuda X.Y or --dir DIR)"),
        }
    }
    // NVRTC newer than the driver emits PTX the driver rejects, so match the driver.
    let cuda = cuda
        .or_else(driver_cuda_version)
        .unwrap_or_else(|| "13.0".to_string());
    let dir = match dir {
        Some(d) => d,
        None => default_dir()?,
    };
    let scratch = std::env::temp_dir().join(format!("forexgpt-cuda-wheels-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let mut pip = Command::new("python3");
    pip.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
    ])
    .arg(&scratch);
    for wheel in WHEELS {
        pip.arg(format!("{wheel}=={cuda}.*"));
    }
    run(pip)
        .context("downloading NVIDIA's CUDA wheels (needs python3 with pip and access to PyPI)")?;
    let staging = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&staging);
    for entry in std::fs::read_dir(&scratch)? {
        let wheel = entry?.path();
        if wheel.extension().is_some_and(|e| e == "whl") {
            let unpacked = scratch.join("unpacked");
            let mut unzip = Command::new("python3");
            unzip
                .args(["-m", "zipfile", "-e"])
                .arg(&wheel)
                .arg(&unpacked);
            run(unzip)?;
            merge_tree(&unpacked, &staging)?;
            std::fs::remove_dir_all(&unpacked)?;
        }
    }
    if !staging.join("include/cuda_runtime.h").exists()
        || !staging.join("include/crt/host_defines.h").exists()
    {
        bail!(
            "the wheels did not contain the expected headers (include/cuda_runtime.h, include/crt/host_defines.h)"
        );
    }
    // Replace the old bundle only once the new one is complete.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&staging, &dir)
        .with_context(|| format!("moving the bundle to {}", dir.display()))?;
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!(
        "xtask: CUDA {cuda} runtime pieces are in {} (the app finds them there; or set CUDA_PATH to it)",
        dir.display()
    );
    Ok(())
}

/// Copies every `include/` folder's contents to `out/include` and every `lib/`/`lib64/`
/// folder's contents to `out/lib`.
fn merge_tree(root: &Path, out: &Path) -> Result<()> {
    for entry in std::fs::read_dir(root)? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        match path.file_name().and_then(|n| n.to_str()) {
            Some("include") => copy_dir(&path, &out.join("include"))?,
            Some("lib" | "lib64") => copy_dir(&path, &out.join("lib"))?,
            _ => merge_tree(&path, out)?,
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let name = entry_name(&path)?;
        // Static libraries and CMake files are for linking at build time; the app only loads.
        if name == "cmake" || path.extension().is_some_and(|e| e == "a") {
            continue;
        }
        let target = to.join(name);
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else {
            std::fs::copy(&path, &target).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

fn entry_name(path: &Path) -> Result<&std::ffi::OsStr> {
    path.file_name()
        .with_context(|| format!("{} has no file name", path.display()))
}
