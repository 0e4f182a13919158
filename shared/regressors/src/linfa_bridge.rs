//! linfa's traits for our estimators (feature `linfa`): a linfa user fits our ridge, lasso,
//! elastic net, PCA and random forest on a `linfa::Dataset` over ndarray, and predicts with
//! linfa's `Predict`, on the CPU or on a GPU.
//!
//! ```ignore
//! use linfa::prelude::*;
//! let params = Ridge::params().alpha(0.5).check()?;
//! let model = LinfaEstimator::new(params).fit(&dataset)?;          // the CPU, float64
//! let model = LinfaEstimator::new(params).on(cuda).fit(&dataset)?; // products on the GPU
//! let y: Array2<f64> = model.predict(&x);                          // one column per target
//! let y: Array1<f64> = model.predict(&x);                          // single-target models
//! ```
//!
//! Our parameter and model types have inherent `fit` / `predict` methods over [`Matrix`], which
//! would hide linfa's trait methods of the same names, so linfa sees them through two thin
//! wrappers: [`LinfaEstimator`] (parameters and the device to fit on) implements `Fit`, and
//! the [`LinfaFitted`] it returns implements `PredictInplace` (hence `Predict`). The numbers are
//! our estimators' own (scikit-learn's objectives and defaults).
//!
//! Targets are `Array1` (one target) or `Array2` (one column per target; our models fit every
//! column at once, as scikit-learn's do). Records are any 2-D float64 ndarray.
//!
//! Like linfa's own models, prediction panics on records of the wrong width or with values
//! that are not finite (`PredictInplace` cannot return an error); fitting returns
//! [`FitError`] for every bad input.

use ::linfa::dataset::DatasetBase;
use ::linfa::traits::{Fit, PredictInplace};
use forexgpt_device::ComputeDevice;
use ndarray::{Array1, Array2, ArrayBase, Data, Ix1, Ix2};

use crate::error::FitError;
use crate::forest::{RandomForestModel, ValidForestParams};
use crate::linear::{LinearModel, ValidLinearParams};
use crate::matrix::Matrix;
use crate::pca::{FittedPca, ValidPcaParams};

impl From<::linfa::Error> for FitError {
    fn from(e: ::linfa::Error) -> FitError {
        FitError::Linfa(e.to_string())
    }
}

/// Checked parameters of one of our estimators, as linfa fits them: on the CPU (float64), or
/// with [`on`](Self::on) on a device (the GPU paths of [`crate::fit`]: cuBLAS or our Gram
/// kernel's products for linear models and PCA, the CUDA tree builder or the level grower for forests).
#[derive(Debug, Clone)]
pub struct LinfaEstimator<P> {
    pub params: P,
    pub device: Option<ComputeDevice>,
}

impl<P> LinfaEstimator<P> {
    pub fn new(params: P) -> LinfaEstimator<P> {
        LinfaEstimator {
            params,
            device: None,
        }
    }

    /// Fits on `device` (the CPU when it is the CPU).
    pub fn on(self, device: ComputeDevice) -> LinfaEstimator<P> {
        LinfaEstimator {
            device: device.is_gpu().then_some(device),
            ..self
        }
    }
    /// `model`, fitted by this estimator, predicting where it was fitted.
    fn fitted<M>(&self, model: M) -> LinfaFitted<M> {
        LinfaFitted {
            model,
            device: self.device.clone(),
        }
    }
}

/// A model fitted through linfa; `model` is ours, with every inherent method.
#[derive(Debug, Clone)]
pub struct LinfaFitted<M> {
    pub model: M,
    /// Where forests predict (linear models and PCA predict on the CPU: a product per row).
    pub device: Option<ComputeDevice>,
}

/// Targets of a linfa dataset as our `rows × targets` matrix.
pub trait TargetColumns {
    fn columns(&self) -> Matrix;
}

impl<S: Data<Elem = f64>> TargetColumns for ArrayBase<S, Ix1> {
    fn columns(&self) -> Matrix {
        Matrix {
            rows: self.len(),
            cols: 1,
            values: self.iter().copied().collect(),
        }
    }
}

impl<S: Data<Elem = f64>> TargetColumns for ArrayBase<S, Ix2> {
    fn columns(&self) -> Matrix {
        matrix(self)
    }
}

/// A 2-D ndarray as our row-major matrix (any memory order: `iter` walks it row by row).
fn matrix<S: Data<Elem = f64>>(a: &ArrayBase<S, Ix2>) -> Matrix {
    let (rows, cols) = a.dim();
    Matrix {
        rows,
        cols,
        values: a.iter().copied().collect(),
    }
}

