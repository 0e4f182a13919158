//! Ridge, Lasso, ElasticNet and PCA against scikit-learn (tests/oracle/gen_regressors.py),
//! on the float64 CPU path and on every test device (float32 products; lavapipe in CI).
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use forexgpt_device::testing::for_each_device;
use forexgpt_regressors::linear::LinearParamsBuilder;
use forexgpt_regressors::{ElasticNet, FitError, Lasso, Matrix, Pca, Ridge};
use serde::Deserialize;

use common::{fixture, matrix};

/// Float64 CPU path: both sides reach the optimum (tol 1e-12), so only rounding differs.
const CPU_TOL: f64 = 1e-6;
/// wgpu: the float32 products of float64-centred rows summed as float32 pairs
/// (`forexgpt_kernels::gram`): float64 quality but for the inputs' float32 rounding. A
/// float64 fit of those rounded inputs is within 9e-8 of scikit-learn (coefficients and
/// intercepts); float32 products with Kahan sums were 1.2e-6 and 1.9e-5 on lavapipe.
const WGPU_TOL: f64 = 1e-6;
/// wgpu on a device whose compiler folds the pairs (`wgpu_pairs_hold` says): float32
/// products (intercepts `ȳ − x̄·w` multiply the coefficients' error by column means up to 10).
const WGPU_FOLDED_TOL: f64 = 5e-5;
/// CUDA runs the products through cuBLAS in float64, so it is held to the CPU's tolerance.

#[derive(Deserialize)]
struct Oracle {
    x: Vec<Vec<f64>>,
    y: Vec<Vec<f64>>,
    linear: Vec<LinearCase>,
    pca: Vec<PcaCase>,
}

#[derive(Deserialize)]
struct LinearCase {
    kind: String,
    alpha: f64,
    l1_ratio: f64,
    fit_intercept: bool,
    coef: Vec<Vec<f64>>,
    intercept: Vec<f64>,
    predict: Vec<Vec<f64>>,
}

#[derive(Deserialize)]
struct PcaCase {
    n_components: usize,
    whiten: bool,
    components: Vec<Vec<f64>>,
    mean: Vec<f64>,
    explained_variance: Vec<f64>,
    explained_variance_ratio: Vec<f64>,
    transform: Vec<Vec<f64>>,
}

fn oracle() -> Oracle {
    fixture("regressors_oracle.json")
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().map(|v| v.abs()).fold(1.0, f64::max);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}[{i}]: got {g}, scikit-learn {w} (tol {tol} × {scale})"
        );
    }
}

fn builder(case: &LinearCase) -> LinearParamsBuilder {
    let b = match case.kind.as_str() {
        "ridge" => Ridge::params(),
        "lasso" => Lasso::params().tol(1e-12).max_iter(100_000),
        _ => ElasticNet::params()
            .l1_ratio(case.l1_ratio)
            .tol(1e-12)
            .max_iter(100_000),
    };
    b.alpha(case.alpha).fit_intercept(case.fit_intercept)
}

fn check_linear(device: Option<&forexgpt_device::ComputeDevice>, tol: f64) {
    let o = oracle();
    let (x, y) = (matrix(&o.x), matrix(&o.y));
    let head = matrix(&o.x[..10]);
    for case in &o.linear {
        let label = format!(
            "{} alpha={} l1_ratio={} intercept={}",
            case.kind, case.alpha, case.l1_ratio, case.fit_intercept
        );
        let model = builder(case).check().unwrap().fit(&x, &y, device).unwrap();
        assert!(model.not_converged.is_empty(), "{label}: did not converge");
        let coef: Vec<f64> = case.coef.iter().flatten().copied().collect();
        assert_close(&format!("{label} coef"), &model.coef.values, &coef, tol);
        // scikit-learn reports a scalar 0.0 intercept without fit_intercept.
        let intercept = if case.intercept.len() == 1 {
            vec![case.intercept[0]; model.intercept.len()]
        } else {
            case.intercept.clone()
        };
        assert_close(
            &format!("{label} intercept"),
            &model.intercept,
            &intercept,
            tol,
        );
        let predicted = model.predict(&head).unwrap();
        assert_close(
            &format!("{label} predict"),
            &predicted.values,
            &case.predict.iter().flatten().copied().collect::<Vec<_>>(),
            tol,
        );
    }
}

