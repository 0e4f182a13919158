//! The Training tab: a series, horizons, the encoder × regressor grid and its main parameters,
//! "Use GPU (if available)", live progress with cancel, the metrics of what was trained, and
//! the stored models.

use forexgpt_protocol::{
    AppError, DeviceRequest, EncoderSpec, ErrorUnit, FeatureSpec, ForestSpec, MaxFeatures,
    ModelGrid, ModelList, NeuralEncoderSpec, RegressorKind, SplitSpec, StoredModel, TargetSpec,
    TrainReport, TrainRequest, counted,
};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::app::Shared;
use crate::charts::LossChart;
use crate::format::{self, parse_list};
use crate::ipc::{Args, JobControl, call};
use crate::widgets::{
    ErrorBox, GpuCheckbox, JobProgressView, SeriesSelect, empty_row, parse_series_key,
};

/// What the form holds, read into a request when Train is pressed.
#[derive(Clone, Copy)]
struct Form {
    series: RwSignal<String>,
    horizons: RwSignal<String>,
    window: RwSignal<String>,
    use_none: RwSignal<bool>,
    use_pca: RwSignal<bool>,
    components: RwSignal<String>,
    use_ae: RwSignal<bool>,
    use_vae: RwSignal<bool>,
    hidden: RwSignal<String>,
    latent: RwSignal<String>,
    epochs: RwSignal<String>,
    learning_rate: RwSignal<String>,
    seeds: RwSignal<String>,
    regressors: [RwSignal<bool>; 4],
    trees: RwSignal<String>,
    max_depth: RwSignal<String>,
    max_features: RwSignal<String>,
    alphas: RwSignal<String>,
    l1_ratio: RwSignal<String>,
    use_gpu: RwSignal<bool>,
}

impl Form {
    fn new() -> Form {
        Form {
            series: RwSignal::new(String::new()),
            horizons: RwSignal::new("1, 4, 12, 24".into()),
            window: RwSignal::new("16".into()),
            use_none: RwSignal::new(true),
            use_pca: RwSignal::new(false),
            components: RwSignal::new("16".into()),
            use_ae: RwSignal::new(false),
            use_vae: RwSignal::new(false),
            hidden: RwSignal::new("128, 64".into()),
            latent: RwSignal::new("16".into()),
            epochs: RwSignal::new("100".into()),
            learning_rate: RwSignal::new("0.001".into()),
            seeds: RwSignal::new("42".into()),
            regressors: [
                RwSignal::new(true),
                RwSignal::new(false),
                RwSignal::new(false),
                RwSignal::new(false),
            ],
            alphas: RwSignal::new(String::new()),
            l1_ratio: RwSignal::new("0.5".into()),
            trees: RwSignal::new("100".into()),
            max_depth: RwSignal::new(String::new()),
            max_features: RwSignal::new("1.0".into()),
            use_gpu: RwSignal::new(false),
        }
    }

