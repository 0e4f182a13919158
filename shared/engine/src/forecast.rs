//! Stored models: listing, loading, deleting; forecasting with one model or an ensemble; and
//! walk-forward backtests beside the naive "no change" forecast.

use std::path::Path;
use std::time::Instant;

use forexgpt_core::timestamp::format_ts;
use forexgpt_device::{JobSupport, Placed, Workload};
use forexgpt_protocol::{
    BacktestHorizon, BacktestReport, BacktestRequest, EncoderSpec, Forecast, ForecastRequest,
    HorizonForecast, ModelSelection, ProgressEvent, RegressorSpec, Stage, StoredModel,
};

use crate::Workbench;
use crate::artifact::ArtifactError;
use crate::data::normalize_symbol;
use crate::ensemble::{
    Ensemble, EnsemblePrediction, FeatureSets, baseline_quantiles, combine, weights,
};
use crate::error::EngineError;
use crate::model::{Model, list_models};
use crate::progress::{CancelToken, ProgressSink};

/// An ensemble's prediction runs on CUDA, wgpu or the CPU.
pub const ENSEMBLE_INFERENCE: JobSupport = JobSupport::everywhere("running the models");

/// Model ids are file stems: no path separators or dots, so an id never reaches outside the
/// model directory.
fn check_id(id: &str) -> Result<(), EngineError> {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(EngineError::InvalidRequest(format!(
            "'{id}' is not a model id (letters, digits, '-' and '_')"
        )))
    }
}

impl Workbench {
    /// Every readable model in the model directory, and the files that could not be read.
    pub fn list_models(&self) -> Result<(Vec<StoredModel>, Vec<ArtifactError>), EngineError> {
        list_models(self.models_dir()?)
    }

    /// Loads and verifies one stored model.
    pub fn load_model(&self, id: &str) -> Result<Model, EngineError> {
        check_id(id)?;
        let dir = self.models_dir()?;
        let path = dir.join(Model::file_name(id));
        if !path.exists() {
            return Err(EngineError::UnknownModel {
                id: id.to_string(),
                dir: dir.display().to_string(),
            });
        }
        Model::load(&path)
    }

