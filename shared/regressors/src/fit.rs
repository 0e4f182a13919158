//! One entry point per model family, like the original tool's `get_regressor(algo, use_gpu)`:
//! the request goes to the device crate's placement path, which runs the GPU path where the
//! request resolves to a GPU that has one, the CPU path otherwise, and says where the fit ran
//! and why that is not the device asked for.

use forexgpt_device::{ComputeDevice, DeviceManager, JobSupport, Placed, Workload};
use forexgpt_protocol::{DeviceRequest, ResolvedDevice};

use crate::error::FitError;
use crate::forest::{RandomForestModel, ValidForestParams};
use crate::linear::{LinearModel, ValidLinearParams, check_xy};
use crate::matrix::Matrix;
use crate::moments::{Moments, moments_cpu, moments_on_device};
use crate::pca::{FittedPca, ValidPcaParams};

/// The linear models' and PCA's products run on CUDA (cuBLAS) and wgpu (our Gram kernel).
pub const LINEAR_FIT: JobSupport = JobSupport::everywhere("fitting a linear model");
pub const PCA_FIT: JobSupport = JobSupport::everywhere("fitting PCA");
pub use crate::forest::FOREST_FIT;

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

impl<M> From<Placed<M>> for FitOutcome<M> {
    fn from(placed: Placed<M>) -> FitOutcome<M> {
        FitOutcome {
            model: placed.value,
            device: placed.device.resolved,
            fell_back: placed.fell_back,
        }
    }
}

/// Runs `fit` where the request places `job`: the CPU path (float64) on the CPU, the device
/// path on a GPU; a failing GPU under "if available" or `auto` hands the fit to the CPU.
fn fit_with<M>(
    manager: &DeviceManager,
    request: DeviceRequest,
    job: JobSupport,
    fit: impl Fn(Option<&ComputeDevice>) -> Result<M, FitError>,
) -> Result<FitOutcome<M>, FitError> {
    manager
        .place(
            request,
            job,
            |device| fit(device.is_gpu().then_some(device)),
            |e| match e {
                FitError::Device(e) => Some(e),
                _ => None,
            },
        )
        .map(FitOutcome::from)
}

pub fn fit_linear(
    manager: &DeviceManager,
    request: DeviceRequest,
    params: &ValidLinearParams,
    x: &Matrix,
    y: &Matrix,
) -> Result<FitOutcome<LinearModel>, FitError> {
    let job = LINEAR_FIT.sized(Workload::linear_fit(x.rows, x.cols, y.cols));
    fit_with(manager, request, job, |device| params.fit(x, y, device))
}

/// The second moments of `(x, y)` (centred when `center`), placed as a linear fit of this
/// size would be: several linear models on the same data (a training grid's ridge, lasso and
/// elastic net) then fit from one pass over the rows ([`ValidLinearParams::fit_moments`]),
/// each as it would from the data.
pub fn linear_moments(
    manager: &DeviceManager,
    request: DeviceRequest,
    x: &Matrix,
    y: &Matrix,
    center: bool,
) -> Result<FitOutcome<Moments>, FitError> {
    check_xy(x, y)?;
    let job = LINEAR_FIT.sized(Workload::linear_fit(x.rows, x.cols, y.cols));
    fit_with(manager, request, job, |device| match device {
        Some(d) => moments_on_device(d, x, y, center),
        None => Ok(moments_cpu(x, y, center)),
    })
}

pub fn fit_pca(
    manager: &DeviceManager,
    request: DeviceRequest,
    params: &ValidPcaParams,
    x: &Matrix,
) -> Result<FitOutcome<FittedPca>, FitError> {
    let job = PCA_FIT.sized(Workload::pca_fit(x.rows, x.cols, params.n_components()));
    fit_with(manager, request, job, |device| params.fit(x, device))
}