    /// The autoencoder / VAE network from the form (other settings at their defaults).
    fn network(self) -> Result<NeuralEncoderSpec, String> {
        let number = |value: RwSignal<String>, field: &str| {
            value
                .get_untracked()
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("{field}: give a whole number"))
        };
        let net = NeuralEncoderSpec {
            hidden: parse_list::<usize>(&self.hidden.get_untracked(), "hidden layers")?,
            latent: number(self.latent, "latent size")?,
            epochs: number(self.epochs, "epochs")?,
            learning_rate: self
                .learning_rate
                .get_untracked()
                .trim()
                .parse()
                .map_err(|_| "learning rate: give a number, e.g. 0.001")?,
            ..NeuralEncoderSpec::default()
        };
        net.check().map_err(|e| format!("autoencoder: {e}"))?;
        Ok(net)
    }

    /// The random forest from the form (other settings at scikit-learn's defaults).
    fn forest(self) -> Result<ForestSpec, String> {
        let n_estimators = self
            .trees
            .get_untracked()
            .trim()
            .parse()
            .map_err(|_| "trees: give a whole number")?;
        let depth = self.max_depth.get_untracked();
        let max_depth = match depth.trim() {
            "" => None,
            d => Some(
                d.parse()
                    .map_err(|_| "max depth: give a whole number, or leave it empty")?,
            ),
        };
        let forest = ForestSpec {
            n_estimators,
            max_depth,
            max_features: MaxFeatures::parse(&self.max_features.get_untracked())?,
            ..ForestSpec::default()
        };
        forest.check().map_err(|e| format!("random forest: {e}"))?;
        Ok(forest)
    }

    /// The request, or a message naming the field that is wrong.
    fn request(self) -> Result<TrainRequest, String> {
        let (symbol, timeframe) =
            parse_series_key(&self.series.get_untracked()).ok_or("choose a series")?;
        let horizons = parse_list::<u32>(&self.horizons.get_untracked(), "horizons")?;
        if horizons.contains(&0) {
            return Err("horizons: every horizon must be at least 1 bar".into());
        }
        let window = self
            .window
            .get_untracked()
            .trim()
            .parse::<u32>()
            .map_err(|_| "window: give a whole number of bars")?;
        let mut encoders = Vec::new();
        if self.use_none.get_untracked() {
            encoders.push(EncoderSpec::None);
        }
        if self.use_pca.get_untracked() {
            let n_components = self
                .components
                .get_untracked()
                .trim()
                .parse()
                .map_err(|_| "PCA components: give a whole number")?;
            encoders.push(EncoderSpec::Pca {
                n_components,
                whiten: false,
            });
        }
        if self.use_ae.get_untracked() || self.use_vae.get_untracked() {
            let seeds = parse_seeds(&self.seeds.get_untracked())?;
            encoders.extend(networks(
                &self.network()?,
                &seeds,
                self.use_ae.get_untracked(),
                self.use_vae.get_untracked(),
            ));
        }
        if encoders.is_empty() {
            return Err("choose at least one encoder".into());
        }
        let regressors: Vec<RegressorKind> = RegressorKind::ALL
            .into_iter()
            .zip(self.regressors)
            .filter(|(_, on)| on.get_untracked())
            .map(|(kind, _)| kind)
            .collect();
        if regressors.is_empty() {
            return Err("choose at least one regressor".into());
        }
        let alpha_text = self.alphas.get_untracked();
        let alphas = if alpha_text.trim().is_empty() {
            Vec::new()
        } else {
            parse_list::<f64>(&alpha_text, "alpha")?
        };
        let l1_ratio = self
            .l1_ratio
            .get_untracked()
            .trim()
            .parse()
            .map_err(|_| "l1_ratio: give a number between 0 and 1")?;
        let grid = ModelGrid {
            encoders,
            regressors,
            alphas,
            l1_ratio,
            // The forest's fields are read only when a forest is trained.
            forest: if self.regressors[3].get_untracked() {
                self.forest()?
            } else {
                ForestSpec::default()
            },
            ..ModelGrid::default()
        };
        let use_gpu = self.use_gpu.get_untracked();
        Ok(TrainRequest {
            symbol,
            timeframe,
            features: FeatureSpec {
                window,
                ..FeatureSpec::default()
            },
            targets: TargetSpec { horizons },
            split: SplitSpec::default(),
            models: grid.configs(),
            device: DeviceRequest::from_checkbox(use_gpu),
        })
    }
}

/// The seeds field: one network per seed, each seed once.
fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let seeds = parse_list::<u64>(text, "seeds")?;
    for (i, seed) in seeds.iter().enumerate() {
        if seeds[..i].contains(seed) {
            return Err(format!("seeds: {seed} is given twice"));
        }
    }
    Ok(seeds)
}

/// The autoencoders and VAEs to train: one network of `net`'s shape per seed (a seed
/// ensemble; on a GPU the networks train together, in the same launches).
fn networks(net: &NeuralEncoderSpec, seeds: &[u64], ae: bool, vae: bool) -> Vec<EncoderSpec> {
    let seeded = |seed: u64| NeuralEncoderSpec {
        seed,
        ..net.clone()
    };
    let mut specs: Vec<EncoderSpec> = Vec::new();
    if ae {
        specs.extend(
            seeds
                .iter()
                .map(|&s| EncoderSpec::Autoencoder { net: seeded(s) }),
        );
    }
    if vae {
        specs.extend(seeds.iter().map(|&s| EncoderSpec::vae(seeded(s))));
    }
    specs
}

