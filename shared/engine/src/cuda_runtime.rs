//! NVRTC and the CUDA headers for an installed app: CUDA kernels are compiled at run time, and
//! a machine with only the NVIDIA driver has neither. NVIDIA publishes them as redistributable
//! Python wheels on PyPI (nvidia-cuda-nvrtc, -runtime, -crt, -cccl); this module picks the
//! newest release of each for the driver's CUDA version (NVRTC newer than the driver emits PTX
//! the driver rejects), downloads the wheels with their published SHA-256 checked, and merges
//! their `include/` and `lib/` folders into the per-user bundle directory
//! (`forexgpt_device::kernel_cache::cuda_bundle_dir`), where the device probe and the CUDA
//! backend find them at the next start.
//!
//! Nothing half-done is ever visible: the wheels download into `<bundle>.download/` and unpack
//! into `<bundle>.partial/`; only a complete, checked bundle replaces the old one (renames: the
//! old one to `<bundle>.old/`, the new one into place, then the old one is removed). A
//! cancelled or failed fetch removes the scratch folders and leaves the old bundle as it was.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use forexgpt_device::probe::cuda_driver::{find_include_dir, find_nvrtc_file};
use forexgpt_protocol::{ProgressEvent, Stage};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::progress::{CancelToken, ProgressSink};

/// PyPI's JSON API; tests point the fetch at a local server instead.
pub const PYPI_JSON_API: &str = "https://pypi.org/pypi";

/// The wheels the CUDA backend needs: NVRTC (the compiler), the runtime headers, `crt/` (whose
/// absence made kernels ~3× slower) and CCCL (the headers cubecl's kernels include).
pub const PACKAGES: &[&str] = &[
    "nvidia-cuda-nvrtc",
    "nvidia-cuda-runtime",
    "nvidia-cuda-crt",
    "nvidia-cuda-cccl",
];

/// Why the CUDA runtime pieces could not be fetched. Nothing was installed in any case.
#[derive(Debug, thiserror::Error)]
pub enum CudaFetchError {
    #[error(
        "CUDA {0} is not supported by the redistributable packages this app fetches (CUDA 13.x); install the CUDA toolkit and set CUDA_PATH"
    )]
    UnsupportedCuda(String),
    #[error("the CUDA version '{0}' is not MAJOR.MINOR (e.g. 13.0)")]
    BadCudaVersion(String),
    #[error("could not reach {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url}: unexpected answer: {reason}")]
    Index { url: String, reason: String },
    #[error(
        "{package} has no release for CUDA {cuda} on {platform} (releases: {available}); update the NVIDIA driver or install the CUDA toolkit"
    )]
    NoRelease {
        package: String,
        cuda: String,
        platform: String,
        available: String,
    },
    #[error(
        "{file}: SHA-256 {got} does not match the published {want}; the download was corrupted or tampered with, nothing was installed"
    )]
    Checksum {
        file: String,
        want: String,
        got: String,
    },
    #[error("{file}: {got} bytes, but the index says {want}")]
    Size { file: String, want: u64, got: u64 },
    #[error("{file}: not a readable wheel: {reason}")]
    Corrupt { file: String, reason: String },
    #[error("the fetched packages are incomplete: {0}")]
    Incomplete(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("cancelled; nothing was installed")]
    Cancelled,
    #[error("no per-user data directory on this system to put the CUDA runtime in")]
    NoDataDir,
    #[error(
        "the NVIDIA driver's CUDA version is unknown ({0}); with a driver installed, name the version (e.g. 13.0)"
    )]
    NoDriver(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CudaFetchError {
    let context = context.into();
    move |source| CudaFetchError::Io { context, source }
}

/// The wheel platform tag of this build, as in wheel file names.
pub fn this_platform() -> &'static str {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "aarch64") => "manylinux aarch64",
        ("windows", _) => "win_amd64",
        _ => "manylinux x86_64",
    }
}

