//! The CUDA driver, NVRTC and the CUDA headers, found at run time without linking to them, so
//! a CUDA build starts cleanly on a machine without NVIDIA software.
//!
//! cubecl compiles kernels at run time with NVRTC and includes the CUDA headers; with only the
//! driver present it panics or (without the `crt` headers) silently runs slower kernels. So
//! "CUDA available" here means the driver answered, a device exists, NVRTC loads and the
//! headers were found.

#![allow(unsafe_code)] // FFI into libcuda/libnvrtc through libloading; every call is checked.

use std::ffi::{c_char, c_int, c_uint};
use std::path::{Path, PathBuf};

use forexgpt_protocol::{CudaDeviceInfo, CudaStatus};

type CuResult = c_int;
const CUDA_SUCCESS: CuResult = 0;
const ATTR_CC_MAJOR: c_int = 75;
const ATTR_CC_MINOR: c_int = 76;

#[cfg(target_os = "windows")]
const DRIVER_NAMES: &[&str] = &["nvcuda.dll"];
#[cfg(not(target_os = "windows"))]
const DRIVER_NAMES: &[&str] = &["libcuda.so.1", "libcuda.so"];

#[cfg(target_os = "windows")]
const NVRTC_NAMES: &[&str] = &["nvrtc64_130_0.dll", "nvrtc64_120_0.dll"];
#[cfg(not(target_os = "windows"))]
const NVRTC_NAMES: &[&str] = &["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"];

/// What the driver reported.
pub struct DriverReport {
    pub driver_version: String,
    pub devices: Vec<CudaDeviceInfo>,
}