/// Grows a random forest on a CUDA device or the CPU ([`FOREST_FIT`]); `observe` sees the
/// trees finished so far and returns false to cancel. Prediction runs on any device
/// ([`RandomForestModel::predict_on`]).
pub fn fit_forest(
    manager: &DeviceManager,
    request: DeviceRequest,
    params: &ValidForestParams,
    x: &Matrix,
    y: &Matrix,
    observe: &(dyn Fn(usize) -> bool + Sync),
) -> Result<FitOutcome<RandomForestModel>, FitError> {
    let trees = params.spec().n_estimators;
    let job = FOREST_FIT
        .sized(Workload::forest_fit(x.rows, x.cols, trees).with_max_depth(params.spec().max_depth));
    fit_with(manager, request, job, |device| {
        params.fit_on(x, y, device, observe)
    })
}

#[cfg(test)]
mod tests {
    use forexgpt_device::testing::described_machine;
    use forexgpt_protocol::{BackendKind, DevicePreference};

    use super::*;
    use crate::{Pca, RandomForest, Ridge};

    fn no_gpu() -> DeviceManager {
        described_machine(false)
    }

    /// A machine whose only GPU is a hardware wgpu adapter that fails every job.
    fn failing_wgpu() -> DeviceManager {
        described_machine(true).with_failing_gpus()
    }

    fn data() -> (Matrix, Matrix) {
        let x = Matrix::new(4, 2, vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0]).unwrap();
        let y = Matrix::new(4, 1, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        (x, y)
    }

    /// Where a fit ran, and why that is not where it was asked to.
    type Where = (ResolvedDevice, Option<String>);

    /// Every regressor family and PCA through its entry point; the outcome's device and
    /// fallback reason.
    fn fit_each(
        manager: &DeviceManager,
        request: DeviceRequest,
    ) -> Vec<(&'static str, Result<Where, FitError>)> {
        let (x, y) = data();
        let ridge = Ridge::params().check().unwrap();
        let pca = Pca::params(1).check().unwrap();
        let forest = RandomForest::params().n_estimators(3).check().unwrap();
        let parts = |o: FitOutcome<()>| (o.device, o.fell_back);
        vec![
            (
                "ridge",
                fit_linear(manager, request, &ridge, &x, &y).map(|o| parts(o.map(drop))),
            ),
            (
                "shared moments",
                linear_moments(manager, request, &x, &y, true).map(|o| parts(o.map(drop))),
            ),
            (
                "pca",
                fit_pca(manager, request, &pca, &x).map(|o| parts(o.map(drop))),
            ),
            (
                "forest",
                fit_forest(manager, request, &forest, &x, &y, &|_| true)
                    .map(|o| parts(o.map(drop))),
            ),
        ]
    }

    #[test]
    fn use_gpu_if_available_falls_back_and_says_why_for_every_model() {
        for (model, outcome) in fit_each(&no_gpu(), DeviceRequest::GPU_IF_AVAILABLE) {
            let (device, why) = outcome.unwrap_or_else(|e| panic!("{model}: {e}"));
            assert_eq!(device.backend, BackendKind::Cpu, "{model}");
            assert!(device.fell_back, "{model}");
            let why = why.unwrap_or_else(|| panic!("{model}: no reason"));
            assert!(why.contains("no NVIDIA driver"), "{model}: {why}");
        }
        // An explicit GPU "if available" falls back the same way.
        let request = DeviceRequest {
            preference: DevicePreference::Cuda(None),
            gpu_if_available: true,
        };
        for (model, outcome) in fit_each(&no_gpu(), request) {
            let (device, why) = outcome.unwrap_or_else(|e| panic!("{model}: {e}"));
            assert_eq!(device.backend, BackendKind::Cpu, "{model}");
            assert!(why.unwrap().contains("CUDA is not available"), "{model}");
        }
    }

