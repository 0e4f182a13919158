//! The CUDA-runtime fetch against a local stand-in for PyPI (an HTTP server on 127.0.0.1 with
//! a JSON index and wheels built here): the right release is picked, the bundle is complete,
//! and every failure (bad checksum, wrong size, missing headers, unsafe paths, cancel) installs
//! nothing and leaves an older bundle as it was.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Cursor, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use forexgpt_engine::cuda_runtime::{CudaFetchError, FetchPlan, PACKAGES, install, plan};
use forexgpt_engine::progress::{CancelToken, NoProgress, ProgressSink};
use forexgpt_protocol::{ProgressEvent, Stage};
use sha2::{Digest, Sha256};

const PLATFORM: &str = "manylinux x86_64";

/// A wheel (a zip) holding `files` (path → contents).
fn wheel(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (path, data) in files {
        zip.start_file(*path, options).expect("start_file");
        zip.write_all(data).expect("write");
    }
    zip.finish().expect("finish").into_inner()
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The wheels of a complete CUDA 13.0 bundle, per package.
fn good_wheels() -> HashMap<&'static str, Vec<u8>> {
    let mut w = HashMap::new();
    w.insert(
        "nvidia-cuda-nvrtc",
        wheel(&[
            ("nvidia/cu13/lib/libnvrtc.so.13", b"\x7fELF fake nvrtc"),
            ("nvidia/cu13/include/nvrtc.h", b"// nvrtc"),
            ("nvidia/__init__.py", b""),
            ("nvidia_cuda_nvrtc-13.0.88.dist-info/RECORD", b""),
        ]),
    );
    w.insert(
        "nvidia-cuda-runtime",
        wheel(&[
            ("nvidia/cu13/include/cuda.h", b"// cuda"),
            ("nvidia/cu13/include/cuda_runtime.h", b"// runtime"),
            ("nvidia/cu13/include/cuda_fp16.h", b"// fp16"),
            ("nvidia/cu13/include/cuda_bf16.h", b"// bf16"),
            ("nvidia/cu13/lib/libcudart_static.a", b"static"),
        ]),
    );
    w.insert(
        "nvidia-cuda-crt",
        wheel(&[("nvidia/cu13/include/crt/host_defines.h", b"// crt")]),
    );
    w.insert(
        "nvidia-cuda-cccl",
        wheel(&[("nvidia/cu13/include/cccl/cuda/std/version", b"// cccl")]),
    );
    w
}

/// An index of every package (several releases: older, newer minor, a pre-release, another
/// platform) and a server for it and the wheels; the index lies about `lie`'s digest.
fn stand_in(wheels: &HashMap<&'static str, Vec<u8>>, lie: Option<&str>) -> String {
    let mut routes = HashMap::new();
    // The index names the wheels' URLs, so the server's address comes first.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    for package in PACKAGES {
        let data = &wheels[package];
        let stem = package.replace('-', "_");
        let file = |version: &str, tag: &str| {
            let name = format!("{stem}-{version}-py3-none-{tag}.whl");
            let digest = if lie == Some(*package) {
                sha256(b"something else")
            } else {
                sha256(data)
            };
            // PyPI gives absolute URLs, mirrors often relative ones: both kinds are here.
            let url = if package.ends_with("nvrtc") || package.ends_with("crt") {
                format!("../files/{name}")
            } else {
                format!("{base}/files/{name}")
            };
            serde_json::json!({
                "filename": name,
                "url": url,
                "size": data.len(),
                "digests": { "sha256": digest },
                "yanked": false,
            })
        };
        let linux = "manylinux_2_17_x86_64";
        let index = serde_json::json!({
            "releases": {
                "13.0.48": [file("13.0.48", linux)],
                "13.0.88": [file("13.0.88", "win_amd64"), file("13.0.88", linux)],
                "13.1.80": [file("13.1.80", linux)],
                "13.4.46rc1": [file("13.4.46rc1", linux)],
                // A file name that would leave the download folder: never chosen.
                "13.0.99": [{
                    "filename": format!("../../{stem}-13.0.99-py3-none-{linux}.whl"),
                    "url": format!("{base}/files/evil.whl"),
                    "size": data.len(),
                    "digests": { "sha256": sha256(data) },
                }],
                "0.0.1.dev4": [],
            }
        });
        routes.insert(
            format!("/{package}/json"),
            serde_json::to_vec(&index).expect("json"),
        );
        for version in ["13.0.48", "13.0.88", "13.1.80", "13.4.46rc1"] {
            routes.insert(
                format!("/files/{stem}-{version}-py3-none-{linux}.whl"),
                data.clone(),
            );
        }
    }
    serve(listener, routes);
    base
}

