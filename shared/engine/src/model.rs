//! A trained model: its description ([`ModelInfo`]) and its fitted state (scaler, encoder,
//! regressor, validation residual quantiles), saved to and loaded from one model file.

use std::path::{Path, PathBuf};

use forexgpt_core::scaler::StandardScaler;
use forexgpt_device::ComputeDevice;
use forexgpt_protocol::{ModelInfo, StoredModel};
use forexgpt_regressors::forest::trees::Trees;
use forexgpt_regressors::{FitError, FittedPca, LinearModel, Matrix, RandomForestModel};
use serde::{Deserialize, Serialize};

use crate::artifact::{self, ArtifactError, MODEL_EXTENSION, MODEL_FORMAT_VERSION};
use crate::error::EngineError;
use crate::neural::{NetworkKind, NeuralEncoder};

/// The payload section holding [`ModelState`] as JSON (floats round-trip exactly).
const STATE_SECTION: &str = "state.json";

/// The payload section holding a random forest's trees ([`Trees::to_bytes`]).
const FOREST_SECTION: &str = "forest.bin";

/// Quantile levels stored for residuals: 0 %, 1 %, …, 100 %.
pub const QUANTILE_LEVELS: usize = 101;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EncoderState {
    None,
    Pca(FittedPca),
    Autoencoder(NeuralEncoder),
    Vae(NeuralEncoder),
}