fn check_pca(device: Option<&forexgpt_device::ComputeDevice>, tol: f64) {
    let o = oracle();
    let x = matrix(&o.x);
    let head = matrix(&o.x[..10]);
    for case in &o.pca {
        let pca = Pca::params(case.n_components)
            .whiten(case.whiten)
            .check()
            .unwrap()
            .fit(&x, device)
            .unwrap();
        assert_close("mean", &pca.mean, &case.mean, tol);
        assert_close(
            "explained_variance",
            &pca.explained_variance,
            &case.explained_variance,
            tol,
        );
        assert_close(
            "explained_variance_ratio",
            &pca.explained_variance_ratio,
            &case.explained_variance_ratio,
            tol,
        );
        let projected = pca.transform(&head).unwrap();
        for (c, want) in case.components.iter().enumerate() {
            // Signs are arbitrary: align each component with scikit-learn's before comparing.
            let got = pca.components.row(c);
            let sign = if got.iter().zip(want).map(|(a, b)| a * b).sum::<f64>() < 0.0 {
                -1.0
            } else {
                1.0
            };
            let aligned: Vec<f64> = got.iter().map(|v| v * sign).collect();
            assert_close(&format!("component {c}"), &aligned, want, tol);
            let column: Vec<f64> = (0..10).map(|r| projected.get(r, c) * sign).collect();
            let want_column: Vec<f64> = case.transform.iter().map(|row| row[c]).collect();
            assert_close(
                &format!("transform column {c} (whiten={})", case.whiten),
                &column,
                &want_column,
                tol,
            );
        }
    }
}

#[test]
fn linear_models_match_scikit_learn_on_the_cpu_in_float64() {
    check_linear(None, CPU_TOL);
}

#[test]
fn pca_matches_scikit_learn_on_the_cpu_in_float64() {
    check_pca(None, CPU_TOL);
}

#[test]
fn linear_models_and_pca_match_on_every_device() {
    for_each_device(|device| {
        eprintln!("checking {}", device.label());
        let tol = match device.backend() {
            forexgpt_protocol::BackendKind::Cuda => CPU_TOL,
            forexgpt_protocol::BackendKind::Wgpu => {
                if forexgpt_kernels::gram::wgpu_pairs_hold(device).unwrap() {
                    WGPU_TOL
                } else {
                    eprintln!(
                        "NOT HELD: {} folds the float32 pairs; checked at {WGPU_FOLDED_TOL}",
                        device.label()
                    );
                    WGPU_FOLDED_TOL
                }
            }
            // The CPU as a device: the same float64 products as the CPU path.
            forexgpt_protocol::BackendKind::Cpu => CPU_TOL,
        };
        check_linear(Some(device), tol);
        check_pca(Some(device), tol);
    });
}

#[test]
fn bad_input_gets_typed_errors() {
    let o = oracle();
    let (x, y) = (matrix(&o.x), matrix(&o.y));
    let ridge = Ridge::params().check().unwrap();
    let mut nan = x.clone();
    nan.values[7] = f64::NAN;
    assert!(matches!(
        ridge.fit(&nan, &y, None),
        Err(FitError::NonFinite {
            what: "X",
            row: 1,
            col: 1,
            ..
        })
    ));
    let empty = Matrix::new(0, 6, vec![]).unwrap();
    assert!(matches!(
        ridge.fit(&empty, &y, None),
        Err(FitError::Empty { .. })
    ));
    let short = matrix(&o.y[..10]);
    assert!(matches!(
        ridge.fit(&x, &short, None),
        Err(FitError::ShapeMismatch(_))
    ));
    let mut constant = x.clone();
    for r in 0..constant.rows {
        constant.values[r * 6 + 2] = 4.0;
    }
    assert!(matches!(
        ridge.fit(&constant, &y, None),
        Err(FitError::ConstantColumn { col: 2, .. })
    ));
    assert!(matches!(
        Ridge::params().alpha(-1.0).check(),
        Err(FitError::InvalidParam { name: "alpha", .. })
    ));
    assert!(matches!(
        ElasticNet::params().l1_ratio(1.5).check(),
        Err(FitError::InvalidParam {
            name: "l1_ratio",
            ..
        })
    ));
    assert!(matches!(
        Pca::params(0).check(),
        Err(FitError::InvalidParam { .. })
    ));
    let model = ridge.fit(&x, &y, None).unwrap();
    assert!(matches!(
        model.predict(&matrix(&o.y)),
        Err(FitError::ShapeMismatch(_))
    ));
    let json = serde_json::to_string(&model).unwrap();
    let back: forexgpt_regressors::LinearModel = serde_json::from_str(&json).unwrap();
    assert_eq!(
        back.predict(&x).unwrap(),
        model.predict(&x).unwrap(),
        "serialized models predict the same"
    );
}