fn text_input(value: RwSignal<String>, test_id: &'static str, size: &'static str) -> impl IntoView {
    view! {
        <input type="text" data-test=test_id size=size
            prop:value=move || value.get()
            on:input=move |ev| value.set(event_target_value(&ev)) />
    }
}

fn checkbox(value: RwSignal<bool>, label: &'static str, test_id: &'static str) -> impl IntoView {
    view! {
        <label>
            <input type="checkbox" data-test=test_id prop:checked=move || value.get()
                on:change=move |ev| value.set(event_target_checked(&ev)) />
            {label}
        </label>
    }
}

#[component]
pub fn TrainingTab() -> impl IntoView {
    let shared = expect_context::<Shared>();
    let form = Form::new();
    let job = JobControl::new();
    let error = job.error;
    let report = RwSignal::new(None::<TrainReport>);
    let train = move |_| {
        let request = match form.request() {
            Ok(r) => r,
            Err(message) => {
                error.set(Some(AppError {
                    kind: forexgpt_protocol::AppErrorKind::InvalidInput,
                    message,
                }));
                return;
            }
        };
        report.set(None);
        job.run("train_models", request, move |r: TrainReport| {
            report.set(Some(r));
            shared.models_version.update(|v| *v += 1);
        });
    };
    view! {
        <h2>"Train models"</h2>
        <div class="form">
            <label>"series " <SeriesSelect series=shared.series_list() selected=form.series test_id="train-series" /></label>
            <label>"horizons (bars) " {text_input(form.horizons, "train-horizons", "12")}</label>
            <label>"input window " {text_input(form.window, "train-window", "4")}</label>
        </div>
        <div class="form">
            <span class="group-label">"encoders"</span>
            {checkbox(form.use_none, "none", "encoder-none")}
            {checkbox(form.use_pca, "PCA", "encoder-pca")}
            <label>"components " {text_input(form.components, "pca-components", "4")}</label>
            {checkbox(form.use_ae, "Autoencoder", "encoder-ae")}
            {checkbox(form.use_vae, "VAE", "encoder-vae")}
        </div>
        <div class="form">
            <span class="group-label">"networks"</span>
            <label>"hidden " {text_input(form.hidden, "net-hidden", "8")}</label>
            <label>"latent " {text_input(form.latent, "net-latent", "4")}</label>
            <label>"epochs " {text_input(form.epochs, "net-epochs", "4")}</label>
            <label>"learning rate " {text_input(form.learning_rate, "net-lr", "6")}</label>
            <label>"seeds " {text_input(form.seeds, "net-seeds", "10")}</label>
            <span class="hint">"(Adam, batch 64, early stopping after 10 epochs without a better validation loss; \
                a list of seeds trains one network each, together on a GPU)"</span>
        </div>
        <div class="form">
            <span class="group-label">"regressors"</span>
            {checkbox(form.regressors[0], "Ridge", "regressor-ridge")}
            {checkbox(form.regressors[1], "Lasso", "regressor-lasso")}
            {checkbox(form.regressors[2], "ElasticNet", "regressor-elasticnet")}
            <label>"alpha " {text_input(form.alphas, "train-alpha", "10")}</label>
            <span class="hint">"(empty: 1 for ridge, 1e-5 for lasso / elastic net; a list trains one model each)"</span>
            <label>"l1_ratio " {text_input(form.l1_ratio, "train-l1", "4")}</label>
        </div>
        <div class="form">
            <span class="group-label">"forest"</span>
            {checkbox(form.regressors[3], "Random forest", "regressor-rf")}
            <label>"trees " {text_input(form.trees, "rf-trees", "5")}</label>
            <label>"max depth " {text_input(form.max_depth, "rf-depth", "4")}</label>
            <label>"max features " {text_input(form.max_features, "rf-features", "5")}</label>
            <span class="hint">"(depth empty: grow until leaves are pure; features: 1.0, sqrt, log2, a fraction or a count; bootstrap, 256 bins)"</span>
        </div>
        <div class="form">
            <GpuCheckbox label="Use GPU (if available)" checked=form.use_gpu
                unavailable=shared.gpu_unavailable() test_id="train-gpu" />
            <button class="primary" data-test="train-button" on:click=train
                prop:disabled=move || job.is_running()>"Train"</button>
            <button data-test="train-cancel" on:click=move |_| job.cancel() prop:disabled=move || !job.is_running()>"Cancel"</button>
        </div>
        <JobProgressView progress=job.progress test_id="train-progress" />
        {move || {
            job.progress
                .epochs
                .get()
                .into_iter()
                .map(|(label, points)| view! { <LossChart label points /> })
                .collect_view()
        }}
        <ErrorBox error=error />
        {move || report.get().map(|r| view! { <TrainResult report=r /> })}
        <ModelTable />
    }
}

