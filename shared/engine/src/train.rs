//! Training: candles → features and targets → chronological split → scaler → encoder →
//! regressor → validation and test metrics per horizon (beside the naive baseline) → model
//! files. A grid of configurations shares the feature matrix, the split, the scaler and every
//! encoder fitted for it.

use std::time::Instant;

use forexgpt_core::features::{FeatureMatrix, Targets};
use forexgpt_core::metrics::regression_metrics;
use forexgpt_core::scaler::StandardScaler;
use forexgpt_device::{ComputeDevice, DeviceManager};
use forexgpt_protocol::{
    BaselineMetrics, DeviceRequest, EncoderSpec, ErrorUnit, HorizonMetrics, ModelConfig, ModelInfo,
    NeuralEncoderSpec, ProgressEvent, RegressionMetrics, RegressorSpec, ResolvedDevice,
    SplitSummary, SplitTimes, Stage, TrainReport, TrainRequest,
};
use forexgpt_regressors::forest::{ForestParamsBuilder, ValidForestParams};
use forexgpt_regressors::linear::ValidLinearParams;
use forexgpt_regressors::moments::Moments;
use forexgpt_regressors::{
    ElasticNet, FitOutcome, Lasso, Matrix, Pca, Ridge, fit_forest, fit_pca, linear_moments,
};

use crate::Workbench;
use crate::data::{labelled_features, normalize_symbol, unix_now};
use crate::error::EngineError;
use crate::model::{EncoderState, Model, ModelState, RegressorState, quantiles};
use crate::neural::{NetworkKind, NeuralEncoder, TrainRun, training_job};
use crate::progress::{CancelToken, ProgressSink};

/// Checked regressor parameters, of either family.
pub enum RegressorParams {
    Linear(ValidLinearParams),
    Forest(ValidForestParams),
}

/// Checked regressor parameters for a spec (scikit-learn's checks and messages).
pub fn regressor_params(spec: &RegressorSpec) -> Result<RegressorParams, EngineError> {
    let builder = match spec {
        RegressorSpec::Ridge { alpha } => Ridge::params().alpha(*alpha),
        RegressorSpec::Lasso {
            alpha,
            max_iter,
            tol,
        } => Lasso::params().alpha(*alpha).max_iter(*max_iter).tol(*tol),
        RegressorSpec::ElasticNet {
            alpha,
            l1_ratio,
            max_iter,
            tol,
        } => ElasticNet::params()
            .alpha(*alpha)
            .l1_ratio(*l1_ratio)
            .max_iter(*max_iter)
            .tol(*tol),
        RegressorSpec::RandomForest(forest) => {
            return Ok(RegressorParams::Forest(
                ForestParamsBuilder::from_spec(forest.clone()).check()?,
            ));
        }
    };
    Ok(RegressorParams::Linear(builder.check()?))
}

/// The rows `range` of a row-major matrix with `cols` columns.
fn rows_of(values: &[f64], cols: usize, range: (usize, usize)) -> Matrix {
    Matrix {
        rows: range.1 - range.0,
        cols,
        values: values[range.0 * cols..range.1 * cols].to_vec(),
    }
}

/// The shared inputs of every configuration in one training call.
struct Prepared {
    features: FeatureMatrix,
    targets: Targets,
    split: SplitSummary,
    scaler: StandardScaler,
    /// Scaled features of the train, validation and test rows.
    x: [Matrix; 3],
    y: [Matrix; 3],
}

impl Prepared {
    fn new(
        features: FeatureMatrix,
        targets: Targets,
        split: SplitSummary,
    ) -> Result<Self, EngineError> {
        let d = features.n_columns();
        // A column constant on the training rows (an hour column of a series whose bars all
        // open at one hour, say) carries nothing to learn: it is left out, and the models say so.
        let scaler = StandardScaler::fit_dropping_constant(
            &features.values,
            d,
            split.train.0..split.train.1,
        )?;
        let parts = [split.train, split.validation, split.test];
        let h = targets.horizons.len();
        let mut x = parts.map(|p| rows_of(&features.values, d, p));
        for m in &mut x {
            m.values = scaler.transform(&m.values)?;
            m.cols = scaler.n_out();
        }
        let y = parts.map(|p| rows_of(&targets.values, h, p));
        Ok(Prepared {
            features,
            targets,
            split,
            scaler,
            x,
            y,
        })
    }