impl<S, T> Fit<ArrayBase<S, Ix2>, T, FitError> for LinfaEstimator<ValidLinearParams>
where
    S: Data<Elem = f64>,
    T: TargetColumns,
{
    type Object = LinfaFitted<LinearModel>;

    fn fit(&self, data: &DatasetBase<ArrayBase<S, Ix2>, T>) -> Result<Self::Object, FitError> {
        let x = matrix(&data.records);
        let model = self
            .params
            .fit(&x, &data.targets.columns(), self.device.as_ref())?;
        Ok(self.fitted(model))
    }
}

impl<S, T> Fit<ArrayBase<S, Ix2>, T, FitError> for LinfaEstimator<ValidPcaParams>
where
    S: Data<Elem = f64>,
{
    type Object = LinfaFitted<FittedPca>;

    fn fit(&self, data: &DatasetBase<ArrayBase<S, Ix2>, T>) -> Result<Self::Object, FitError> {
        let model = self
            .params
            .fit(&matrix(&data.records), self.device.as_ref())?;
        Ok(self.fitted(model))
    }
}

impl<S, T> Fit<ArrayBase<S, Ix2>, T, FitError> for LinfaEstimator<ValidForestParams>
where
    S: Data<Elem = f64>,
    T: TargetColumns,
{
    type Object = LinfaFitted<RandomForestModel>;

    fn fit(&self, data: &DatasetBase<ArrayBase<S, Ix2>, T>) -> Result<Self::Object, FitError> {
        let x = matrix(&data.records);
        let model =
            self.params
                .fit_on(&x, &data.targets.columns(), self.device.as_ref(), &|_| true)?;
        Ok(self.fitted(model))
    }
}

/// Our fitted models as linfa predicts with them: `rows × outputs` for rows `x`.
pub trait Predicts {
    fn outputs(&self) -> usize;
    fn predict_matrix(
        &self,
        x: &Matrix,
        device: Option<&ComputeDevice>,
    ) -> Result<Matrix, FitError>;
}

impl Predicts for LinearModel {
    fn outputs(&self) -> usize {
        self.coef.rows
    }

    fn predict_matrix(&self, x: &Matrix, _: Option<&ComputeDevice>) -> Result<Matrix, FitError> {
        self.predict(x)
    }
}

impl Predicts for RandomForestModel {
    fn outputs(&self) -> usize {
        self.n_outputs
    }

    fn predict_matrix(
        &self,
        x: &Matrix,
        device: Option<&ComputeDevice>,
    ) -> Result<Matrix, FitError> {
        match device {
            Some(device) => self.predict_on(x, device),
            None => self.predict(x),
        }
    }
}

impl Predicts for FittedPca {
    fn outputs(&self) -> usize {
        self.components.rows
    }

    fn predict_matrix(&self, x: &Matrix, _: Option<&ComputeDevice>) -> Result<Matrix, FitError> {
        self.transform(x)
    }
}

impl<M: Predicts> LinfaFitted<M> {
    /// The model's output for `x`; panics on a refusal (see the module's note).
    fn predicted<S: Data<Elem = f64>>(&self, x: &ArrayBase<S, Ix2>) -> Matrix {
        match self.model.predict_matrix(&matrix(x), self.device.as_ref()) {
            Ok(y) => y,
            Err(e) => panic!("prediction refused: {e}"),
        }
    }
}

impl<S, M> PredictInplace<ArrayBase<S, Ix2>, Array2<f64>> for LinfaFitted<M>
where
    S: Data<Elem = f64>,
    M: Predicts,
{
    fn predict_inplace(&self, x: &ArrayBase<S, Ix2>, y: &mut Array2<f64>) {
        let out = self.predicted(x);
        assert_eq!(
            y.dim(),
            (out.rows, out.cols),
            "the targets array must be rows × outputs"
        );
        for (slot, v) in y.iter_mut().zip(out.values) {
            *slot = v;
        }
    }

    fn default_target(&self, x: &ArrayBase<S, Ix2>) -> Array2<f64> {
        Array2::zeros((x.nrows(), self.model.outputs()))
    }
}

impl<S, M> PredictInplace<ArrayBase<S, Ix2>, Array1<f64>> for LinfaFitted<M>
where
    S: Data<Elem = f64>,
    M: Predicts,
{
    /// Single-output models only (the first and only column).
    fn predict_inplace(&self, x: &ArrayBase<S, Ix2>, y: &mut Array1<f64>) {
        assert_eq!(
            self.model.outputs(),
            1,
            "a model of several outputs predicts into an Array2"
        );
        let out = self.predicted(x);
        assert_eq!(
            y.len(),
            out.rows,
            "the targets array must have a value per row"
        );
        for (slot, v) in y.iter_mut().zip(out.values) {
            *slot = v;
        }
    }

    fn default_target(&self, x: &ArrayBase<S, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}
