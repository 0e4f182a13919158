//! One entry point, like the original tool's `get_regressor(algo, use_gpu)`: the request
//! names a device; when the GPU cannot be used (none, compiled out, or it fails mid-fit) the
//! CPU path runs and the outcome says that it fell back and why.

use forexgpt_device::{ComputeDevice, DeviceManager};
use forexgpt_protocol::{DevicePreference, ResolvedDevice};

use crate::error::FitError;
use crate::forest::{RandomForestModel, ValidForestParams};
use crate::linear::{LinearModel, ValidLinearParams};
use crate::matrix::Matrix;
use crate::pca::{FittedPca, ValidPcaParams};

/// Where a fit should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRequest {
    pub preference: DevicePreference,
    /// "Use GPU (if available)": fall back to the CPU instead of failing.
    pub gpu_if_available: bool,
}

/// A fitted model and where it was fitted.
#[derive(Debug, Clone, PartialEq)]
pub struct FitOutcome<M> {
    pub model: M,
    pub device: ResolvedDevice,
    /// Why the CPU ran instead of the requested GPU.
    pub fell_back: Option<String>,
}

impl<M> FitOutcome<M> {
    /// The same outcome around another form of the model.
    pub fn map<N>(self, f: impl FnOnce(M) -> N) -> FitOutcome<N> {
        FitOutcome {
            model: f(self.model),
            device: self.device,
            fell_back: self.fell_back,
        }
    }
}

/// Runs `fit` on the requested device: the CPU path (float64) for the CPU, the device path
/// otherwise, falling back to the CPU when the device fails and fallback is allowed.
fn fit_with<M>(
    manager: &DeviceManager,
    request: DeviceRequest,
    fit: impl Fn(Option<&ComputeDevice>) -> Result<M, FitError>,
) -> Result<FitOutcome<M>, FitError> {
    let placed = manager.run_placed(
        request.preference,
        request.gpu_if_available,
        |device| fit(device.is_gpu().then_some(device)),
        |e| match e {
            FitError::Device(e) => Some(e),
            _ => None,
        },
    )?;
    Ok(FitOutcome {
        model: placed.value,
        device: placed.device.resolved,
        fell_back: placed.fell_back,
    })
}

pub fn fit_linear(
    manager: &DeviceManager,
    request: DeviceRequest,
    params: &ValidLinearParams,
    x: &Matrix,
    y: &Matrix,
) -> Result<FitOutcome<LinearModel>, FitError> {
    fit_with(manager, request, |device| params.fit(x, y, device))
}

pub fn fit_pca(
    manager: &DeviceManager,
    request: DeviceRequest,
    params: &ValidPcaParams,
    x: &Matrix,
) -> Result<FitOutcome<FittedPca>, FitError> {
    fit_with(manager, request, |device| params.fit(x, device))
}

/// Grows a random forest: on the GPU when the request resolves to a CUDA device (falling back
/// to the CPU, with the reason, when the kernel cannot run there), on the CPU otherwise; a
/// wgpu request grows on the CPU and the outcome says so. Prediction runs on any device
/// ([`RandomForestModel::predict_on`]).
pub fn fit_forest(
    manager: &DeviceManager,
    request: DeviceRequest,
    params: &ValidForestParams,
    x: &Matrix,
    y: &Matrix,
    observe: &(dyn Fn(usize) -> bool + Sync),
) -> Result<FitOutcome<RandomForestModel>, FitError> {
    let device = manager.resolve_or_cpu(request.preference);
    let mut fell_back = None;
    if device.cuda_index().is_some() {
        match params.fit_on(x, y, Some(&device), observe) {
            Ok(model) => {
                return Ok(FitOutcome {
                    model,
                    device: device.resolved,
                    fell_back: None,
                });
            }
            Err(FitError::Device(e)) => {
                let reason = format!("{} failed ({e}); grown on the CPU", device.label());
                tracing::warn!("{reason}");
                fell_back = Some(reason);
            }
            Err(other) => return Err(other),
        }
    } else if device.is_gpu() {
        fell_back = Some(format!(
            "random forests are grown on CUDA or the CPU ({} has no tree builder)",
            device.label()
        ));
    }
    let model = params.fit(x, y, observe)?;
    let cpu = ComputeDevice::cpu(&manager.info().cpu.model);
    Ok(FitOutcome {
        model,
        device: cpu.resolved,
        fell_back,
    })
}

#[cfg(test)]
mod tests {
    use forexgpt_protocol::{BackendKind, CudaStatus, WgpuStatus};

    use super::*;
    use crate::Ridge;

    fn no_gpu() -> DeviceManager {
        let cuda = CudaStatus {
            built: true,
            reason: Some("no NVIDIA driver".into()),
            ..CudaStatus::default()
        };
        let wgpu = WgpuStatus {
            built: true,
            reason: Some("no adapter".into()),
            ..WgpuStatus::default()
        };
        DeviceManager::from_parts(cuda, wgpu, None)
    }

    fn data() -> (Matrix, Matrix) {
        let x = Matrix::new(4, 2, vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0]).unwrap();
        let y = Matrix::new(4, 1, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        (x, y)
    }

    #[test]
    fn use_gpu_if_available_falls_back_and_says_why() {
        let (x, y) = data();
        let params = Ridge::params().check().unwrap();
        let request = DeviceRequest {
            preference: DevicePreference::Auto,
            gpu_if_available: true,
        };
        let out = fit_linear(&no_gpu(), request, &params, &x, &y).unwrap();
        assert_eq!(out.device.backend, BackendKind::Cpu);
        assert!(out.fell_back.unwrap().contains("no NVIDIA driver"));
    }

    #[test]
    fn an_explicit_gpu_request_without_a_gpu_is_an_error() {
        let (x, y) = data();
        let params = Ridge::params().check().unwrap();
        let request = DeviceRequest {
            preference: DevicePreference::Cuda(None),
            gpu_if_available: false,
        };
        let err = fit_linear(&no_gpu(), request, &params, &x, &y).unwrap_err();
        assert!(
            err.to_string()
                .contains("CUDA is not available: no NVIDIA driver"),
            "{err}"
        );
        let cpu = DeviceRequest {
            preference: DevicePreference::Cpu,
            gpu_if_available: false,
        };
        let out = fit_linear(&no_gpu(), cpu, &params, &x, &y).unwrap();
        assert!(out.fell_back.is_none());
    }
}