    /// The names of the feature columns the scaler leaves out.
    fn dropped_columns(&self) -> Vec<String> {
        self.scaler
            .dropped
            .iter()
            .map(|&j| self.features.columns[j].clone())
            .collect()
    }

    fn split_times(&self) -> SplitTimes {
        let ts = &self.features.ts;
        let span = |(a, b): (usize, usize)| (ts[a], ts[b - 1]);
        SplitTimes {
            train: span(self.split.train),
            validation: span(self.split.validation),
            test: span(self.split.test),
        }
    }
}

/// Why a model's encoder and regressor did not run where asked, both when both say so.
fn both_reasons(encoder: Option<&str>, regressor: Option<String>) -> Option<String> {
    match (encoder, regressor) {
        (Some(e), Some(r)) if e != r => Some(format!("encoder: {e}; regressor: {r}")),
        (Some(e), _) => Some(e.to_string()),
        (None, r) => r,
    }
}

/// An encoder fitted once per distinct spec, with the encoded parts.
struct Encoded {
    spec: EncoderSpec,
    state: EncoderState,
    z: [Matrix; 3],
    device: Option<ResolvedDevice>,
    fell_back: Option<String>,
    fit_ms: f64,
}

/// Where and how encoders are fitted in one training call.
struct EncoderContext<'a> {
    manager: &'a DeviceManager,
    request: DeviceRequest,
    progress: &'a dyn ProgressSink,
    cancel: &'a CancelToken,
}

