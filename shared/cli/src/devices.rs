//! `forexgpt devices`: what this machine offers for computing, and an optional self-check.

use anyhow::Result;
use forexgpt_device::probe::cuda_driver::query_driver;
use forexgpt_device::testing::test_devices;
use forexgpt_device::{DeviceCheck, DeviceManager, check_device};
use forexgpt_protocol::DeviceInfo;

use forexgpt_engine::cuda_runtime;

use crate::output;
use crate::progress::{BarProgress, ctrl_c_token};

/// Matrix size of the self-check.
const CHECK_SIZE: usize = 64;

/// `devices --fetch-cuda`: NVRTC and the CUDA headers for this user, with a progress bar;
/// Ctrl-C cancels and installs nothing.
pub fn fetch_cuda(json: bool, requested: Option<&str>) -> Result<()> {
    // Only the driver is asked (and only without a named version): no whole device probe.
    let cuda = cuda_runtime::cuda_version_for(requested, || {
        query_driver().map(|report| report.driver_version)
    })?;
    if !json {
        outln!("fetching NVRTC and the CUDA headers for CUDA {cuda} from PyPI…");
    }
    let progress = BarProgress::new(json);
    let cancel = ctrl_c_token();
    let fetched = cuda_runtime::fetch_for_user(&cuda, &progress, &cancel);
    progress.finish();
    let (plan, nvrtc) = fetched?;
    if json {
        return output::print_json(&cuda_runtime::report(&plan, &nvrtc));
    }
    for w in &plan.wheels {
        outln!(
            "{:<22} {:<12} {:>6.1} MB  sha256 ok",
            w.package,
            w.version,
            w.size as f64 / 1e6
        );
    }
    outln!(
        "installed: {} (CUDA is used from the next start)",
        nvrtc.display()
    );
    Ok(())
}

pub fn devices(json: bool, check: bool) -> Result<()> {
    let manager = DeviceManager::probe();
    let checks: Vec<DeviceCheck> = if check {
        let (devices, skipped) = test_devices(&manager);
        if let Some(cache) = manager
            .kernel_cache()
            .filter(|c| c.cold && devices.iter().any(|d| d.is_gpu()))
        {
            eprintln!(
                "compiling GPU kernels (first run of this build on this machine; cached in {})…",
                cache.dir.display()
            );
        }
        if !json {
            for reason in skipped {
                outln!("check skipped: {reason}");
            }
        }
        devices
            .iter()
            .map(|d| check_device(d, CHECK_SIZE))
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let cache = manager
        .kernel_cache()
        .map(|c| serde_json::json!({ "dir": c.dir, "cold": c.cold }));
    if json {
        let mut value = serde_json::to_value(manager.info())?;
        value["kernel_cache"] = cache.unwrap_or(serde_json::Value::Null);
        if check {
            value["checks"] = serde_json::to_value(&checks)?;
        }
        return output::print_json(&value);
    }
    print_info(manager.info());
    if let Some(c) = manager.kernel_cache() {
        outln!(
            "{:<8} {}{}",
            "kernels",
            c.dir.display(),
            if c.cold {
                " (empty: the first GPU run compiles kernels)"
            } else {
                ""
            }
        );
    }
    for c in &checks {
        outln!(
            "check    {:<40} {}  matmul rel.err {:.1e}, elementwise {:.1e}, {:.0} ms",
            c.device,
            if c.passed { "ok" } else { "FAILED" },
            c.matmul_max_rel_error,
            c.elementwise_max_rel_error,
            c.elapsed_ms
        );
    }
    if checks.iter().any(|c| !c.passed) {
        anyhow::bail!("a device gave wrong results");
    }
    Ok(())
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

fn print_info(info: &DeviceInfo) {
    outln!(
        "{:<8} {} ({} threads, {})",
        "cpu",
        info.cpu.model,
        info.cpu.logical_threads,
        info.cpu.arch
    );
    let cuda = &info.cuda;
    if cuda.devices.is_empty() {
        outln!(
            "{:<8} unavailable: {}",
            "cuda",
            cuda.reason.as_deref().unwrap_or("unknown")
        );
    } else {
        let driver = cuda.driver_version.as_deref().unwrap_or("?");
        let state = if cuda.available {
            "ready".to_string()
        } else {
            format!("unavailable: {}", cuda.reason.as_deref().unwrap_or("?"))
        };
        outln!("{:<8} driver {driver}, {}", "cuda", state);
        for d in &cuda.devices {
            outln!(
                "  cuda:{}  {}  {:.1} GiB  compute {}.{}",
                d.index,
                d.name,
                gib(d.total_memory_bytes),
                d.compute_capability.0,
                d.compute_capability.1
            );
        }
        if let Some(nvrtc) = &cuda.nvrtc {
            outln!("  nvrtc   {nvrtc}");
        }
        if let Some(include) = &cuda.include_dir {
            outln!("  headers {include}");
        }
    }
    let wgpu = &info.wgpu;
    if wgpu.adapters.is_empty() {
        outln!(
            "{:<8} unavailable: {}",
            "wgpu",
            wgpu.reason.as_deref().unwrap_or("unknown")
        );
    } else {
        outln!(
            "{:<8} {}",
            "wgpu",
            wgpu.reason.as_deref().unwrap_or("ready")
        );
        for a in &wgpu.adapters {
            outln!(
                "  wgpu:{}  {}  {:?} on {}  {}",
                a.index,
                a.name,
                a.adapter_type,
                a.api,
                a.driver
            );
        }
    }
    outln!(
        "{:<8} {}",
        "metal",
        if info.apple_gpu_available {
            "Apple GPU available"
        } else {
            "no Apple GPU (Metal)"
        }
    );
    outln!(
        "{:<8} {}{}",
        "auto",
        info.auto.label,
        info.auto
            .notice
            .as_deref()
            .map(|n| format!("  ({n})"))
            .unwrap_or_default()
    );
    outln!(
        "{:<8} {}",
        "",
        "for a job of known size, auto (and --use-gpu) run it where it is expected to take least \
         time, the CPU included; `forexgpt bench` fits the estimates to this machine"
    );
}