fn open_first(names: &[&str], dirs: &[PathBuf]) -> Result<(libloading::Library, String), String> {
    let mut last_error = String::new();
    for dir in dirs {
        for name in names {
            let path = dir.join(name);
            if path.exists() {
                // SAFETY: loading a shared library runs its initialisers; these are NVIDIA's
                // own libraries, loaded the way the CUDA runtime itself loads them.
                match unsafe { libloading::Library::new(&path) } {
                    Ok(lib) => return Ok((lib, path.display().to_string())),
                    Err(e) => last_error = e.to_string(),
                }
            }
        }
    }
    for name in names {
        // SAFETY: as above, through the system loader's search path.
        match unsafe { libloading::Library::new(*name) } {
            Ok(lib) => return Ok((lib, (*name).to_string())),
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(last_error)
}

/// Queries the driver: version and every device's name, memory and compute capability.
pub fn query_driver() -> Result<DriverReport, String> {
    let (lib, _) = open_first(DRIVER_NAMES, &[])
        .map_err(|e| format!("no NVIDIA driver (libcuda not found: {e})"))?;
    // SAFETY: the symbols are the documented CUDA driver API entry points with these C
    // signatures; out-pointers point to live locals of the right type and size.
    unsafe {
        let sym = |name: &[u8]| {
            lib.get::<*const ()>(name)
                .map(|s| *s)
                .map_err(|e| format!("libcuda lacks {}: {e}", String::from_utf8_lossy(name)))
        };
        let cu_init: extern "C" fn(c_uint) -> CuResult = std::mem::transmute(sym(b"cuInit\0")?);
        let cu_driver_version: extern "C" fn(*mut c_int) -> CuResult =
            std::mem::transmute(sym(b"cuDriverGetVersion\0")?);
        let cu_count: extern "C" fn(*mut c_int) -> CuResult =
            std::mem::transmute(sym(b"cuDeviceGetCount\0")?);
        let cu_get: extern "C" fn(*mut c_int, c_int) -> CuResult =
            std::mem::transmute(sym(b"cuDeviceGet\0")?);
        let cu_name: extern "C" fn(*mut c_char, c_int, c_int) -> CuResult =
            std::mem::transmute(sym(b"cuDeviceGetName\0")?);
        let cu_mem: extern "C" fn(*mut usize, c_int) -> CuResult =
            std::mem::transmute(sym(b"cuDeviceTotalMem_v2\0")?);
        let cu_attr: extern "C" fn(*mut c_int, c_int, c_int) -> CuResult =
            std::mem::transmute(sym(b"cuDeviceGetAttribute\0")?);

        let rc = cu_init(0);
        if rc != CUDA_SUCCESS {
            return Err(format!(
                "the NVIDIA driver is installed but cuInit failed (CUresult {rc}: no usable GPU or driver/kernel module mismatch)"
            ));
        }
        let mut version: c_int = 0;
        check(cu_driver_version(&mut version), "cuDriverGetVersion")?;
        let mut count: c_int = 0;
        check(cu_count(&mut count), "cuDeviceGetCount")?;
        let mut devices = Vec::new();
        for ordinal in 0..count {
            let mut dev: c_int = 0;
            check(cu_get(&mut dev, ordinal), "cuDeviceGet")?;
            let mut name = [0 as c_char; 256];
            check(
                cu_name(name.as_mut_ptr(), name.len() as c_int, dev),
                "cuDeviceGetName",
            )?;
            let mut mem: usize = 0;
            check(cu_mem(&mut mem, dev), "cuDeviceTotalMem")?;
            let (mut major, mut minor): (c_int, c_int) = (0, 0);
            check(
                cu_attr(&mut major, ATTR_CC_MAJOR, dev),
                "cuDeviceGetAttribute",
            )?;
            check(
                cu_attr(&mut minor, ATTR_CC_MINOR, dev),
                "cuDeviceGetAttribute",
            )?;
            let name = std::ffi::CStr::from_ptr(name.as_ptr())
                .to_string_lossy()
                .into_owned();
            devices.push(CudaDeviceInfo {
                index: ordinal as usize,
                name,
                total_memory_bytes: mem as u64,
                compute_capability: (major, minor),
            });
        }
        Ok(DriverReport {
            driver_version: format!("{}.{}", version / 1000, (version % 1000) / 10),
            devices,
        })
    }
}

fn check(rc: CuResult, what: &str) -> Result<(), String> {
    if rc == CUDA_SUCCESS {
        Ok(())
    } else {
        Err(format!("{what} failed (CUresult {rc})"))
    }
}

/// Directories that may hold a CUDA toolkit or the redistributable pieces: `CUDA_PATH`,
/// `CUDA_HOME`, the per-user bundle made by `cargo xtask cuda-runtime`, and the usual system
/// locations.
pub fn cuda_roots(bundle: Option<&Path>) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = ["CUDA_PATH", "CUDA_HOME", "CUDA_ROOT"]
        .iter()
        .filter_map(|v| {
            std::env::var_os(v)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        })
        .collect();
    roots.extend(bundle.map(Path::to_path_buf));
    #[cfg(not(target_os = "windows"))]
    roots.extend(["/usr/local/cuda", "/opt/cuda", "/usr"].map(PathBuf::from));
    roots.dedup();
    roots
}

/// The NVRTC library found by the probe, kept loaded: cudarc later opens NVRTC by its plain
/// name, and the dynamic loader then reuses this already-loaded copy (matched by soname) even
/// when it lives outside the library search path (the per-user bundle).
static NVRTC: std::sync::OnceLock<libloading::Library> = std::sync::OnceLock::new();

/// The NVRTC library file in a bundle's `lib/` or `bin/` folder, found without loading it
/// (the app's CUDA-runtime fetch checks its result before installing it).
pub fn find_nvrtc_file(root: &Path) -> Result<PathBuf, String> {
    [root.join("lib"), root.join("bin")]
        .iter()
        .flat_map(|dir| NVRTC_NAMES.iter().map(move |name| dir.join(name)))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            format!(
                "NVRTC ({}) not found in {}/lib or bin",
                NVRTC_NAMES.join(", "),
                root.display()
            )
        })
}

/// Loads NVRTC and asks its version; returns "path (version)".
pub fn probe_nvrtc(roots: &[PathBuf]) -> Result<String, String> {
    let dirs: Vec<PathBuf> = roots
        .iter()
        .flat_map(|r| [r.join("lib64"), r.join("lib"), r.join("bin")])
        .collect();
    let (lib, path) = open_first(NVRTC_NAMES, &dirs)
        .map_err(|e| format!("NVRTC (the CUDA run-time compiler) not found: {e}"))?;
    let lib = NVRTC.get_or_init(|| lib);
    // SAFETY: nvrtcVersion(int*, int*) is NVRTC's documented C entry point.
    let version = unsafe {
        let f: libloading::Symbol<extern "C" fn(*mut c_int, *mut c_int) -> c_int> = lib
            .get(b"nvrtcVersion\0")
            .map_err(|e| format!("{path} lacks nvrtcVersion: {e}"))?;
        let (mut major, mut minor) = (0, 0);
        (f(&mut major, &mut minor) == 0).then(|| format!("{major}.{minor}"))
    };
    Ok(format!(
        "{path} ({})",
        version.unwrap_or_else(|| "unknown version".into())
    ))
}

/// Headers cubecl's kernels include; `crt/host_defines.h` is the one whose absence made
/// kernels silently slow.
pub const REQUIRED_HEADERS: &[&str] = &[
    "cuda.h",
    "cuda_runtime.h",
    "crt/host_defines.h",
    "cuda_fp16.h",
    "cuda_bf16.h",
];