/// Validation metrics of each trained model, per horizon, beside the naive forecast: one group
/// of rows per model, its id and device once.
#[component]
fn TrainResult(report: TrainReport) -> impl IntoView {
    let summary = format!(
        "Trained {} on {} {}: {} rows × {} features in {} (features {}).",
        counted(report.models.len(), "model", "models"),
        report.symbol,
        report.timeframe,
        report.rows,
        report.n_features,
        format::ms(report.elapsed_ms),
        format::ms(report.features_ms)
    );
    let unit = report
        .models
        .first()
        .and_then(|m| m.info.metrics.first())
        .map_or(ErrorUnit::LogReturn, |h| h.unit);
    let rows = report
        .models
        .iter()
        .flat_map(|m| {
            let info = m.info.clone();
            let span = info.metrics.len().max(1).to_string();
            info.metrics
                .iter()
                .enumerate()
                .map(|(k, h)| {
                    let head = (k == 0).then(|| view! {
                        <td class="group-cell" rowspan=span.clone() data-test="train-model-id">{info.id.clone()}</td>
                        <td class="group-cell" rowspan=span.clone()
                            title=info.device.choice.clone().unwrap_or_default()>{info.device.label.clone()}</td>
                    });
                    view! {
                        <tr class:group-start=k == 0>
                            {head}
                            <td>{h.horizon}</td>
                            <td>{format!("{:.3e}", h.validation.mae)}</td>
                            <td>{format!("{:.3e}", h.baseline_validation.mae)}</td>
                            <td>{format!("{:.4}", h.validation.r2)}</td>
                            <td>{format::percent(h.validation.directional_accuracy)}</td>
                        </tr>
                    }
                })
                .collect_view()
        })
        .collect_view();
    let notices = report
        .models
        .iter()
        .filter_map(|m| m.info.fell_back.clone())
        .next()
        .map(|n| view! { <p class="notice">"Ran on the CPU: "{n}</p> });
    let dropped = report
        .models
        .first()
        .map(|m| m.info.dropped_columns.clone())
        .filter(|d| !d.is_empty())
        .map(|d| {
            view! {
                <p class="notice" data-test="train-dropped">
                    {format!("Left out {} constant on the training rows (nothing to learn from): {}.",
                        counted(d.len(), "feature column", "feature columns"), d.join(", "))}
                </p>
            }
        });
    // `auto`'s reasons for the devices it chose (the models that fell back said theirs above).
    let mut choices: Vec<String> = Vec::new();
    for m in report.models.iter().filter(|m| m.info.fell_back.is_none()) {
        if let Some(c) = &m.info.device.choice
            && !choices.contains(c)
        {
            choices.push(c.clone());
        }
    }
    let choices = (!choices.is_empty()).then(|| {
        view! {
            <ul class="hint" data-test="train-device-choice">
                {choices.into_iter().map(|c| view! { <li>{c}</li> }).collect_view()}
            </ul>
        }
    });
    view! {
        <p class="success" data-test="train-report">{summary}</p>
        {notices}
        {choices}
        {dropped}
        <table class="list" data-test="train-results">
            <thead><tr><th>"model"</th><th>"device"</th><th>"horizon"</th>
                <th>{format!("val. MAE ({})", unit.label())}</th><th>{format!("naive MAE ({})", unit.label())}</th>
                <th>"val. R²"</th><th>"direction"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
        <p class="hint">"Errors of the log return over each horizon (1e-3 ≈ a 0.1 % move), on the validation rows. \
            A MAE above the naive one, or an R² below 0, means no better than forecasting no change: usual for FX, not a fault."</p>
    }
}

