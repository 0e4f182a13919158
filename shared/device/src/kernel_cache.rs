//! cubecl's persistent kernel and autotune caches in a per-user cache directory.
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

impl KernelCache {
    /// Points cubecl's compilation and autotune caches at `<cache>/kernels` (once per process).
    /// Returns `None` in builds without a GPU backend or when no cache directory exists.
    pub fn configure() -> Option<KernelCache> {
        let dir = cache_root()?.join("kernels");
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