/// One wheel to fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct Wheel {
    pub package: String,
    pub version: String,
    pub file: String,
    pub url: String,
    pub sha256: String,
    pub size: u64,
}

/// What a fetch will download: one wheel per package.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchPlan {
    pub cuda: String,
    pub wheels: Vec<Wheel>,
}

impl FetchPlan {
    pub fn total_bytes(&self) -> u64 {
        self.wheels.iter().map(|w| w.size).sum()
    }
}

#[derive(Deserialize)]
struct Index {
    releases: std::collections::BTreeMap<String, Vec<IndexFile>>,
}

#[derive(Deserialize)]
struct IndexFile {
    filename: String,
    url: String,
    size: u64,
    digests: Digests,
    #[serde(default)]
    yanked: bool,
}

#[derive(Deserialize)]
struct Digests {
    sha256: String,
}

/// A release version as numbers, `None` for pre-releases and anything not all digits.
fn numeric_version(v: &str) -> Option<Vec<u64>> {
    v.split('.').map(|p| p.parse().ok()).collect()
}

/// "13.0" → (13, 0).
fn parse_cuda(cuda: &str) -> Result<(u64, u64), CudaFetchError> {
    let bad = || CudaFetchError::BadCudaVersion(cuda.to_string());
    let (major, minor) = cuda.trim().split_once('.').ok_or_else(bad)?;
    Ok((
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    ))
}