/// Serves `routes` (path → body) over HTTP/1.1 on `listener`, one request per connection.
fn serve(listener: TcpListener, routes: HashMap<String, Vec<u8>>) {
    let routes = Arc::new(routes);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let routes = Arc::clone(&routes);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    return;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = match routes.get(&path) {
                    Some(body) => ("200 OK", body.clone()),
                    None => ("404 Not Found", b"not found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
}

/// An older bundle at `dest`, to prove a failed fetch keeps it.
fn old_bundle(dest: &Path) {
    std::fs::create_dir_all(dest.join("include")).expect("mkdir");
    std::fs::write(dest.join("include/OLD"), "old bundle").expect("write");
}

fn nothing_partial(dest: &Path) {
    let parent = dest.parent().expect("parent");
    let names: Vec<String> = std::fs::read_dir(parent)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| n == "cuda-runtime"),
        "scratch left behind: {names:?}"
    );
}

fn planned(base: &str) -> FetchPlan {
    plan(base, "13.0", PLATFORM).expect("plan")
}

#[test]
fn the_newest_release_for_the_drivers_cuda_is_installed_whole() {
    let wheels = good_wheels();
    let base = stand_in(&wheels, None);
    let plan = planned(&base);
    assert_eq!(plan.cuda, "13.0");
    assert_eq!(plan.wheels.len(), PACKAGES.len());
    for w in &plan.wheels {
        // 13.0.88 beats 13.0.48; 13.1 and the pre-release are for other CUDA versions; the
        // Windows wheel of 13.0.88 is not this platform's; 13.0.99's file name has a path.
        assert_eq!(w.version, "13.0.88", "{}", w.package);
        assert!(w.file.contains("manylinux"), "{}", w.file);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("cuda-runtime");
    old_bundle(&dest);
    let events = Mutex::new(Vec::<ProgressEvent>::new());
    struct Record<'a>(&'a Mutex<Vec<ProgressEvent>>);
    impl ProgressSink for Record<'_> {
        fn report(&self, event: ProgressEvent) {
            self.0.lock().expect("lock").push(event);
        }
    }
    let nvrtc = install(&plan, &dest, &Record(&events), &CancelToken::new()).expect("install");
    assert_eq!(nvrtc, dest.join("lib/libnvrtc.so.13"));
    for header in [
        "cuda.h",
        "cuda_runtime.h",
        "crt/host_defines.h",
        "cuda_fp16.h",
        "cuda_bf16.h",
        "nvrtc.h",
        "cccl/cuda/std/version",
    ] {
        assert!(dest.join("include").join(header).is_file(), "{header}");
    }
    assert!(
        !dest.join("include/OLD").exists(),
        "the old bundle was replaced"
    );
    assert!(
        !dest.join("lib/libcudart_static.a").exists(),
        "static libraries are skipped"
    );
    assert!(!dest.join("nvidia").exists() && !dest.join("__init__.py").exists());
    nothing_partial(&dest);
    let events = events.into_inner().expect("lock");
    let total = plan.total_bytes();
    assert!(
        events
            .iter()
            .all(|e| e.stage == Stage::Download && e.total == Some(total))
    );
    assert_eq!(
        events.last().map(|e| e.done),
        Some(total),
        "progress ends at the total"
    );
    // The device probe finds the headers there.
    forexgpt_device::probe::cuda_driver::find_include_dir(std::slice::from_ref(&dest))
        .expect("the probe finds the bundle's headers");
}

fn assert_failed_cleanly(dest: &Path) {
    assert_eq!(
        std::fs::read_to_string(dest.join("include/OLD")).expect("old bundle kept"),
        "old bundle"
    );
    nothing_partial(dest);
}

