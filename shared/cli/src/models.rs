//! `train`, `models`, `forecast` and `backtest`: arguments, requests and what they print.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use forexgpt_core::sample::{DEFAULT_SYMBOL, DEFAULT_TIMEFRAME};
use forexgpt_core::timestamp::{format_ts, parse_timestamp};
use forexgpt_engine::Workbench;
use forexgpt_protocol::{
    BacktestReport, BacktestRequest, Combine, DevicePreference, DeviceRequest, Forecast,
    ForecastRequest, ForestSpec, MaxFeatures, ModelConfig, ModelGrid, ModelSelection,
    RegressorKind, ResolvedDevice, StoredModel, Timeframe, TrainReport, TrainRequest, counted,
};

use crate::dataset::{DatasetArgs, SeriesArgs};
use crate::encoders::EncoderArgs;
use crate::progress::{BarProgress, ctrl_c_token};

/// The random forest's parameters (scikit-learn's names and defaults).
#[derive(Args, Debug, Clone)]
pub struct ForestArgs {
    /// Trees in the forest.
    #[arg(long, visible_alias = "trees", default_value_t = 100)]
    n_estimators: usize,
    /// Deepest level of a tree (default: grow until leaves are pure).
    #[arg(long)]
    max_depth: Option<usize>,
    #[arg(long, default_value_t = 2)]
    min_samples_split: usize,
    #[arg(long, default_value_t = 1)]
    min_samples_leaf: usize,
    /// Features per split: 1.0 (all), sqrt, log2, a fraction or a count.
    #[arg(long, default_value = "1.0", value_parser = MaxFeatures::parse)]
    max_features: MaxFeatures,
    /// Grow every tree on all rows instead of a bootstrap sample.
    #[arg(long)]
    no_bootstrap: bool,
    /// Share of rows each tree draws (bootstrap).
    #[arg(long)]
    max_samples: Option<f64>,
    #[arg(long, default_value_t = 42)]
    random_state: u64,
    /// Histogram bins per feature (2–256).
    #[arg(long, default_value_t = 256)]
    max_bins: usize,
    /// Compute the out-of-bag R².
    #[arg(long)]
    oob_score: bool,
}

impl ForestArgs {
    fn spec(&self) -> ForestSpec {
        ForestSpec {
            n_estimators: self.n_estimators,
            max_depth: self.max_depth,
            min_samples_split: self.min_samples_split,
            min_samples_leaf: self.min_samples_leaf,
            max_features: self.max_features,
            bootstrap: !self.no_bootstrap,
            max_samples: self.max_samples,
            random_state: self.random_state,
            max_bins: self.max_bins,
            oob_score: self.oob_score,
        }
    }
}

/// Where to run: `--device` and "if available".
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// auto, cuda, cuda:N, wgpu, wgpu:N or cpu.
    #[arg(long, default_value = "auto")]
    device: DevicePreference,
    /// Use a GPU if one is usable, else the CPU (with a notice) instead of failing.
    #[arg(long)]
    use_gpu: bool,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    series: SeriesArgs,
    #[command(flatten)]
    encoders: EncoderArgs,
    /// Regressors to try, comma separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ridge")]
    regressor: Vec<RegressorKind>,
    /// Regularization strengths to try, comma separated. Default: 1.0 for ridge and 1e-5 for
    /// lasso/elasticnet (targets are log returns of ~1e-3; scikit-learn's 1.0 would zero every
    /// coefficient).
    #[arg(long, value_delimiter = ',')]
    alpha: Vec<f64>,
    /// ElasticNet's L1 share.
    #[arg(long, default_value_t = 0.5)]
    l1_ratio: f64,
    /// Coordinate-descent sweeps (lasso, elasticnet).
    #[arg(long, default_value_t = 1000)]
    max_iter: usize,
    /// Coordinate-descent tolerance (lasso, elasticnet).
    #[arg(long, default_value_t = 1e-4)]
    tol: f64,
    #[command(flatten)]
    forest: ForestArgs,
    #[command(flatten)]
    dataset: DatasetArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args, Debug)]
pub struct ModelsArgs {
    #[command(subcommand)]
    action: Option<ModelsAction>,
}