/// Trains a neural encoder and encodes the three split parts on the device it trained on.
fn encode_neural(
    ctx: &EncoderContext<'_>,
    spec: &EncoderSpec,
    data: &Prepared,
) -> Result<Encoded, EngineError> {
    let started = Instant::now();
    let Some((kind, net)) = NetworkKind::of(spec)? else {
        return Err(EngineError::InvalidRequest(format!(
            "{} is not a neural encoder",
            spec.label()
        )));
    };
    let run = TrainRun {
        kind,
        spec: net,
        train: &data.x[0],
        validation: &data.x[1],
        label: spec.label(),
        progress: ctx.progress,
        cancel: ctx.cancel,
    };
    // Trained and encoded in one placement: a GPU failing in either reruns both on the CPU.
    let placed = ctx.manager.place(
        ctx.request,
        training_job(&[&run]),
        |device| {
            let encoder = run.fit_on(device)?;
            let z = encode_parts(&encoder, kind, data, device)?;
            Ok((encoder, z))
        },
        EngineError::device_failure,
    )?;
    let (encoder, z) = placed.value;
    Ok(Encoded {
        spec: spec.clone(),
        state: neural_state(kind, encoder),
        z,
        device: Some(placed.device.resolved),
        fell_back: placed.fell_back,
        fit_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

/// The three split parts of `data` encoded by a trained network on `device`.
fn encode_parts(
    encoder: &NeuralEncoder,
    kind: NetworkKind,
    data: &Prepared,
    device: &ComputeDevice,
) -> Result<[Matrix; 3], EngineError> {
    Ok([
        encoder.encode(kind, &data.x[0], device)?,
        encoder.encode(kind, &data.x[1], device)?,
        encoder.encode(kind, &data.x[2], device)?,
    ])
}

fn neural_state(kind: NetworkKind, encoder: NeuralEncoder) -> EncoderState {
    match kind {
        NetworkKind::Autoencoder => EncoderState::Autoencoder(encoder),
        NetworkKind::Vae { .. } => EncoderState::Vae(encoder),
    }
}

/// Neural encoders of a request that can train together ([`crate::fused::train_alike`], and
/// covered by the fused kernels; e.g. an ensemble of seeds) do so on a GPU, in the same launches, and are encoded
/// on the device they trained on. Groups of one are left to [`encode`]. On the CPU (or after
/// a GPU failure under "if available") the members train one after the other. Each member's
/// fit time is its share of the group's.
fn encode_neural_groups(
    ctx: &EncoderContext<'_>,
    models: &[ModelConfig],
    data: &Prepared,
) -> Result<Vec<Encoded>, EngineError> {
    let mut groups: Vec<Vec<(&EncoderSpec, NetworkKind, &NeuralEncoderSpec)>> = Vec::new();
    for config in models {
        let spec = &config.encoder;
        let Some((kind, net)) = NetworkKind::of(spec)? else {
            continue;
        };
        if crate::fused::not_covered_spec(net).is_some()
            || groups.iter().flatten().any(|(s, _, _)| *s == spec)
        {
            continue;
        }
        match groups
            .iter_mut()
            .find(|g| crate::fused::train_alike((g[0].1, g[0].2), (kind, net)))
        {
            Some(group) => group.push((spec, kind, net)),
            None => groups.push(vec![(spec, kind, net)]),
        }
    }
    let mut encoded = Vec::new();
    for members in groups.into_iter().filter(|m| m.len() > 1) {
        if ctx.cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let started = Instant::now();
        let runs: Vec<TrainRun<'_>> = members
            .iter()
            .map(|&(spec, kind, net)| TrainRun {
                kind,
                spec: net,
                train: &data.x[0],
                validation: &data.x[1],
                label: format!("{} (seed {})", spec.label(), net.seed),
                progress: ctx.progress,
                cancel: ctx.cancel,
            })
            .collect();
        let placed = ctx.manager.place(
            ctx.request,
            training_job(&runs.iter().collect::<Vec<_>>()),
            |device| {
                let trained = if device.is_gpu() {
                    crate::fused::train_together(&runs.iter().collect::<Vec<_>>(), device)?
                } else {
                    runs.iter()
                        .map(|run| run.fit_on(device))
                        .collect::<Result<Vec<_>, _>>()?
                };
                trained
                    .into_iter()
                    .zip(&runs)
                    .map(|(encoder, run)| {
                        let z = encode_parts(&encoder, run.kind, data, device)?;
                        Ok((encoder, z))
                    })
                    .collect::<Result<Vec<_>, EngineError>>()
            },
            EngineError::device_failure,
        )?;
        let share = started.elapsed().as_secs_f64() * 1e3 / members.len() as f64;
        for ((encoder, z), &(spec, kind, _)) in placed.value.into_iter().zip(&members) {
            encoded.push(Encoded {
                spec: spec.clone(),
                state: neural_state(kind, encoder),
                z,
                device: Some(placed.device.resolved.clone()),
                fell_back: placed.fell_back.clone(),
                fit_ms: share,
            });
        }
    }
    Ok(encoded)
}

fn encode(
    ctx: &EncoderContext<'_>,
    spec: &EncoderSpec,
    data: &Prepared,
) -> Result<Encoded, EngineError> {
    let started = Instant::now();
    let (manager, request) = (ctx.manager, ctx.request);
    match *spec {
        EncoderSpec::None => Ok(Encoded {
            spec: spec.clone(),
            state: EncoderState::None,
            z: data.x.clone(),
            device: None,
            fell_back: None,
            fit_ms: 0.0,
        }),
        EncoderSpec::Autoencoder { .. } | EncoderSpec::Vae { .. } => encode_neural(ctx, spec, data),
        EncoderSpec::Pca {
            n_components,
            whiten,
        } => {
            let params = Pca::params(n_components).whiten(whiten).check()?;
            let fitted = fit_pca(manager, request, &params, &data.x[0])?;
            let z = [
                fitted.model.transform(&data.x[0])?,
                fitted.model.transform(&data.x[1])?,
                fitted.model.transform(&data.x[2])?,
            ];
            Ok(Encoded {
                spec: spec.clone(),
                state: EncoderState::Pca(fitted.model),
                z,
                device: Some(fitted.device),
                fell_back: fitted.fell_back,
                fit_ms: started.elapsed().as_secs_f64() * 1e3,
            })
        }
    }
}

fn baseline(actual: &[f64]) -> BaselineMetrics {
    let zeros = vec![0.0; actual.len()];
    let m = regression_metrics(actual, &zeros).unwrap_or(RegressionMetrics {
        mae: 0.0,
        rmse: 0.0,
        r2: 0.0,
        directional_accuracy: 0.0,
        n: 0,
    });
    BaselineMetrics {
        mae: m.mae,
        rmse: m.rmse,
        r2: m.r2,
    }
}

fn column(m: &Matrix, k: usize) -> Vec<f64> {
    (0..m.rows).map(|r| m.get(r, k)).collect()
}

/// Per-horizon metrics, residual quantiles, baseline quantiles and validation MSE.
struct Evaluation {
    metrics: Vec<HorizonMetrics>,
    residual_quantiles: Vec<Vec<f64>>,
    baseline_quantiles: Vec<Vec<f64>>,
    validation_mse: Vec<f64>,
}

fn evaluate(
    horizons: &[u32],
    y: &[Matrix; 3],
    pred_val: &Matrix,
    pred_test: &Matrix,
) -> Result<Evaluation, EngineError> {
    let mut out = Evaluation {
        metrics: Vec::new(),
        residual_quantiles: Vec::new(),
        baseline_quantiles: Vec::new(),
        validation_mse: Vec::new(),
    };
    for (k, &horizon) in horizons.iter().enumerate() {
        let (val, test) = (column(&y[1], k), column(&y[2], k));
        let (pv, pt) = (column(pred_val, k), column(pred_test, k));
        let metric = |a: &[f64], p: &[f64]| {
            regression_metrics(a, p).ok_or_else(|| {
                EngineError::InvalidRequest("a split part has no rows to evaluate".into())
            })
        };
        let validation = metric(&val, &pv)?;
        out.metrics.push(HorizonMetrics {
            horizon,
            unit: ErrorUnit::LogReturn,
            validation,
            test: metric(&test, &pt)?,
            baseline_validation: baseline(&val),
            baseline_test: baseline(&test),
        });
        let mut residuals: Vec<f64> = val.iter().zip(&pv).map(|(a, p)| a - p).collect();
        out.residual_quantiles.push(quantiles(&mut residuals));
        out.baseline_quantiles.push(quantiles(&mut val.clone()));
        out.validation_mse.push(validation.rmse * validation.rmse);
    }
    Ok(out)
}

/// A readable id, unique in `dir`: `eurusd-1h-pca16-ridge-20261125-171502-01`. Symbols are
/// letters, digits, '.', '_' and '-' (see `normalize_symbol`).
fn model_id(
    dir: &std::path::Path,
    request: &TrainRequest,
    symbol: &str,
    config: &ModelConfig,
    created_ts: i64,
    index: usize,
) -> String {
    let stamp = forexgpt_core::timestamp::format_ts(created_ts)
        .replace(['-', ':'], "")
        .replace(' ', "-");
    let base = format!(
        "{}-{}-{}-{}-{stamp}",
        // Symbols may hold '.' (US500.cash); ids are file stems of letters, digits, '-' and '_'.
        symbol.to_ascii_lowercase().replace('.', "_"),
        request.timeframe.as_str().to_ascii_lowercase(),
        config.encoder.label(),
        config.regressor.kind()
    );
    (index..)
        .map(|i| format!("{base}-{i:02}"))
        .find(|id| !dir.join(Model::file_name(id)).exists())
        .unwrap_or(base)
}

impl Workbench {
    /// Trains every configuration of `request` and saves the models. All or nothing: when a
    /// fit fails or the job is cancelled, no model of this call is kept.
    pub fn train(
        &self,
        request: &TrainRequest,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<TrainReport, EngineError> {
        let started = Instant::now();
        if request.models.is_empty() {
            return Err(EngineError::InvalidRequest(
                "no model configuration to train".into(),
            ));
        }
        for config in &request.models {
            regressor_params(&config.regressor)?;
            NetworkKind::of(&config.encoder)?;
        }
        let dir = self.models_dir()?.to_path_buf();
        let symbol = normalize_symbol(&request.symbol)?;
        progress.report(ProgressEvent::new(
            Stage::Features,
            0,
            None,
            Some(format!("{symbol} {}", request.timeframe)),
        ));
        let (candles, _) = self.store.load_or_resample(&symbol, request.timeframe)?;
        let feature_spec = request.features.clone().fitted_to(request.timeframe);
        let (features, targets, split) =
            labelled_features(&candles, &feature_spec, &request.targets, &request.split)?;
        let data = Prepared::new(features, targets, split)?;
        let features_ms = started.elapsed().as_secs_f64() * 1e3;

        let device_request = request.device;
        self.calibrate_costs_for(device_request);
        let manager = self.devices.for_request(device_request);
        let created_ts = unix_now();
        let total = request.models.len() as u64;
        let context = EncoderContext {
            manager,
            request: device_request,
            progress,
            cancel,
        };
        let mut encoders = encode_neural_groups(&context, &request.models, &data)?;
        // The training rows' moments per (encoder, centred), shared by the linear models.
        let mut moments: Vec<((usize, bool), FitOutcome<Moments>)> = Vec::new();
        let mut models = Vec::with_capacity(request.models.len());
        for (i, config) in request.models.iter().enumerate() {
            if cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            progress.report(ProgressEvent::new(
                Stage::Train,
                i as u64,
                Some(total),
                Some(format!(
                    "{} + {}",
                    config.encoder.label(),
                    config.regressor.label()
                )),
            ));
            let k = match encoders.iter().position(|e| e.spec == config.encoder) {
                Some(k) => k,
                None => {
                    encoders.push(encode(&context, &config.encoder, &data)?);
                    encoders.len() - 1
                }
            };
            let encoded = &encoders[k];
            let fit_started = Instant::now();
            let fitted = match regressor_params(&config.regressor)? {
                RegressorParams::Linear(params) => {
                    // Every linear model on this encoder's output (and the same centring)
                    // fits from one pass over its rows.
                    let center = params.params().fit_intercept;
                    let at = match moments.iter().position(|(key, _)| *key == (k, center)) {
                        Some(at) => at,
                        None => {
                            let (x, y) = (&encoded.z[0], &data.y[0]);
                            let m = linear_moments(manager, device_request, x, y, center)?;
                            moments.push(((k, center), m));
                            moments.len() - 1
                        }
                    };
                    let shared = &moments[at].1;
                    FitOutcome {
                        model: RegressorState::Linear(params.fit_moments(&shared.model)?),
                        device: shared.device.clone(),
                        fell_back: shared.fell_back.clone(),
                    }
                }
                RegressorParams::Forest(params) => {
                    let trees = params.spec().n_estimators as u64;
                    let label = config.regressor.label();
                    let observe = |done: usize| {
                        progress.report(ProgressEvent::new(
                            Stage::Regressor,
                            done as u64,
                            Some(trees),
                            Some(format!("{label}: tree {done}/{trees}")),
                        ));
                        !cancel.is_cancelled()
                    };
                    fit_forest(
                        manager,
                        device_request,
                        &params,
                        &encoded.z[0],
                        &data.y[0],
                        &observe,
                    )
                    .map_err(|e| match e {
                        forexgpt_regressors::FitError::Cancelled => EngineError::Cancelled,
                        e => e.into(),
                    })?
                    .map(RegressorState::Forest)
                }
            };
            let regressor = fitted.model;
            let pred_val = regressor.predict(&encoded.z[1])?;
            let pred_test = regressor.predict(&encoded.z[2])?;
            let eval = evaluate(&data.targets.horizons, &data.y, &pred_val, &pred_test)?;
            let id = model_id(&dir, request, &symbol, config, created_ts, i + 1);
            // The model names one device (the encoder's, when it had one); `auto`'s reasons
            // for both placements travel with it.
            let encoder_choice = encoded.device.as_ref().and_then(|d| d.choice.as_deref());
            let choice = both_reasons(encoder_choice, fitted.device.choice.clone());
            let mut device = encoded.device.clone().unwrap_or(fitted.device);
            device.choice = choice;
            let info = ModelInfo {
                id,
                app_version: env!("CARGO_PKG_VERSION").to_string(),
                created_ts,
                symbol: symbol.clone(),
                timeframe: request.timeframe,
                features: feature_spec.clone(),
                dropped_columns: data.dropped_columns(),
                horizons: data.targets.horizons.clone(),
                n_features: data.features.n_columns(),
                encoder: config.encoder.clone(),
                regressor: config.regressor.clone(),
                split: data.split_times(),
                train_rows: data.x[0].rows,
                metrics: eval.metrics,
                device,
                fell_back: both_reasons(encoded.fell_back.as_deref(), fitted.fell_back),
                fit_ms: encoded.fit_ms + fit_started.elapsed().as_secs_f64() * 1e3,
            };
            models.push(Model {
                path: None,
                format_version: crate::artifact::MODEL_FORMAT_VERSION,
                info,
                state: ModelState {
                    scaler: data.scaler.clone(),
                    encoder: encoded.state.clone(),
                    regressor,
                    residual_quantiles: eval.residual_quantiles,
                    baseline_quantiles: eval.baseline_quantiles,
                    validation_mse: eval.validation_mse,
                },
            });
        }
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        progress.report(ProgressEvent::new(Stage::Train, total, Some(total), None));
        progress.report(ProgressEvent::new(
            Stage::Save,
            0,
            Some(total),
            Some(dir.display().to_string()),
        ));
        save_all(&mut models, &dir)?;
        progress.report(ProgressEvent::new(Stage::Save, total, Some(total), None));
        Ok(TrainReport {
            symbol,
            timeframe: request.timeframe,
            rows: data.features.rows(),
            n_features: data.features.n_columns(),
            features_ms,
            elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
            models: models.iter().map(Model::stored).collect(),
        })
    }
}

/// Saves every model or, if one save fails, removes the ones already written.
/// Saves a training call's models together: every file is written and synced under a
/// temporary name first (a failure there, a full disk say, leaves nothing), then all are
/// renamed into place one after the other, so a crash can at most interrupt that short run
/// of renames, and never leaves a partial file under a model's name. Temporary files that an
/// earlier killed process left behind are cleared first.
fn save_all(models: &mut [Model], dir: &std::path::Path) -> Result<(), EngineError> {
    const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);
    crate::artifact::remove_stale_partials(dir, STALE_AFTER);
    let staged = models
        .iter()
        .map(|m| m.stage(dir))
        .collect::<Result<Vec<_>, _>>()?;
    let mut committed = Vec::with_capacity(staged.len());
    for (model, file) in models.iter_mut().zip(staged) {
        match file.commit() {
            Ok(path) => {
                model.saved_at(path.clone());
                committed.push(path);
            }
            Err(e) => {
                for path in committed {
                    let _ = std::fs::remove_file(path);
                }
                return Err(e.into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use forexgpt_protocol::{FeatureSpec, SplitSpec, TargetSpec, Timeframe};

    use super::*;

    #[test]
    fn model_ids_are_file_stems_and_unique_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let config = ModelConfig {
            encoder: EncoderSpec::Pca {
                n_components: 16,
                whiten: true,
            },
            regressor: RegressorSpec::Ridge { alpha: 1.0 },
        };
        let request = TrainRequest {
            symbol: "US500.cash".into(),
            timeframe: Timeframe::H4,
            features: FeatureSpec::default(),
            targets: TargetSpec::default(),
            split: SplitSpec::default(),
            models: vec![config.clone()],
            device: DeviceRequest::CPU,
        };
        let id = model_id(
            dir.path(),
            &request,
            "US500.CASH",
            &config,
            1_764_090_902,
            1,
        );
        assert_eq!(id, "us500_cash-4h-pca16w-ridge-20251125-171502-01");
        std::fs::write(dir.path().join(Model::file_name(&id)), b"").unwrap();
        let next = model_id(
            dir.path(),
            &request,
            "US500.CASH",
            &config,
            1_764_090_902,
            1,
        );
        assert_eq!(next, "us500_cash-4h-pca16w-ridge-20251125-171502-02");
    }
}
