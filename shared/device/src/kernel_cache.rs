//! cubecl's persistent kernel and autotune caches in a per-user cache directory, one folder
//! per build of the executable.
//!
//! cubecl keys a cached kernel by the kernel's identity and compile-time configuration, not by
//! its generated source: a build whose kernel code changed (an update, a new commit) would
//! load the previous build's compiled kernel for the same key and run it with its own host
//! code. That happened on the GPU machine (2026-12-07): binaries of two commits sharing one
//! cache ran the first one's fused training kernels, and the second reported a grid's loss 8×
//! too high, with no error. So each build gets `<cache>/kernels/<build>`, named by the
//! package version and the executable's size and modification time.
//!
//! Measured on the H100 (docs/benchmarks.md): the first CUDA run spent over two minutes
//! compiling and autotuning kernels, a restart with warm caches 0.5 s. cubecl reads its
//! configuration once, so it is set here before any GPU work; where the cache directory is
//! still empty the caller shows "compiling GPU kernels (first run)".

use std::path::{Path, PathBuf};

/// Overrides the cache directory.
pub const CACHE_ENV: &str = "FOREXGPT_CACHE_DIR";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelCache {
    pub dir: PathBuf,
    /// Nothing was cached yet: the first GPU run on this machine compiles its kernels.
    pub cold: bool,
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "forexgpt")
}

pub fn cache_root() -> Option<PathBuf> {
    std::env::var_os(CACHE_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| project_dirs().map(|d| d.cache_dir().to_path_buf()))
}

/// Where the app's CUDA-runtime fetch (and `cargo xtask cuda-runtime`) put NVRTC and the
/// CUDA headers for this user, whether or not they are there yet.
pub fn cuda_bundle_target() -> Option<PathBuf> {
    project_dirs().map(|d| d.data_dir().join("cuda-runtime"))
}

/// The per-user CUDA bundle, when it exists.
pub fn cuda_bundle_dir() -> Option<PathBuf> {
    cuda_bundle_target().filter(|p| p.is_dir())
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none())
}

/// This build's name among the cached builds: the package version and the running
/// executable's size and modification time (each build and install of the binary differs in
/// them), or the version alone where the executable cannot be read.
pub fn build_id() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let Some(meta) = std::env::current_exe()
        .ok()
        .and_then(|exe| std::fs::metadata(exe).ok())
    else {
        return version.to_string();
    };
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{version}-{:x}-{modified:x}", meta.len())
}

impl KernelCache {
    /// Points cubecl's compilation and autotune caches at `<cache>/kernels/<build>` (once per
    /// process; see [`build_id`]). Returns `None` in builds without a GPU backend or when no
    /// cache directory exists.
    pub fn configure() -> Option<KernelCache> {
        let dir = cache_root()?.join("kernels").join(build_id());
        let cold = is_empty_dir(&dir);
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        {
            static CONFIGURED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            let ok = *CONFIGURED.get_or_init(|| set_cubecl_config(&dir));
            ok.then_some(KernelCache { dir, cold })
        }
        #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
        {
            let _ = cold;
            None
        }
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn set_cubecl_config(dir: &Path) -> bool {
    use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig, cache::CacheConfig};
    if let Err(e) = std::fs::create_dir_all(dir) {
        tracing::warn!(
            "GPU kernel cache disabled: cannot create {}: {e}",
            dir.display()
        );
        return false;
    }
    // Starting from what cubecl itself would read keeps a `cubecl.toml` and its debugging
    // variables working (`CUBECL_DEBUG_LOG=FILE` logs each kernel's generated source).
    let mut config =
        std::panic::catch_unwind(|| CubeClRuntimeConfig::from_current_dir().override_from_env())
            .unwrap_or_default();
    config.compilation.cache = Some(CacheConfig::File(dir.to_path_buf()));
    config.autotune.cache = CacheConfig::File(dir.to_path_buf());
    // `set` panics when the configuration was already read (GPU work ran before the device
    // manager): then cubecl keeps its defaults and we say so.
    match std::panic::catch_unwind(|| CubeClRuntimeConfig::set(config)) {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!("GPU kernel cache not configured: cubecl was already initialised");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two builds never share compiled kernels: the folder is named by this executable's
    /// size and modification time, which any rebuild changes.
    #[test]
    fn the_cache_folder_names_this_build() {
        let id = build_id();
        let exe = std::fs::metadata(std::env::current_exe().unwrap()).unwrap();
        assert!(
            id.starts_with(&format!("{}-{:x}-", env!("CARGO_PKG_VERSION"), exe.len())),
            "{id}"
        );
        assert_eq!(id, build_id(), "the same build, the same folder");
        let modified = id.rsplit('-').next().unwrap();
        assert!(
            u128::from_str_radix(modified, 16).unwrap() > 0,
            "the modification time is part of the name: {id}"
        );
    }
}