fn agent() -> ureq::Agent {
    // The system's trust store (and its verifier), not a bundled one: behind a company proxy
    // that re-signs HTTPS, only the system knows the proxy's certificate.
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// `reference` (a file's URL from the index) resolved against `base` (the index page's URL), as
/// a browser would: absolute URLs stay, `/path` keeps the base's host, and anything else is
/// relative to the base's folder (`../` climbs). PyPI gives absolute URLs; mirrors often don't.
fn resolve_url(base: &str, reference: &str) -> String {
    if reference.contains("://") {
        return reference.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if let Some(absolute) = reference.strip_prefix('/') {
        return format!("{scheme}://{host}/{absolute}");
    }
    let mut parts: Vec<&str> = path.split('/').collect();
    parts.pop(); // the base's own file name
    for segment in reference.split('/') {
        match segment {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            s => parts.push(s),
        }
    }
    let parts: Vec<&str> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    format!("{scheme}://{host}/{}", parts.join("/"))
}

fn http_error(url: &str, e: ureq::Error) -> CudaFetchError {
    CudaFetchError::Http {
        url: url.to_string(),
        reason: e.to_string(),
    }
}

/// Asks the index (`api`: PyPI's JSON API or a mirror of it) for the newest release of each
/// package for CUDA `cuda` ("13.0") on `platform` (see [`this_platform`]).
pub fn plan(api: &str, cuda: &str, platform: &str) -> Result<FetchPlan, CudaFetchError> {
    let (major, minor) = parse_cuda(cuda)?;
    if major != 13 {
        return Err(CudaFetchError::UnsupportedCuda(cuda.to_string()));
    }
    let agent = agent();
    let tags: Vec<&str> = platform.split_whitespace().collect();
    let mut wheels = Vec::new();
    for package in PACKAGES {
        let url = format!("{}/{package}/json", api.trim_end_matches('/'));
        let index: Index = agent
            .get(&url)
            .call()
            .map_err(|e| http_error(&url, e))?
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_json()
            .map_err(|e| CudaFetchError::Index {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let best = index
            .releases
            .iter()
            .filter_map(|(v, files)| {
                let n = numeric_version(v)?;
                (n.len() >= 3 && n[0] == major && n[1] == minor).then_some((n, v, files))
            })
            .filter_map(|(n, v, files)| {
                let file = files.iter().find(|f| {
                    // A plain file name: it names the download in our scratch folder.
                    let plain = !f.filename.contains(['/', '\\']) && !f.filename.starts_with('.');
                    plain
                        && !f.yanked
                        && f.filename.ends_with(".whl")
                        && tags.iter().all(|t| f.filename.contains(t))
                })?;
                Some((n, v, file))
            })
            .max_by(|a, b| a.0.cmp(&b.0));
        let Some((_, version, file)) = best else {
            let mut available: Vec<&String> = index.releases.keys().collect();
            available.sort_by_key(|v| numeric_version(v));
            let tail: Vec<&str> = available.iter().rev().take(6).map(|s| s.as_str()).collect();
            return Err(CudaFetchError::NoRelease {
                package: package.to_string(),
                cuda: cuda.to_string(),
                platform: platform.to_string(),
                available: if tail.is_empty() {
                    "none".into()
                } else {
                    tail.join(", ")
                },
            });
        };
        wheels.push(Wheel {
            package: package.to_string(),
            version: version.clone(),
            file: file.filename.clone(),
            url: resolve_url(&url, &file.url),
            sha256: file.digests.sha256.to_ascii_lowercase(),
            size: file.size,
        });
    }
    Ok(FetchPlan {
        cuda: format!("{major}.{minor}"),
        wheels,
    })
}

/// The CUDA version to fetch for: `requested`, else the driver's (`driver` is asked only
/// then: the driver's CUDA version, or why it is unknown).
pub fn cuda_version_for(
    requested: Option<&str>,
    driver: impl FnOnce() -> Result<String, String>,
) -> Result<String, CudaFetchError> {
    if let Some(v) = requested {
        let (major, minor) = parse_cuda(v)?;
        return Ok(format!("{major}.{minor}"));
    }
    driver().map_err(CudaFetchError::NoDriver)
}

/// Plans and installs the bundle for this user (`forexgpt_device::kernel_cache`): what the
/// CLI's `devices --fetch-cuda` and the app's Devices tab run. Returns the plan and NVRTC's
/// installed path.
pub fn fetch_for_user(
    cuda: &str,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<(FetchPlan, PathBuf), CudaFetchError> {
    let dest =
        forexgpt_device::kernel_cache::cuda_bundle_target().ok_or(CudaFetchError::NoDataDir)?;
    let plan = plan(PYPI_JSON_API, cuda, this_platform())?;
    if cancel.is_cancelled() {
        return Err(CudaFetchError::Cancelled);
    }
    let nvrtc = install(&plan, &dest, progress, cancel)?;
    Ok((plan, nvrtc))
}

/// The protocol's report of a finished fetch.
pub fn report(plan: &FetchPlan, nvrtc: &Path) -> forexgpt_protocol::CudaFetchReport {
    forexgpt_protocol::CudaFetchReport {
        cuda_version: plan.cuda.clone(),
        packages: plan
            .wheels
            .iter()
            .map(|w| forexgpt_protocol::FetchedPackage {
                package: w.package.clone(),
                version: w.version.clone(),
                bytes: w.size,
                sha256: w.sha256.clone(),
            })
            .collect(),
        nvrtc: nvrtc.display().to_string(),
    }
}

/// Removes a scratch directory when dropped (the fetch's downloads and partial bundle).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sibling(dest: &Path, suffix: &str) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dest.with_file_name(name)
}

/// Downloads and checks every wheel of `plan`, unpacks them and installs the bundle at `dest`
/// (replacing an older one only when the new one is complete). Progress: bytes downloaded of
/// the plan's total. Returns the installed NVRTC library's path.
pub fn install(
    plan: &FetchPlan,
    dest: &Path,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<PathBuf, CudaFetchError> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    let downloads = Scratch(sibling(dest, ".download"));
    let staging = Scratch(sibling(dest, ".partial"));
    for dir in [&downloads.0, &staging.0] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    let total = plan.total_bytes();
    let mut done = 0u64;
    let agent = agent();
    for wheel in &plan.wheels {
        let path = downloads.0.join(&wheel.file);
        download(&agent, wheel, &path, total, &mut done, progress, cancel)?;
        unpack(&path, &wheel.file, &staging.0)?;
    }
    if cancel.is_cancelled() {
        return Err(CudaFetchError::Cancelled);
    }
    let include =
        find_include_dir(std::slice::from_ref(&staging.0)).map_err(CudaFetchError::Incomplete)?;
    let nvrtc = find_nvrtc_file(&staging.0).map_err(CudaFetchError::Incomplete)?;
    let nvrtc = dest.join(nvrtc.strip_prefix(&staging.0).unwrap_or(&nvrtc));
    tracing::info!(include = %include.display(), nvrtc = %nvrtc.display(), "CUDA runtime bundle complete");
    // The old bundle steps aside (and is put back if the new one cannot take its place).
    let old = Scratch(sibling(dest, ".old"));
    let _ = std::fs::remove_dir_all(&old.0);
    let had_old = dest.exists();
    if had_old {
        std::fs::rename(dest, &old.0)
            .map_err(io(format!("moving the old {} aside", dest.display())))?;
    }
    if let Err(e) = std::fs::rename(&staging.0, dest) {
        if had_old {
            let _ = std::fs::rename(&old.0, dest);
        }
        return Err(io(format!(
            "moving {} to {}",
            staging.0.display(),
            dest.display()
        ))(e));
    }
    Ok(nvrtc)
}

fn download(
    agent: &ureq::Agent,
    wheel: &Wheel,
    path: &Path,
    total: u64,
    done: &mut u64,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<(), CudaFetchError> {
    let message = || Some(format!("{} {}", wheel.package, wheel.version));
    progress.report(ProgressEvent::new(
        Stage::Download,
        *done,
        Some(total),
        message(),
    ));
    let mut response = agent
        .get(&wheel.url)
        .call()
        .map_err(|e| http_error(&wheel.url, e))?;
    let mut body = response
        .body_mut()
        .with_config()
        .limit(wheel.size.saturating_add(1))
        .reader();
    let mut out =
        BufWriter::new(File::create(path).map_err(io(format!("creating {}", path.display())))?);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    let mut last_report = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Err(CudaFetchError::Cancelled);
        }
        let n = body.read(&mut buf).map_err(|e| CudaFetchError::Http {
            url: wheel.url.clone(),
            reason: e.to_string(),
        })?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io(format!("writing {}", path.display())))?;
        got += n as u64;
        if got - last_report >= 1 << 20 {
            last_report = got;
            progress.report(ProgressEvent::new(
                Stage::Download,
                *done + got,
                Some(total),
                message(),
            ));
        }
    }
    out.flush()
        .map_err(io(format!("writing {}", path.display())))?;
    if got != wheel.size {
        return Err(CudaFetchError::Size {
            file: wheel.file.clone(),
            want: wheel.size,
            got,
        });
    }
    let digest = crate::artifact::hex(&hash.finalize());
    if digest != wheel.sha256 {
        return Err(CudaFetchError::Checksum {
            file: wheel.file.clone(),
            want: wheel.sha256.clone(),
            got: digest,
        });
    }
    *done += got;
    progress.report(ProgressEvent::new(
        Stage::Download,
        *done,
        Some(total),
        message(),
    ));
    Ok(())
}

/// Where a wheel entry goes in the bundle: anything under an `include/` folder to
/// `include/…`, under `lib/` or `lib64/` to `lib/…`, under `bin/` to `bin/…`; static libraries, CMake files and
/// everything else (Python modules, licences) are skipped.
fn bundle_path(entry: &Path) -> Option<PathBuf> {
    let parts: Vec<&str> = entry
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let at = parts
        .iter()
        .position(|p| matches!(*p, "include" | "lib" | "lib64" | "bin"))?;
    let rest = &parts[at + 1..];
    if rest.is_empty() || rest.contains(&"cmake") || rest.last()?.ends_with(".a") {
        return None;
    }
    let top = match parts[at] {
        "include" => "include",
        // Windows wheels keep their DLLs in bin/.
        "bin" => "bin",
        _ => "lib",
    };
    Some(rest.iter().fold(PathBuf::from(top), |p, s| p.join(s)))
}

fn unpack(wheel: &Path, name: &str, staging: &Path) -> Result<(), CudaFetchError> {
    let corrupt = |reason: String| CudaFetchError::Corrupt {
        file: name.to_string(),
        reason,
    };
    let file = File::open(wheel).map_err(io(format!("opening {}", wheel.display())))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| corrupt(e.to_string()))?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| corrupt(e.to_string()))?;
        if entry.is_dir() {
            continue;
        }
        // `enclosed_name` refuses absolute paths and `..`: nothing lands outside the bundle.
        let Some(inner) = entry.enclosed_name() else {
            return Err(corrupt(format!("unsafe path '{}'", entry.name())));
        };
        let Some(relative) = bundle_path(&inner) else {
            continue;
        };
        let target = staging.join(relative);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        let mut out =
            File::create(&target).map_err(io(format!("creating {}", target.display())))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| corrupt(e.to_string()))?;
        #[cfg(unix)]
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            let _ =
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode & 0o755));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_entries_land_in_include_and_lib() {
        let cases = [
            ("nvidia/cu13/include/cuda.h", Some("include/cuda.h")),
            (
                "nvidia/cu13/include/crt/host_defines.h",
                Some("include/crt/host_defines.h"),
            ),
            ("nvidia/cu13/lib/libnvrtc.so.13", Some("lib/libnvrtc.so.13")),
            ("nvidia/cuda_nvrtc/lib64/libx.so", Some("lib/libx.so")),
            ("nvidia/cu13/lib/libcudart_static.a", None),
            ("nvidia/cu13/lib/cmake/thing.cmake", None),
            ("nvidia/__init__.py", None),
            ("nvidia_cuda_nvrtc-13.0.88.dist-info/RECORD", None),
            ("nvidia/cu13/include", None),
        ];
        for (entry, want) in cases {
            assert_eq!(
                bundle_path(Path::new(entry)),
                want.map(PathBuf::from),
                "{entry}"
            );
        }
    }

    #[test]
    fn file_urls_resolve_against_the_index_page() {
        let base = "https://pypi.org/pypi/nvidia-cuda-nvrtc/json";
        for (reference, want) in [
            ("https://files.example/a.whl", "https://files.example/a.whl"),
            (
                "../../packages/packages/c3/x.whl",
                "https://pypi.org/packages/packages/c3/x.whl",
            ),
            ("/files/x.whl", "https://pypi.org/files/x.whl"),
            ("x.whl", "https://pypi.org/pypi/nvidia-cuda-nvrtc/x.whl"),
            (
                "./sub/../x.whl",
                "https://pypi.org/pypi/nvidia-cuda-nvrtc/x.whl",
            ),
        ] {
            assert_eq!(resolve_url(base, reference), want, "{reference}");
        }
        assert_eq!(
            resolve_url(
                "http://127.0.0.1:8080/nvidia-cuda-crt/json",
                "../files/w.whl"
            ),
            "http://127.0.0.1:8080/files/w.whl"
        );
    }

    #[test]
    fn versions_and_cuda_strings() {
        assert_eq!(numeric_version("13.0.88"), Some(vec![13, 0, 88]));
        assert_eq!(numeric_version("13.4.46rc1"), None);
        assert_eq!(numeric_version("0.0.1.dev4"), None);
        assert_eq!(parse_cuda("13.0").unwrap(), (13, 0));
        assert!(matches!(
            parse_cuda("thirteen"),
            Err(CudaFetchError::BadCudaVersion(_))
        ));
        assert!(matches!(
            plan("http://127.0.0.1:9", "12.4", "manylinux x86_64"),
            Err(CudaFetchError::UnsupportedCuda(_))
        ));
    }
}