/// The first `include` directory under `roots` that holds every required header.
pub fn find_include_dir(roots: &[PathBuf]) -> Result<PathBuf, String> {
    let mut nearest: Option<(PathBuf, Vec<&str>)> = None;
    for root in roots {
        for dir in [
            root.join("include"),
            root.join("targets/x86_64-linux/include"),
        ] {
            if !dir.is_dir() {
                continue;
            }
            let missing: Vec<&str> = REQUIRED_HEADERS
                .iter()
                .copied()
                .filter(|h| !dir.join(h).exists())
                .collect();
            if missing.is_empty() {
                return Ok(dir);
            }
            if nearest
                .as_ref()
                .is_none_or(|(_, m)| missing.len() < m.len())
            {
                nearest = Some((dir, missing));
            }
        }
    }
    Err(match nearest {
        Some((dir, missing)) => format!(
            "CUDA headers incomplete in {}: missing {}",
            dir.display(),
            missing.join(", ")
        ),
        None => {
            "CUDA headers not found (set CUDA_PATH, or run `cargo xtask cuda-runtime`)".to_string()
        }
    })
}

/// The whole CUDA picture. `built` says whether the CUDA backend is compiled in.
pub fn probe_cuda(built: bool, bundle: Option<&Path>) -> CudaStatus {
    let mut status = CudaStatus {
        built,
        ..CudaStatus::default()
    };
    let not_built = "this build has no CUDA support (rebuild with --features cuda)";
    // NVRTC and the headers are looked for even without a driver, so the report says
    // everything that is missing at once.
    let roots = cuda_roots(bundle);
    let nvrtc = probe_nvrtc(&roots);
    let include = find_include_dir(&roots);
    status.nvrtc = nvrtc.as_ref().ok().cloned();
    status.include_dir = include.as_ref().ok().map(|p| p.display().to_string());
    let mut problems: Vec<String> = Vec::new();
    if !built {
        problems.push(not_built.into());
    }
    match query_driver() {
        Ok(report) if report.devices.is_empty() => {
            status.driver_version = Some(report.driver_version);
            problems.push("the NVIDIA driver reports no CUDA device".into());
        }
        Ok(report) => {
            status.driver_version = Some(report.driver_version);
            status.devices = report.devices;
        }
        Err(reason) => problems.push(reason),
    }
    let runtime_problems: Vec<String> =
        [nvrtc.err(), include.err()].into_iter().flatten().collect();
    if !runtime_problems.is_empty() {
        problems.push(format!(
            "{}; CUDA needs NVRTC and the CUDA headers at run time",
            runtime_problems.join("; ")
        ));
    }
    if problems.is_empty() {
        status.available = true;
    } else {
        status.reason = Some(problems.join("; "));
    }
    status
}

/// Points cubecl at the per-user CUDA bundle (`cargo xtask cuda-runtime`, or the app's
/// download) when no `CUDA_PATH` is set: cubecl reads the CUDA headers' location only from
/// `CUDA_PATH` (or /usr/local/cuda, /opt/cuda) each time it compiles a kernel, and has no
/// option to pass it. Returns the directory it exported, if any.
///
/// # Safety
/// It may change the process environment, which is sound only while no other thread exists
/// that could read it: call it first thing in `main`, before anything spawns a thread.
pub unsafe fn export_cuda_path(bundle: Option<&Path>) -> Option<PathBuf> {
    if std::env::var_os("CUDA_PATH").is_some_and(|p| !p.is_empty()) {
        return None;
    }
    let include = find_include_dir(&[bundle?.to_path_buf()]).ok()?;
    let root = include.parent()?;
    // SAFETY: the caller guarantees that this thread is the only one (see above).
    unsafe { std::env::set_var("CUDA_PATH", root) };
    Some(root.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let include = dir.path().join("include");
        std::fs::create_dir_all(include.join("crt")).unwrap();
        for h in REQUIRED_HEADERS
            .iter()
            .filter(|h| **h != "crt/host_defines.h")
        {
            std::fs::write(include.join(h), "").unwrap();
        }
        let err = find_include_dir(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(err.contains("missing crt/host_defines.h"), "{err}");
        std::fs::write(include.join("crt/host_defines.h"), "").unwrap();
        assert_eq!(
            find_include_dir(&[dir.path().to_path_buf()]).unwrap(),
            include
        );
    }

    #[test]
    fn probing_never_panics_and_explains_itself() {
        let status = probe_cuda(false, None);
        if !status.available {
            assert!(status.reason.is_some(), "{status:?}");
        }
    }
}