impl EncoderState {
    /// The network of a neural encoder, and which kind it is.
    pub fn network(&self) -> Option<(NetworkKind, &NeuralEncoder)> {
        match self {
            EncoderState::None | EncoderState::Pca(_) => None,
            EncoderState::Autoencoder(e) => Some((NetworkKind::Autoencoder, e)),
            EncoderState::Vae(e) => Some((NetworkKind::VAE_ENCODING, e)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RegressorState {
    Linear(LinearModel),
    Forest(RandomForestModel),
}

impl RegressorState {
    /// Predictions for encoded rows; a forest walks its trees on `device`.
    pub fn predict_on(&self, x: &Matrix, device: &ComputeDevice) -> Result<Matrix, FitError> {
        match self {
            RegressorState::Linear(linear) => linear.predict(x),
            RegressorState::Forest(forest) => forest.predict_on(x, device),
        }
    }

    /// Predictions on the CPU.
    pub fn predict(&self, x: &Matrix) -> Result<Matrix, FitError> {
        self.predict_on(x, &ComputeDevice::cpu("CPU"))
    }

    /// (inputs, outputs) the regressor was fit on.
    fn shape(&self) -> (usize, usize) {
        match self {
            RegressorState::Linear(l) => (l.coef.cols, l.coef.rows),
            RegressorState::Forest(f) => (f.n_features, f.n_outputs),
        }
    }
}

/// Everything a model needs to predict, and what its bands are made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelState {
    pub scaler: StandardScaler,
    pub encoder: EncoderState,
    pub regressor: RegressorState,
    /// Per horizon: the 0–100 % quantiles of validation residuals (actual − predicted log
    /// return).
    pub residual_quantiles: Vec<Vec<f64>>,
    /// Per horizon: the 0–100 % quantiles of validation log returns (the naive forecast's
    /// residuals).
    pub baseline_quantiles: Vec<Vec<f64>>,
    /// Per horizon: mean squared validation error (weights of `Combine::Weighted`).
    pub validation_mse: Vec<f64>,
}

/// A model: where it is stored (once saved), what it is, and its fitted state.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub path: Option<PathBuf>,
    pub format_version: u32,
    pub info: ModelInfo,
    pub state: ModelState,
}

/// A model that is an affine map of the raw features: `predict(x) = b + x·A`.
#[derive(Debug, Clone, PartialEq)]
pub struct Affine {
    /// `features × horizons`, row-major.
    pub a: Vec<f64>,
    pub b: Vec<f64>,
}

impl Model {
    pub fn stored(&self) -> StoredModel {
        StoredModel {
            path: self
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            format_version: self.format_version,
            info: self.info.clone(),
        }
    }

    /// Predicted log returns (`rows × horizons`) for raw (unscaled) feature rows, on the
    /// CPU.
    pub fn predict(&self, raw: &Matrix) -> Result<Matrix, EngineError> {
        self.predict_on(raw, &ComputeDevice::cpu("CPU"))
    }

    /// Predicted log returns, with a neural encoder running on `device`.
    pub fn predict_on(&self, raw: &Matrix, device: &ComputeDevice) -> Result<Matrix, EngineError> {
        raw.check_features(self.info.n_features)?;
        let scaler = &self.state.scaler;
        let scaled = Matrix {
            rows: raw.rows,
            cols: scaler.n_out(),
            values: scaler.transform(&raw.values)?,
        };
        let encoded = match &self.state.encoder {
            EncoderState::None => scaled,
            EncoderState::Pca(pca) => pca.transform(&scaled)?,
            EncoderState::Autoencoder(e) => e.encode(NetworkKind::Autoencoder, &scaled, device)?,
            EncoderState::Vae(e) => e.encode(NetworkKind::VAE_ENCODING, &scaled, device)?,
        };
        Ok(self.state.regressor.predict_on(&encoded, device)?)
    }

    /// Whether the pipeline is an affine map of the raw features: no neural encoder, a linear
    /// regressor.
    pub fn is_affine(&self) -> bool {
        self.state.encoder.network().is_none()
            && matches!(self.state.regressor, RegressorState::Linear(_))
    }

    /// The whole pipeline as one affine map, when it is one (scaler, PCA and linear
    /// regressors are; neural encoders and forests are not), so that an ensemble runs as one
    /// matrix product. Found by evaluating the pipeline at the origin and at each unit vector.
    pub fn affine(&self) -> Result<Option<Affine>, EngineError> {
        if !self.is_affine() {
            return Ok(None);
        }
        let d = self.info.n_features;
        let h = self.info.horizons.len();
        let mut probe = Matrix::zeros(d + 1, d);
        for i in 0..d {
            probe.values[(i + 1) * d + i] = 1.0;
        }
        let out = self.predict(&probe)?;
        let b = out.row(0).to_vec();
        let mut a = vec![0.0; d * h];
        for i in 0..d {
            for k in 0..h {
                a[i * h + k] = out.get(i + 1, k) - b[k];
            }
        }
        Ok(Some(Affine { a, b }))
    }

    /// The file name of a model id.
    pub fn file_name(id: &str) -> String {
        format!("{id}.{MODEL_EXTENSION}")
    }

    /// Writes the model to `dir/<id>.fxm` atomically and returns the path.
    pub fn save(&mut self, dir: &Path) -> Result<PathBuf, EngineError> {
        let path = self.stage(dir)?.commit()?;
        self.saved_at(path.clone());
        Ok(path)
    }

    /// Records that the model now lives in `path` (written by this version).
    pub fn saved_at(&mut self, path: PathBuf) {
        self.path = Some(path);
        self.format_version = MODEL_FORMAT_VERSION;
    }

    /// Writes the model under a temporary name in `dir`, to be committed as `dir/<id>.fxm`.
    pub fn stage(&self, dir: &Path) -> Result<artifact::Staged, EngineError> {
        let path = dir.join(Model::file_name(&self.info.id));
        let state = serde_json::to_vec(&self.state).map_err(|e| EngineError::Io {
            context: "cannot serialize the model state".into(),
            cause: std::io::Error::other(e),
        })?;
        let mut sections = vec![(STATE_SECTION, state)];
        if let RegressorState::Forest(forest) = &self.state.regressor {
            sections.push((FOREST_SECTION, forest.trees.to_bytes()));
        }
        let bytes = artifact::encode(&self.info, &sections).map_err(|e| EngineError::Io {
            context: "cannot serialize the model manifest".into(),
            cause: std::io::Error::other(e),
        })?;
        Ok(artifact::stage(&path, &bytes)?)
    }

    /// Reads, verifies and checks a model file.
    pub fn load(path: &Path) -> Result<Model, EngineError> {
        let file = artifact::read(path)?;
        let mut state: ModelState = serde_json::from_slice(file.section(STATE_SECTION)?)
            .map_err(|e| file.section_error(STATE_SECTION, e.to_string()))?;
        if let RegressorState::Forest(forest) = &mut state.regressor {
            let trees = Trees::from_bytes(file.section(FOREST_SECTION)?)
                .map_err(|e| file.section_error(FOREST_SECTION, e.to_string()))?;
            forest
                .attach_trees(trees)
                .map_err(|e| file.section_error(FOREST_SECTION, e.to_string()))?;
        }
        let model = Model {
            path: Some(path.to_path_buf()),
            format_version: file.format_version,
            info: file.info.clone(),
            state,
        };
        model
            .check_consistency()
            .map_err(|reason| file.section_error(STATE_SECTION, reason))?;
        Ok(model)
    }

    /// The state must fit the manifest: a file whose parts disagree is refused at load time,
    /// not at the first prediction.
    fn check_consistency(&self) -> Result<(), String> {
        let (d, h) = (self.info.n_features, self.info.horizons.len());
        let s = &self.state;
        if s.scaler.mean.len() != d || s.scaler.scale.len() != d {
            return Err(format!(
                "the scaler has {} columns, not {d}",
                s.scaler.mean.len()
            ));
        }
        let dropped = &s.scaler.dropped;
        if dropped.windows(2).any(|w| w[0] >= w[1]) || dropped.last().is_some_and(|&j| j >= d) {
            return Err(format!(
                "the scaler's dropped columns {dropped:?} are not ascending columns below {d}"
            ));
        }
        // What the encoder reads: the features without the dropped columns.
        let kept = s.scaler.n_out();
        let encoded = match &s.encoder {
            EncoderState::None => kept,
            EncoderState::Pca(p) if p.components.cols == kept && p.mean.len() == kept => {
                p.components.rows
            }
            EncoderState::Pca(p) => {
                return Err(format!(
                    "the PCA reads {} columns, not {kept}",
                    p.components.cols
                ));
            }
            EncoderState::Autoencoder(e) | EncoderState::Vae(e) => {
                if e.d_input != kept {
                    return Err(format!(
                        "the encoder reads {} columns, not {kept}",
                        e.d_input
                    ));
                }
                let kind = match s.encoder {
                    EncoderState::Vae(_) => NetworkKind::VAE_ENCODING,
                    _ => NetworkKind::Autoencoder,
                };
                crate::neural::check_weights(kind, e).map_err(|err| err.to_string())?;
                e.net.latent
            }
        };
        let (inputs, outputs) = s.regressor.shape();
        if inputs != encoded || outputs != h {
            return Err(format!(
                "the regressor is {outputs} × {inputs}, not {h} horizons × {encoded} inputs"
            ));
        }
        match &s.regressor {
            RegressorState::Linear(linear) if linear.intercept.len() != h => {
                return Err(format!(
                    "the regressor has {} intercepts, not {h}",
                    linear.intercept.len()
                ));
            }
            RegressorState::Forest(forest) => forest.check().map_err(|e| e.to_string())?,
            RegressorState::Linear(_) => {}
        }
        let quantiles_ok =
            |q: &Vec<Vec<f64>>| q.len() == h && q.iter().all(|row| row.len() == QUANTILE_LEVELS);
        if !quantiles_ok(&s.residual_quantiles)
            || !quantiles_ok(&s.baseline_quantiles)
            || s.validation_mse.len() != h
        {
            return Err("residual quantiles do not match the horizons".into());
        }
        Ok(())
    }
}

/// The 0 %, 1 %, …, 100 % quantiles of `values` with linear interpolation (numpy's default).
pub fn quantiles(values: &mut [f64]) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (0..QUANTILE_LEVELS)
        .map(|q| {
            if n == 0 {
                return 0.0;
            }
            let pos = q as f64 / (QUANTILE_LEVELS - 1) as f64 * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
        })
        .collect()
}

/// Lists the model files in `dir` (sorted by name); unreadable files are returned as errors
/// beside the readable ones, so one bad file does not hide the others.
pub fn list_models(dir: &Path) -> Result<(Vec<StoredModel>, Vec<ArtifactError>), EngineError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(cause) => {
            return Err(EngineError::Io {
                context: format!("cannot list {}", dir.display()),
                cause,
            });
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == MODEL_EXTENSION))
        .collect();
    paths.sort();
    let mut models = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match artifact::read_manifest(&path) {
            Ok((format_version, manifest)) => models.push(StoredModel {
                path: path.display().to_string(),
                format_version,
                info: manifest.info,
            }),
            Err(e) => errors.push(e),
        }
    }
    Ok((models, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_linear_interpolation() {
        // numpy.quantile(np.arange(11.0), [0, .05, .5, .95, 1]) = [0, .5, 5, 9.5, 10]
        let mut v: Vec<f64> = (0..11).rev().map(f64::from).collect();
        let q = quantiles(&mut v);
        assert_eq!(q.len(), 101);
        assert_eq!(
            (q[0], q[5], q[50], q[95], q[100]),
            (0.0, 0.5, 5.0, 9.5, 10.0)
        );
    }
}