/// Every stored model with where it was fitted and its first horizon's validation metrics.
#[component]
fn ModelTable() -> impl IntoView {
    let shared = expect_context::<Shared>();
    let models = LocalResource::new(move || {
        shared.models_version.track();
        call::<ModelList>("list_models", Args::new())
    });
    let error = RwSignal::new(None::<AppError>);
    let delete = move |id: String| {
        spawn_local(async move {
            match call::<()>("delete_model", Args::new().with("id", &id)).await {
                Ok(()) => shared.models_version.update(|v| *v += 1),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let row = move |m: StoredModel| {
        let info = m.info;
        let first = info.metrics.first().cloned();
        let id = info.id.clone();
        view! {
            <tr>
                <td>{info.id.clone()}</td>
                <td>{format!("{} {}", info.symbol, info.timeframe)}</td>
                <td>{info.encoder.label()}</td>
                <td>{info.regressor.label()}</td>
                <td>{info.device.label.clone()}</td>
                <td>{format::ms(info.fit_ms)}</td>
                <td>{first.as_ref().map(|h| format!("h{}: {:.4}", h.horizon, h.validation.r2))}</td>
                <td>{format::date(info.created_ts)}</td>
                <td><button class="small" on:click=move |_| delete(id.clone())>"Delete"</button></td>
            </tr>
        }
    };
    view! {
        <h2>"Stored models"</h2>
        <ErrorBox error=error />
        {move || match models.get() {
            None => view! { <p class="hint">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <div class="error" role="alert">{e.message}</div> }.into_any(),
            Some(Ok(list)) => view! {
                <table class="list" data-test="model-table">
                    <thead><tr><th>"id"</th><th>"series"</th><th>"encoder"</th><th>"regressor"</th><th>"fitted on"</th><th>"fit"</th><th>"val. R²"</th><th>"created"</th><th></th></tr></thead>
                    <tbody>
                        {list.models.is_empty().then(|| empty_row(9, "models-empty",
                            "No stored models. Choose encoders and regressors above and press Train: every model is kept here and can be used in the Forecast tab.".into()))}
                        {list.models.into_iter().map(row).collect_view()}
                    </tbody>
                </table>
                {list.unreadable.into_iter().map(|u| view! { <p class="notice">"Unreadable model file: "{u}</p> }).collect_view()}
            }.into_any(),
        }}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_seeds_makes_one_network_per_seed_and_kind() {
        let net = NeuralEncoderSpec::default();
        let seeds = parse_seeds("42, 43,44").unwrap();
        let specs = networks(&net, &seeds, true, true);
        assert_eq!(specs.len(), 6);
        let labels: Vec<String> = specs.iter().map(EncoderSpec::label).collect();
        assert_eq!(labels[0], "ae16");
        assert_eq!(labels[1], "ae16s43");
        assert!(labels[3].starts_with("vae16"), "{labels:?}");
        assert!(labels[5].ends_with("s44"), "{labels:?}");
        assert_eq!(networks(&net, &seeds, false, false).len(), 0);
        assert_eq!(
            parse_seeds("42, 42").unwrap_err(),
            "seeds: 42 is given twice"
        );
        assert!(
            parse_seeds("")
                .unwrap_err()
                .contains("give at least one value")
        );
        assert!(
            parse_seeds("-1")
                .unwrap_err()
                .contains("'-1' is not a valid number")
        );
    }
}
