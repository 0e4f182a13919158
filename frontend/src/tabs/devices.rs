//! The Devices tab: what the machine has and what `auto` picks, with the reason for every GPU
//! that cannot be used.

use forexgpt_protocol::{AdapterType, CudaFetchReport, CudaFetchRequest, DeviceInfo};
use leptos::prelude::*;

use crate::app::Shared;
use crate::format;
use crate::ipc::JobControl;
use crate::widgets::{ErrorBox, JobProgressView, empty_row, gpu_unavailable};

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn adapter_type(t: AdapterType) -> &'static str {
    match t {
        AdapterType::DiscreteGpu => "discrete GPU",
        AdapterType::IntegratedGpu => "integrated GPU",
        AdapterType::VirtualGpu => "virtual GPU",
        AdapterType::Cpu => "software (CPU)",
        AdapterType::Other => "other",
    }
}

fn device_tables(info: DeviceInfo) -> impl IntoView {
    let gpu_note = gpu_unavailable(&info).map(|reason| {
        view! { <p class="notice" data-test="gpu-unavailable">"No GPU is used: "{reason}</p> }
    });
    let no_cuda = info.cuda.devices.is_empty().then(|| {
        let why = if info.cuda.built {
            "No CUDA devices: NVIDIA GPUs appear here once the driver, NVRTC and the CUDA headers are found (see “why not” above)."
        } else {
            "No CUDA devices: this build has no CUDA support; a build with CUDA lists NVIDIA GPUs here."
        };
        empty_row(4, "cuda-devices-empty", why.into())
    });
    let no_adapters = info.wgpu.adapters.is_empty().then(|| {
        let why = if info.wgpu.built {
            "No wgpu adapters: no Vulkan, Metal or DX12 driver answered (see “why not” above)."
        } else {
            "No wgpu adapters: this build has no wgpu support."
        };
        empty_row(5, "wgpu-adapters-empty", why.into())
    });
    let cuda_devices = info
        .cuda
        .devices
        .iter()
        .map(|d| {
            view! {
                <tr>
                    <td>{format!("cuda:{}", d.index)}</td>
                    <td>{d.name.clone()}</td>
                    <td>{format::bytes(d.total_memory_bytes)}</td>
                    <td>{format!("{}.{}", d.compute_capability.0, d.compute_capability.1)}</td>
                </tr>
            }
        })
        .collect_view();
    let adapters = info
        .wgpu
        .adapters
        .iter()
        .map(|a| {
            view! {
                <tr>
                    <td>{format!("wgpu:{}", a.index)}</td>
                    <td>{a.name.clone()}</td>
                    <td>{a.api.clone()}</td>
                    <td>{adapter_type(a.adapter_type)}</td>
                    <td>{a.driver.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    let reason = |r: &Option<String>| r.clone().unwrap_or_else(|| "—".into());
    // A CUDA build that lacks NVRTC or the headers can fetch them.
    let fetch = (info.cuda.built && (info.cuda.nvrtc.is_none() || info.cuda.include_dir.is_none()))
        .then(|| view! { <CudaFetch driver=info.cuda.driver_version.clone() /> });
    view! {
        <h2>"This machine"</h2>
        <table class="kv" data-test="device-summary">
            <tr><th>"auto runs on"</th><td data-test="auto-device">{info.auto.label.clone()}</td></tr>
            <tr><th>"CUDA available"</th><td>{yes_no(info.cuda_available)}</td></tr>
            <tr><th>"CUDA devices"</th><td>{info.device_count}</td></tr>
            <tr><th>"GPU"</th><td>{info.device_name.clone().unwrap_or_else(|| "—".into())}</td></tr>
            <tr><th>"VRAM"</th><td>{info.vram_bytes.map_or("—".into(), format::bytes)}</td></tr>
            <tr><th>"Apple GPU (Metal)"</th><td>{yes_no(info.apple_gpu_available)}</td></tr>
            <tr><th>"CPU"</th><td data-test="cpu-model">{format!("{} ({}, {} threads)", info.cpu.model, info.cpu.arch, info.cpu.logical_threads)}</td></tr>
        </table>
        {gpu_note}
        <h2>"CUDA"</h2>
        <table class="kv">
            <tr><th>"built with CUDA"</th><td data-test="cuda-built">{yes_no(info.cuda.built)}</td></tr>
            <tr><th>"driver"</th><td>{info.cuda.driver_version.clone().unwrap_or_else(|| "—".into())}</td></tr>
            <tr><th>"NVRTC"</th><td>{info.cuda.nvrtc.clone().unwrap_or_else(|| "—".into())}</td></tr>
            <tr><th>"CUDA headers"</th><td>{info.cuda.include_dir.clone().unwrap_or_else(|| "—".into())}</td></tr>
            <tr><th>"why not"</th><td data-test="cuda-reason">{reason(&info.cuda.reason)}</td></tr>
        </table>
        <table class="list">
            <thead><tr><th>"device"</th><th>"name"</th><th>"memory"</th><th>"compute capability"</th></tr></thead>
            <tbody>{cuda_devices}{no_cuda}</tbody>
        </table>
        {fetch}
        <h2>"wgpu (Vulkan, Metal, DX12)"</h2>
        <table class="kv">
            <tr><th>"built with wgpu"</th><td>{yes_no(info.wgpu.built)}</td></tr>
            <tr><th>"usable hardware adapter"</th><td>{yes_no(info.wgpu.available)}</td></tr>
            <tr><th>"why not"</th><td data-test="wgpu-reason">{reason(&info.wgpu.reason)}</td></tr>
        </table>
        <table class="list">
            <thead><tr><th>"adapter"</th><th>"name"</th><th>"API"</th><th>"type"</th><th>"driver"</th></tr></thead>
            <tbody>{adapters}{no_adapters}</tbody>
        </table>
    }
}

/// Downloads NVRTC and the CUDA headers for the driver's CUDA version (NVIDIA's packages,
/// checksums verified), with progress and Cancel; CUDA uses them from the next start.
#[component]
fn CudaFetch(driver: Option<String>) -> impl IntoView {
    let job = JobControl::new();
    let report = RwSignal::new(None::<CudaFetchReport>);
    let has_driver = driver.is_some();
    let what = match &driver {
        Some(v) => format!(
            "CUDA needs NVRTC and the CUDA headers at run time, and they are not installed. Fetch NVIDIA's redistributable packages for CUDA {v} (60–100 MB from PyPI, SHA-256 checked) into your data folder. Until then the GPU is used through wgpu (Vulkan) where it can be."
        ),
        None => "CUDA needs the NVIDIA driver first (see “why not” above); NVRTC and the CUDA headers can be fetched once it is installed.".to_string(),
    };
    let fetch = move |_| {
        report.set(None);
        job.run(
            "fetch_cuda_runtime",
            CudaFetchRequest::default(),
            move |r: CudaFetchReport| {
                report.set(Some(r));
            },
        );
    };
    view! {
        <div class="form" data-test="cuda-fetch">
            <p class="hint" data-test="cuda-fetch-hint">{what}</p>
            <button class="primary" data-test="cuda-fetch-button" on:click=fetch
                prop:disabled=move || !has_driver || job.is_running()>
                "Fetch NVRTC and headers"
            </button>
            <button on:click=move |_| job.cancel() prop:disabled=move || !job.is_running()>"Cancel"</button>
        </div>
        <JobProgressView progress=job.progress test_id="cuda-fetch-progress" />
        <ErrorBox error=job.error test_id="cuda-fetch-error" />
        {move || report.get().map(|r| view! {
            <p class="success" data-test="cuda-fetch-report">
                {format!(
                    "Installed the CUDA {} runtime pieces ({}; {}). Restart ForexGPT to use CUDA.",
                    r.cuda_version,
                    r.packages.iter().map(|p| format!("{} {}", p.package, p.version)).collect::<Vec<_>>().join(", "),
                    r.nvrtc
                )}
            </p>
        })}
    }
}

#[component]
pub fn DevicesTab() -> impl IntoView {
    let shared = expect_context::<Shared>();
    move || match shared.devices.get() {
        None => view! { <p class="hint">"Probing CUDA, wgpu and the CPU…"</p> }.into_any(),
        Some(Ok(info)) => device_tables(info).into_any(),
        Some(Err(e)) => view! { <div class="error" role="alert">{e.message}</div> }.into_any(),
    }
}