    #[test]
    fn an_explicit_gpu_without_a_gpu_is_an_error_for_every_model() {
        let cuda = DeviceRequest::exactly(DevicePreference::Cuda(None));
        for (model, outcome) in fit_each(&no_gpu(), cuda) {
            let err = outcome.expect_err(model).to_string();
            assert!(
                err.contains("CUDA is not available: no NVIDIA driver"),
                "{model}: {err}"
            );
        }
        for (model, outcome) in fit_each(&no_gpu(), DeviceRequest::CPU) {
            let (device, why) = outcome.unwrap_or_else(|e| panic!("{model}: {e}"));
            assert_eq!(device.backend, BackendKind::Cpu, "{model}");
            assert!(why.is_none(), "{model}");
        }
    }

    #[test]
    fn a_forest_on_a_failing_wgpu_device_is_an_error_when_named() {
        // wgpu grows forests (a level at a time): named, its failure is the error; "if
        // available", the CPU grows the forest and says why.
        let (x, y) = data();
        let forest = RandomForest::params().n_estimators(3).check().unwrap();
        let machine = failing_wgpu();
        let wgpu = DeviceRequest::exactly(DevicePreference::Wgpu(None));
        let err = fit_forest(&machine, wgpu, &forest, &x, &y, &|_| true).unwrap_err();
        assert!(err.to_string().contains("simulated GPU fault"), "{err}");
        let out = fit_forest(
            &machine,
            DeviceRequest::GPU_IF_AVAILABLE,
            &forest,
            &x,
            &y,
            &|_| true,
        )
        .unwrap();
        assert_eq!(out.device.backend, BackendKind::Cpu);
        assert!(out.fell_back.unwrap().contains("simulated GPU fault"));
    }

    #[test]
    fn a_gpu_failing_mid_fit_hands_the_fit_to_the_cpu_if_available() {
        let machine = failing_wgpu();
        let (x, y) = data();
        let ridge = Ridge::params().check().unwrap();
        let out = fit_linear(&machine, DeviceRequest::GPU_IF_AVAILABLE, &ridge, &x, &y).unwrap();
        assert_eq!(out.device.backend, BackendKind::Cpu);
        let why = out.fell_back.unwrap();
        assert!(
            why.contains("wgpu:0 (Test GPU") && why.contains("simulated GPU fault"),
            "{why}"
        );
        let cpu = fit_linear(&no_gpu(), DeviceRequest::CPU, &ridge, &x, &y).unwrap();
        assert_eq!(out.model, cpu.model);
        // Named explicitly, the failure is the user's answer.
        let wgpu = DeviceRequest::exactly(DevicePreference::Wgpu(Some(0)));
        let err = fit_linear(&machine, wgpu, &ridge, &x, &y).unwrap_err();
        assert!(err.to_string().contains("simulated GPU fault"), "{err}");
    }

    /// A grid's linear models from one pass over the rows: each the model its own fit gives,
    /// bit for bit, with and without an intercept; bad input refused as a fit refuses it.
    #[test]
    fn linear_models_from_shared_moments_are_their_own_fits() {
        let (x, y) = data();
        let cpu = no_gpu();
        let request = DeviceRequest::default();
        for center in [true, false] {
            let shared = linear_moments(&cpu, request, &x, &y, center).unwrap();
            assert_eq!(shared.device.backend, BackendKind::Cpu);
            for builder in [
                Ridge::params().alpha(0.5),
                crate::Lasso::params().alpha(0.01),
                crate::ElasticNet::params().alpha(0.01).l1_ratio(0.3),
            ] {
                let params = builder.fit_intercept(center).check().unwrap();
                let alone = fit_linear(&cpu, request, &params, &x, &y).unwrap().model;
                assert_eq!(params.fit_moments(&shared.model).unwrap(), alone);
            }
        }
        let mut bad = x.clone();
        bad.values[3] = f64::NAN;
        assert!(matches!(
            linear_moments(&cpu, request, &bad, &y, true),
            Err(FitError::NonFinite { what: "X", .. })
        ));
    }
}