    /// Deletes a stored model; returns whether it existed.
    pub fn delete_model(&self, id: &str) -> Result<bool, EngineError> {
        check_id(id)?;
        let path = self.models_dir()?.join(Model::file_name(id));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(cause) => Err(EngineError::Io {
                context: format!("cannot delete {}", path.display()),
                cause,
            }),
        }
    }

    /// The models a selection names (verified), or every stored model of its series.
    pub fn select_models(&self, selection: &ModelSelection) -> Result<Vec<Model>, EngineError> {
        let symbol = selection
            .symbol
            .as_deref()
            .map(normalize_symbol)
            .transpose()?;
        let models = if selection.ids.is_empty() {
            let (Some(symbol), Some(timeframe)) = (symbol.as_deref(), selection.timeframe) else {
                return Err(EngineError::InvalidRequest(
                    "name model ids, or a symbol and timeframe to use all of its models".into(),
                ));
            };
            let (stored, _) = self.list_models()?;
            let matching: Vec<&StoredModel> = stored
                .iter()
                .filter(|m| m.info.symbol == symbol && m.info.timeframe == timeframe)
                .collect();
            if matching.is_empty() {
                return Err(EngineError::NoModels(format!(
                    "none for {symbol} {timeframe} in {} (train one with `forexgpt train`)",
                    self.models_dir()?.display()
                )));
            }
            matching
                .iter()
                .map(|m| Model::load(Path::new(&m.path)))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            let models = selection
                .ids
                .iter()
                .map(|id| self.load_model(id))
                .collect::<Result<Vec<_>, _>>()?;
            for m in &models {
                let wrong_symbol = symbol.as_ref().is_some_and(|s| *s != m.info.symbol);
                let wrong_tf = selection.timeframe.is_some_and(|t| t != m.info.timeframe);
                if wrong_symbol || wrong_tf {
                    return Err(EngineError::ModelMismatch(format!(
                        "{} is a model of {} {}",
                        m.info.id, m.info.symbol, m.info.timeframe
                    )));
                }
            }
            models
        };
        Ok(models)
    }

    /// The selected models as an ensemble, their features built from the stored bars of their
    /// series, and how long loading the bars and building the features took (ms).
    fn prepare(
        &self,
        selection: &ModelSelection,
    ) -> Result<(Ensemble, FeatureSets, f64), EngineError> {
        let ensemble = Ensemble::new(self.select_models(selection)?)?;
        let started = Instant::now();
        let first = &ensemble.models[0].info;
        let (candles, _) = self
            .store
            .load_or_resample(&first.symbol, first.timeframe)?;
        let features = FeatureSets::build(&ensemble, &candles)?;
        Ok((ensemble, features, started.elapsed().as_secs_f64() * 1e3))
    }

    /// Forecast from the latest bar (or the last bar at or before `at_ts`).
    pub fn forecast(&self, request: &ForecastRequest) -> Result<Forecast, EngineError> {
        let selection = &request.selection;
        let (ensemble, features, features_ms) = self.prepare(selection)?;
        let first = &ensemble.models[0].info;
        let rows = features.shortest();
        let origin = match request.at_ts {
            None => rows.rows() - 1,
            Some(at) => match rows.ts.partition_point(|&t| t <= at) {
                0 => {
                    return Err(EngineError::InvalidRequest(format!(
                        "no bar with features at or before {} (the first is {})",
                        format_ts(at),
                        format_ts(rows.ts[0])
                    )));
                }
                n => n - 1,
            },
        };
        let (origin_ts, origin_close) = (rows.ts[origin], rows.close[origin]);
        let inference = Instant::now();
        let placed = self.predict_placed(selection, &ensemble, &features, &[origin_ts])?;
        let prediction = &placed.value;
        let mut horizons = Vec::with_capacity(ensemble.horizons.len());
        for (j, &horizon) in ensemble.horizons.iter().enumerate() {
            let model_returns: Vec<f64> =
                prediction.per_model.iter().map(|p| p.get(0, j)).collect();
            let w = weights(&ensemble, selection.combine, j);
            let c = combine(&ensemble, selection.combine, &w, j, &model_returns);
            let base = baseline_quantiles(&ensemble, j);
            horizons.push(HorizonForecast {
                horizon,
                expected_return: c.point,
                price: origin_close * c.point.exp(),
                q05: origin_close * c.q05.exp(),
                q50: origin_close * c.q50.exp(),
                q95: origin_close * c.q95.exp(),
                model_returns,
                baseline_q05: origin_close * base[5].exp(),
                baseline_q95: origin_close * base[95].exp(),
            });
        }
        Ok(Forecast {
            symbol: first.symbol.clone(),
            timeframe: first.timeframe,
            origin_ts,
            origin_close,
            combine: selection.combine,
            models: ensemble.models.iter().map(|m| m.info.id.clone()).collect(),
            horizons,
            fell_back: placed.fell_back,
            device: placed.device.resolved,
            features_ms,
            inference_ms: inference.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Forecasts from every bar of the period whose outcome is known and scores the forecasts
    /// beside the naive one. All bars go through the ensemble in one batch.
    pub fn backtest(
        &self,
        request: &BacktestRequest,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<BacktestReport, EngineError> {
        let selection = &request.selection;
        let (ensemble, features, features_ms) = self.prepare(selection)?;
        let first = &ensemble.models[0].info;
        let started = Instant::now();
        let rows = features.shortest();
        let max_h = ensemble.horizons.iter().copied().max().unwrap_or(0) as usize;
        let test_start = ensemble
            .models
            .iter()
            .map(|m| m.info.split.test.0)
            .max()
            .unwrap_or(i64::MIN);
        let from = request.from_ts.unwrap_or(test_start);
        let to = request.to_ts.unwrap_or(i64::MAX);
        // Rows whose every horizon has a realized close.
        let origins: Vec<usize> = (0..rows.rows().saturating_sub(max_h))
            .filter(|&r| (from..=to).contains(&rows.ts[r]))
            .collect();
        let (Some(&first_row), Some(&last_row)) = (origins.first(), origins.last()) else {
            return Err(EngineError::InvalidRequest(format!(
                "no bar between {} and {} has a known outcome for every horizon",
                format_ts(from),
                if to == i64::MAX {
                    "the end".into()
                } else {
                    format_ts(to)
                }
            )));
        };
        progress.report(ProgressEvent {
            stage: Stage::Backtest,
            done: 0,
            total: Some(origins.len() as u64),
            message: None,
            epoch: None,
        });
        let ts: Vec<i64> = origins.iter().map(|&r| rows.ts[r]).collect();
        let placed = self.predict_placed(selection, &ensemble, &features, &ts)?;
        let prediction = &placed.value;
        let mut horizons = Vec::with_capacity(ensemble.horizons.len());
        for (j, &h) in ensemble.horizons.iter().enumerate() {
            if cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            let w = weights(&ensemble, selection.combine, j);
            let base = baseline_quantiles(&ensemble, j);
            let mut score = Score::default();
            for (i, &r) in origins.iter().enumerate() {
                let (close, realized) = (rows.close[r], rows.close[r + h as usize]);
                let preds: Vec<f64> = prediction.per_model.iter().map(|p| p.get(i, j)).collect();
                let c = combine(&ensemble, selection.combine, &w, j, &preds);
                score.add(close, realized, &c, (base[5], base[95]));
            }
            horizons.push(score.finish(h));
            progress.report(ProgressEvent {
                stage: Stage::Backtest,
                done: origins.len() as u64 * (j as u64 + 1) / ensemble.horizons.len() as u64,
                total: Some(origins.len() as u64),
                message: Some(format!("horizon {h}")),
                epoch: None,
            });
        }
        Ok(BacktestReport {
            symbol: first.symbol.clone(),
            timeframe: first.timeframe,
            combine: selection.combine,
            models: ensemble.models.iter().map(|m| m.info.id.clone()).collect(),
            first_ts: rows.ts[first_row],
            last_ts: rows.ts[last_row],
            horizons,
            fell_back: placed.fell_back,
            device: placed.device.resolved,
            elapsed_ms: features_ms + started.elapsed().as_secs_f64() * 1e3,
        })
    }
}

/// The size of predicting `bars` bars with `ensemble`, for the cost model: its forests' walk
/// when it has forests (their trees outweigh any linear model), else its autoencoder
/// members' encoders when it has any, else its models' products.
fn inference_workload(ensemble: &Ensemble, bars: usize) -> Workload {
    let cols = ensemble
        .models
        .iter()
        .map(|m| m.info.n_features)
        .max()
        .unwrap_or(0);
    let trees: usize = ensemble
        .models
        .iter()
        .filter_map(|m| match &m.info.regressor {
            RegressorSpec::RandomForest(forest) => Some(forest.n_estimators),
            _ => None,
        })
        .sum();
    let neural = ensemble.models.iter().any(|m| {
        matches!(
            m.info.encoder,
            EncoderSpec::Autoencoder { .. } | EncoderSpec::Vae { .. }
        )
    });
    if trees > 0 {
        Workload::forest_predict(bars, cols, trees)
    } else if neural {
        // Each bar through every member's encoder outweighs the linear heads.
        Workload::encoder_inference(ensemble.models.len(), bars, cols)
    } else {
        Workload::inference(ensemble.models.len(), bars, cols)
    }
}

impl Workbench {
    /// The ensemble's predictions at `ts`, where the selection places them (a GPU failing
    /// mid-way under "if available" or `auto` hands the batch to the CPU).
    fn predict_placed(
        &self,
        selection: &ModelSelection,
        ensemble: &Ensemble,
        features: &FeatureSets,
        ts: &[i64],
    ) -> Result<Placed<EnsemblePrediction>, EngineError> {
        self.calibrate_costs_for(selection.device);
        self.devices.place(
            selection.device,
            ENSEMBLE_INFERENCE.sized(inference_workload(ensemble, ts.len())),
            |device| ensemble.predict(features, ts, device),
            EngineError::device_failure,
        )
    }
}

/// Running sums of one horizon's backtest.
#[derive(Default)]
struct Score {
    n: usize,
    abs_err: f64,
    baseline_abs_err: f64,
    hits: usize,
    moves: usize,
    covered: usize,
    baseline_covered: usize,
    width: f64,
    baseline_width: f64,
}

impl Score {
    fn add(&mut self, close: f64, realized: f64, c: &crate::ensemble::Combined, base: (f64, f64)) {
        self.n += 1;
        self.abs_err += (close * c.point.exp() - realized).abs();
        self.baseline_abs_err += (close - realized).abs();
        if realized != close {
            self.moves += 1;
            let up = realized > close;
            if c.point != 0.0 && (c.point > 0.0) == up {
                self.hits += 1;
            }
        }
        let (lo, hi) = (close * c.q05.exp(), close * c.q95.exp());
        self.covered += usize::from((lo..=hi).contains(&realized));
        self.width += (hi - lo) / close;
        let (blo, bhi) = (close * base.0.exp(), close * base.1.exp());
        self.baseline_covered += usize::from((blo..=bhi).contains(&realized));
        self.baseline_width += (bhi - blo) / close;
    }

    fn finish(self, horizon: u32) -> BacktestHorizon {
        let n = self.n.max(1) as f64;
        let mae = self.abs_err / n;
        let baseline_mae = self.baseline_abs_err / n;
        BacktestHorizon {
            horizon,
            n: self.n,
            mae_price: mae,
            baseline_mae_price: baseline_mae,
            skill: if baseline_mae > 0.0 {
                1.0 - mae / baseline_mae
            } else {
                0.0
            },
            directional_accuracy: self.hits as f64 / self.moves.max(1) as f64,
            coverage: self.covered as f64 / n,
            baseline_coverage: self.baseline_covered as f64 / n,
            mean_band_width: self.width / n,
            baseline_mean_band_width: self.baseline_width / n,
        }
    }
}
