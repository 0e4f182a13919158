//! The CPU: model name and logical threads.

use forexgpt_protocol::CpuInfo;

pub fn probe_cpu() -> CpuInfo {
    CpuInfo {
        model: cpu_model().unwrap_or_else(|| "unknown CPU".to_string()),
        logical_threads: std::thread::available_parallelism().map_or(1, usize::from),
        arch: std::env::consts::ARCH.to_string(),
    }
}

#[cfg(target_os = "linux")]
fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("model name")
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    })
}

#[cfg(target_os = "macos")]
fn cpu_model() -> Option<String> {
    let out = std::process::Command::new("sysctl")
        .args(["-n", "machdep.cpu.brand_string"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(target_os = "windows")]
fn cpu_model() -> Option<String> {
    std::env::var("PROCESSOR_IDENTIFIER").ok()
}

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
fn cpu_model() -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn reports_at_least_one_thread() {
        let cpu = super::probe_cpu();
        assert!(cpu.logical_threads >= 1);
        assert!(!cpu.model.is_empty());
    }
}