#[test]
fn a_wheel_whose_checksum_does_not_match_installs_nothing() {
    let wheels = good_wheels();
    let base = stand_in(&wheels, Some("nvidia-cuda-crt"));
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("cuda-runtime");
    old_bundle(&dest);
    let err = install(&planned(&base), &dest, &NoProgress, &CancelToken::new()).unwrap_err();
    match &err {
        CudaFetchError::Checksum { file, .. } => {
            assert!(file.starts_with("nvidia_cuda_crt-13.0.88"))
        }
        other => panic!("expected a checksum error, got {other}"),
    }
    assert!(err.to_string().contains("nothing was installed"), "{err}");
    assert_failed_cleanly(&dest);
}

#[test]
fn missing_headers_unsafe_paths_and_short_downloads_install_nothing() {
    // crt's wheel without its header: the bundle would make kernels slow, so it is refused.
    let mut wheels = good_wheels();
    wheels.insert(
        "nvidia-cuda-crt",
        wheel(&[("nvidia/cu13/include/other.h", b"//")]),
    );
    let base = stand_in(&wheels, None);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("cuda-runtime");
    old_bundle(&dest);
    let err = install(&planned(&base), &dest, &NoProgress, &CancelToken::new()).unwrap_err();
    assert!(
        matches!(&err, CudaFetchError::Incomplete(m) if m.contains("crt/host_defines.h")),
        "{err}"
    );
    assert_failed_cleanly(&dest);

    // An entry that climbs out of the bundle.
    let mut wheels = good_wheels();
    wheels.insert(
        "nvidia-cuda-cccl",
        wheel(&[("nvidia/cu13/include/../../../../escape.h", b"//")]),
    );
    let base = stand_in(&wheels, None);
    let err = install(&planned(&base), &dest, &NoProgress, &CancelToken::new()).unwrap_err();
    assert!(matches!(&err, CudaFetchError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("unsafe path"), "{err}");
    assert!(!dir.path().join("escape.h").exists());
    assert_failed_cleanly(&dest);

    // The index promises more bytes than the server sends.
    let wheels = good_wheels();
    let base = stand_in(&wheels, None);
    let mut plan = planned(&base);
    plan.wheels[1].size += 10;
    let err = install(&plan, &dest, &NoProgress, &CancelToken::new()).unwrap_err();
    assert!(matches!(&err, CudaFetchError::Size { .. }), "{err}");
    assert_failed_cleanly(&dest);
}

#[test]
fn cancelling_mid_download_installs_nothing() {
    let wheels = good_wheels();
    let base = stand_in(&wheels, None);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("cuda-runtime");
    old_bundle(&dest);
    let cancel = CancelToken::new();
    struct CancelOnThird(CancelToken, Mutex<u32>);
    impl ProgressSink for CancelOnThird {
        fn report(&self, _event: ProgressEvent) {
            let mut seen = self.1.lock().expect("lock");
            *seen += 1;
            if *seen == 3 {
                self.0.cancel();
            }
        }
    }
    let sink = CancelOnThird(cancel.clone(), Mutex::new(0));
    let err = install(&planned(&base), &dest, &sink, &cancel).unwrap_err();
    assert!(matches!(err, CudaFetchError::Cancelled), "{err}");
    assert_failed_cleanly(&dest);
}

#[test]
fn a_cuda_version_without_packages_or_an_unreachable_index_is_a_clear_error() {
    let base = stand_in(&good_wheels(), None);
    let err = plan(&base, "13.7", PLATFORM).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CudaFetchError::NoRelease { .. }), "{text}");
    assert!(
        text.contains("nvidia-cuda-nvrtc") && text.contains("13.7") && text.contains("13.1.80"),
        "{text}"
    );
    let err = plan(&format!("{base}/missing"), "13.0", PLATFORM).unwrap_err();
    assert!(matches!(err, CudaFetchError::Http { .. }), "{err}");
    assert!(
        err.to_string().contains("/missing/nvidia-cuda-nvrtc/json"),
        "{err}"
    );
}