#[derive(Subcommand, Debug)]
enum ModelsAction {
    /// Everything stored about one model.
    Show { id: String },
    /// Delete models.
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct SelectionArgs {
    /// A model id (repeat for an ensemble). Default: every model of the series.
    #[arg(long = "model", value_name = "ID")]
    models: Vec<String>,
    #[arg(long, default_value = DEFAULT_SYMBOL)]
    symbol: String,
    #[arg(long, default_value_t = DEFAULT_TIMEFRAME)]
    timeframe: Timeframe,
    /// How an ensemble's predictions are combined.
    #[arg(long, value_enum, default_value = "mean")]
    combine: Combine,
    /// auto, cuda, cuda:N, wgpu, wgpu:N or cpu (GPU inference). Default: cpu, or auto with
    /// --use-gpu.
    #[arg(long)]
    device: Option<DevicePreference>,
    /// GPU inference if a GPU is usable (and expected to be faster), else the CPU with a notice.
    #[arg(long)]
    use_gpu: bool,
}

#[derive(Args, Debug)]
pub struct ForecastArgs {
    #[command(flatten)]
    selection: SelectionArgs,
    /// Forecast from the last bar at or before this time (UTC), e.g. "2017-11-01 12:00".
    #[arg(long)]
    at: Option<String>,
}

#[derive(Args, Debug)]
pub struct BacktestArgs {
    #[command(flatten)]
    selection: SelectionArgs,
    /// First forecast bar (UTC). Default: the start of the models' test part.
    #[arg(long)]
    from: Option<String>,
    /// Last forecast bar (UTC).
    #[arg(long)]
    to: Option<String>,
}

fn time_arg(name: &str, value: Option<&str>) -> Result<Option<i64>> {
    value
        .map(|v| parse_timestamp(v).map_err(|e| anyhow::anyhow!("--{name} '{v}': {e}")))
        .transpose()
}

impl SelectionArgs {
    fn selection(self) -> ModelSelection {
        let named = !self.models.is_empty();
        ModelSelection {
            ids: self.models,
            // With ids, the models name their series; the defaults would only get in the way.
            symbol: (!named || self.symbol != DEFAULT_SYMBOL).then_some(self.symbol),
            timeframe: (!named || self.timeframe != DEFAULT_TIMEFRAME).then_some(self.timeframe),
            combine: self.combine,
            // `--use-gpu` alone means "a GPU if available": `auto`, not the CPU default.
            device: DeviceRequest {
                preference: self.device.unwrap_or(if self.use_gpu {
                    DevicePreference::Auto
                } else {
                    DevicePreference::Cpu
                }),
                gpu_if_available: self.use_gpu,
            },
        }
    }
}

fn configs(args: &TrainArgs) -> Result<Vec<ModelConfig>> {
    let encoders = args.encoders.specs()?;
    let regressors = args.regressor.clone();
    Ok(ModelGrid {
        encoders,
        regressors,
        alphas: args.alpha.clone(),
        l1_ratio: args.l1_ratio,
        max_iter: args.max_iter,
        tol: args.tol,
        forest: args.forest.spec(),
    }
    .configs())
}

pub fn train(wb: &Workbench, json: bool, args: TrainArgs) -> Result<()> {
    let (features, targets, split) = args.dataset.specs();
    let request = TrainRequest {
        symbol: args.series.symbol.clone(),
        timeframe: args.series.timeframe,
        features,
        targets,
        split,
        models: configs(&args)?,
        device: DeviceRequest {
            preference: args.device.device,
            gpu_if_available: args.device.use_gpu,
        },
    };
    let progress = BarProgress::new(json);
    let report = wb.train(&request, &progress, &ctrl_c_token());
    progress.finish();
    let report = report?;
    if json {
        return crate::output::print_json(&report);
    }
    print_train(&report);
    Ok(())
}

pub fn models(wb: &Workbench, json: bool, args: ModelsArgs) -> Result<()> {
    match args.action {
        None => {
            let (models, errors) = wb.list_models()?;
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            if json {
                return crate::output::print_json(
                    &serde_json::json!({ "models": models, "unreadable": errors }),
                );
            }
            print_model_list(&models, wb.models_dir()?);
            for e in errors {
                eprintln!("warning: {e}");
            }
        }
        Some(ModelsAction::Show { id }) => {
            let model = wb.load_model(&id)?.stored();
            if json {
                return crate::output::print_json(&model);
            }
            print_model(&model);
        }
        Some(ModelsAction::Delete { ids }) => {
            let mut missing = Vec::new();
            for id in &ids {
                if !wb.delete_model(id)? {
                    missing.push(id.clone());
                }
            }
            if json {
                return crate::output::print_json(
                    &serde_json::json!({ "deleted": ids.iter().filter(|i| !missing.contains(i)).collect::<Vec<_>>(), "missing": missing }),
                );
            }
            for id in ids.iter().filter(|i| !missing.contains(i)) {
                outln!("deleted {id}");
            }
            if !missing.is_empty() {
                bail!("no such model: {}", missing.join(", "));
            }
        }
    }
    Ok(())
}

pub fn forecast(wb: &Workbench, json: bool, args: ForecastArgs) -> Result<()> {
    let request = ForecastRequest {
        at_ts: time_arg("at", args.at.as_deref())?,
        selection: args.selection.selection(),
    };
    let forecast = wb.forecast(&request)?;
    if json {
        return crate::output::print_json(&forecast);
    }
    print_forecast(&forecast);
    Ok(())
}

pub fn backtest(wb: &Workbench, json: bool, args: BacktestArgs) -> Result<()> {
    let request = BacktestRequest {
        from_ts: time_arg("from", args.from.as_deref())?,
        to_ts: time_arg("to", args.to.as_deref())?,
        selection: args.selection.selection(),
    };
    let progress = BarProgress::new(json);
    let report = wb.backtest(&request, &progress, &ctrl_c_token());
    progress.finish();
    let report = report?;
    if json {
        return crate::output::print_json(&report);
    }
    print_backtest(&report);
    Ok(())
}

fn print_train(r: &TrainReport) {
    outln!(
        "{} {}: {} rows × {} features (built in {:.0} ms); {} in {:.0} ms",
        r.symbol,
        r.timeframe,
        r.rows,
        r.n_features,
        r.features_ms,
        counted(r.models.len(), "model", "models"),
        r.elapsed_ms
    );
    if let Some(dir) = r
        .models
        .first()
        .and_then(|m| std::path::Path::new(&m.path).parent())
    {
        outln!("saved in {}", dir.display());
    }
    // Why models ran on the CPU, once per distinct reason instead of once per model.
    let mut reasons: Vec<(&str, usize)> = Vec::new();
    for reason in r.models.iter().filter_map(|m| m.info.fell_back.as_deref()) {
        match reasons.iter_mut().find(|(known, _)| *known == reason) {
            Some((_, count)) => *count += 1,
            None => reasons.push((reason, 1)),
        }
    }
    for (reason, count) in reasons {
        let models = if count == 1 { "model" } else { "models" };
        outln!(
            "note: {count} {models} ran on the CPU: {}",
            short_reason(reason)
        );
    }
    for m in &r.models {
        outln!("");
        print_model(m);
    }
}

/// Why a forecast or backtest ran where it did: the reason the CPU stood in for a GPU, else
/// `auto`'s reason for its choice.
fn print_placement(fell_back: Option<&str>, device: &ResolvedDevice) {
    match (fell_back, &device.choice) {
        (Some(reason), _) => outln!("note: ran on the CPU: {}", short_reason(reason)),
        (None, Some(choice)) => outln!("{choice}"),
        (None, None) => {}
    }
}

/// A fallback reason for a one-line note: "no usable GPU" stands for the probe's long account
/// of every backend, which `forexgpt devices` shows in full.
fn short_reason(reason: &str) -> String {
    let reason = reason
        .strip_prefix("running on the CPU: ")
        .unwrap_or(reason);
    let reason = reason.strip_suffix("; ran on the CPU").unwrap_or(reason);
    if reason.starts_with("no usable GPU") {
        "no usable GPU (`forexgpt devices` says why)".to_string()
    } else {
        reason.to_string()
    }
}

fn print_model(m: &StoredModel) {
    let i = &m.info;
    outln!("{}  ({})", i.id, m.path);
    outln!(
        "  {} + {} on {} {}; {} training rows; fitted on {} in {:.1} ms",
        i.encoder.label(),
        i.regressor.label(),
        i.symbol,
        i.timeframe,
        i.train_rows,
        i.device.label,
        i.fit_ms
    );
    if let Some(choice) = &i.device.choice {
        outln!("  {choice}");
    }
    outln!(
        "  train {} → {}, validation {} → {}, test {} → {} (UTC)",
        format_ts(i.split.train.0),
        format_ts(i.split.train.1),
        format_ts(i.split.validation.0),
        format_ts(i.split.validation.1),
        format_ts(i.split.test.0),
        format_ts(i.split.test.1)
    );
    if !i.dropped_columns.is_empty() {
        outln!(
            "  left out (constant on the training rows): {}",
            i.dropped_columns.join(", ")
        );
    }
    outln!("  errors in log-return units (the target); naive: the no-change forecast");
    outln!(
        "  {:>7} {:>11} {:>11} {:>8} {:>8} {:>11} {:>11} {:>8}",
        "horizon",
        "val MAE",
        "naive MAE",
        "val R²",
        "val dir",
        "test MAE",
        "naive MAE",
        "test dir"
    );
    for h in &i.metrics {
        outln!(
            "  {:>7} {:>11.3e} {:>11.3e} {:>8.3} {:>7.1}% {:>11.3e} {:>11.3e} {:>7.1}%",
            h.horizon,
            h.validation.mae,
            h.baseline_validation.mae,
            h.validation.r2,
            h.validation.directional_accuracy * 100.0,
            h.test.mae,
            h.baseline_test.mae,
            h.test.directional_accuracy * 100.0
        );
    }
}

fn print_model_list(models: &[StoredModel], dir: &std::path::Path) {
    if models.is_empty() {
        outln!(
            "no models in {} (train one with `forexgpt train`)",
            dir.display()
        );
        return;
    }
    outln!(
        "{:<48} {:<8} {:<3} {:<8} {:<30} {:>12} {:<19}",
        "id",
        "symbol",
        "tf",
        "encoder",
        "regressor",
        "test MAE h1",
        "created (UTC)"
    );
    for m in models {
        let i = &m.info;
        let mae = i
            .metrics
            .first()
            .map_or_else(String::new, |h| format!("{:.3e}", h.test.mae));
        outln!(
            "{:<48} {:<8} {:<3} {:<8} {:<30} {:>12} {:<19}",
            i.id,
            i.symbol,
            i.timeframe,
            i.encoder.label(),
            i.regressor.label(),
            mae,
            format_ts(i.created_ts)
        );
    }
    outln!(
        "{} in {}",
        counted(models.len(), "model", "models"),
        dir.display()
    );
}

fn print_forecast(f: &Forecast) {
    outln!(
        "{} {} from {} UTC, close {:.5}; {}, {:?}; features {:.1} ms, models on {} {:.3} ms",
        f.symbol,
        f.timeframe,
        format_ts(f.origin_ts),
        f.origin_close,
        counted(f.models.len(), "model", "models"),
        f.combine,
        f.features_ms,
        f.device.label,
        f.inference_ms
    );
    print_placement(f.fell_back.as_deref(), &f.device);
    outln!(
        "{:>7} {:>11} {:>10} {:>10} {:>10} {:>10}   {:>10} {:>10}",
        "horizon",
        "return",
        "price",
        "q05",
        "q50",
        "q95",
        "naive q05",
        "naive q95"
    );
    for h in &f.horizons {
        outln!(
            "{:>7} {:>+11.3e} {:>10.5} {:>10.5} {:>10.5} {:>10.5}   {:>10.5} {:>10.5}",
            h.horizon,
            h.expected_return,
            h.price,
            h.q05,
            h.q50,
            h.q95,
            h.baseline_q05,
            h.baseline_q95
        );
    }
}

fn print_backtest(r: &BacktestReport) {
    outln!(
        "{} {}: forecasts from {} to {} UTC; {}, {:?}; on {} in {:.0} ms",
        r.symbol,
        r.timeframe,
        format_ts(r.first_ts),
        format_ts(r.last_ts),
        counted(r.models.len(), "model", "models"),
        r.combine,
        r.device.label,
        r.elapsed_ms
    );
    print_placement(r.fell_back.as_deref(), &r.device);
    outln!(
        "{:>7} {:>6} {:>11} {:>11} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "horizon",
        "n",
        "MAE",
        "naive MAE",
        "skill",
        "dir",
        "coverage",
        "naive cov",
        "width",
        "naive w"
    );
    for h in &r.horizons {
        outln!(
            "{:>7} {:>6} {:>11.3e} {:>11.3e} {:>+8.3} {:>7.1}% {:>8.1}% {:>8.1}% {:>8.3}% {:>8.3}%",
            h.horizon,
            h.n,
            h.mae_price,
            h.baseline_mae_price,
            h.skill,
            h.directional_accuracy * 100.0,
            h.coverage * 100.0,
            h.baseline_coverage * 100.0,
            h.mean_band_width * 100.0,
            h.baseline_mean_band_width * 100.0
        );
    }
    outln!(
        "MAE in price units, widths in % of price; skill = 1 − MAE / naive MAE: below 0 is no \
         better than \"no change\" (common for FX); coverage of the q05–q95 band (0.90 is \
         calibrated)"
    );
}
