//! The Forecast tab: one model or an ensemble of the stored models of a series, combined by
//! mean, median or validation weights, with "GPU inference"; the price path and its quantile
//! band drawn over recent candles, a table per horizon, timings, and a walk-forward backtest.

use std::collections::BTreeSet;

use forexgpt_protocol::{
    AppError, BacktestReport, BacktestRequest, Candle, CandlesRequest, Combine, DeviceRequest,
    Forecast, ForecastRequest, ModelList, ModelSelection, ResolvedDevice, counted,
};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::app::Shared;
use crate::charts::ForecastChart;
use crate::format;
use crate::ipc::{Args, JobControl, call};
use crate::widgets::{ErrorBox, GpuCheckbox, JobProgressView, SeriesSelect, parse_series_key};

/// Recent bars drawn left of the forecast.
const CONTEXT_BARS: usize = 120;

#[component]
pub fn ForecastTab() -> impl IntoView {
    let shared = expect_context::<Shared>();
    let series = RwSignal::new(String::new());
    let combine = RwSignal::new(Combine::Mean);
    let use_gpu = RwSignal::new(false);
    let picked = RwSignal::new(BTreeSet::<String>::new());
    let error = RwSignal::new(None::<AppError>);
    let busy = RwSignal::new(false);
    let result = RwSignal::new(None::<(Vec<Candle>, Forecast)>);
    let backtest = RwSignal::new(None::<BacktestReport>);
    let job = JobControl::new();
    let models = LocalResource::new(move || {
        shared.models_version.track();
        call::<ModelList>("list_models", Args::new())
    });
    let series_models = Signal::derive(move || {
        let Some((symbol, timeframe)) = parse_series_key(&series.get()) else {
            return Vec::new();
        };
        models
            .get()
            .and_then(Result::ok)
            .map(|list| {
                list.models
                    .into_iter()
                    .filter(|m| m.info.symbol == symbol && m.info.timeframe == timeframe)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    });
    // A new series starts with no explicit pick (= all of its models).
    Effect::new(move |_| {
        series.track();
        picked.set(BTreeSet::new());
    });
    let selection = move || -> Option<ModelSelection> {
        let (symbol, timeframe) = parse_series_key(&series.get_untracked())?;
        let gpu = use_gpu.get_untracked();
        Some(ModelSelection {
            ids: picked.get_untracked().into_iter().collect(),
            symbol: Some(symbol),
            timeframe: Some(timeframe),
            combine: combine.get_untracked(),
            device: DeviceRequest::from_checkbox(gpu),
        })
    };
    let run_forecast = move |_| {
        let Some(selection) = selection() else { return };
        error.set(None);
        busy.set(true);
        spawn_local(async move {
            let request = ForecastRequest {
                selection: selection.clone(),
                at_ts: None,
            };
            let outcome = async {
                let forecast =
                    call::<Forecast>("forecast", Args::new().with("request", &request)).await?;
                let candles = CandlesRequest {
                    symbol: forecast.symbol.clone(),
                    timeframe: forecast.timeframe,
                    last: CONTEXT_BARS,
                };
                let bars =
                    call::<Vec<Candle>>("series_candles", Args::new().with("request", &candles))
                        .await?;
                Ok::<_, AppError>((bars, forecast))
            }
            .await;
            busy.set(false);
            match outcome {
                Ok(r) => result.set(Some(r)),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let run_backtest = move |_| {
        let Some(selection) = selection() else { return };
        error.set(None);
        backtest.set(None);
        let request = BacktestRequest {
            selection,
            from_ts: None,
            to_ts: None,
        };
        job.run("backtest", request, move |r: BacktestReport| {
            backtest.set(Some(r));
        });
    };
    let model_checks = move || {
        let list = series_models.get();
        if list.is_empty() {
            return view! { <p class="hint" data-test="no-models">"No stored models for this series: train some in the Training tab."</p> }.into_any();
        }
        list.into_iter()
            .map(|m| {
                let id = m.info.id.clone();
                let toggle = id.clone();
                let checked = move || picked.with(|p| p.contains(&id));
                view! {
                    <label class="model-check">
                        <input type="checkbox" prop:checked=checked on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            picked.update(|p| {
                                if on { p.insert(toggle.clone()); } else { p.remove(&toggle); }
                            });
                        } />
                        {format!("{} — {} / {}", m.info.id, m.info.encoder.label(), m.info.regressor.label())}
                    </label>
                }
            })
            .collect_view()
            .into_any()
    };
    view! {
        <h2>"Forecast"</h2>
        <div class="form">
            <label>"series " <SeriesSelect series=shared.series_list() selected=series test_id="forecast-series" /></label>
            <label>
                "combine "
                <select data-test="forecast-combine" on:change=move |ev| {
                    combine.set(match event_target_value(&ev).as_str() {
                        "median" => Combine::Median,
                        "weighted" => Combine::Weighted,
                        _ => Combine::Mean,
                    });
                }>
                    <option value="mean">"mean"</option>
                    <option value="median">"median"</option>
                    <option value="weighted">"weighted (1 / validation MSE)"</option>
                </select>
            </label>
            <GpuCheckbox label="GPU inference" checked=use_gpu unavailable=shared.gpu_unavailable() test_id="forecast-gpu" />
        </div>
        <div class="models">
            <span class="hint">"Models (none ticked: the ensemble of all of them)"</span>
            {model_checks}
        </div>
        <div class="form">
            <button class="primary" data-test="forecast-button" on:click=run_forecast
                prop:disabled=move || busy.get() || series_models.with(Vec::is_empty)>"Forecast"</button>
            <button data-test="backtest-button" on:click=run_backtest
                prop:disabled=move || job.is_running() || series_models.with(Vec::is_empty)>"Backtest"</button>
            <button on:click=move |_| job.cancel() prop:disabled=move || !job.is_running()>"Cancel"</button>
        </div>
        <JobProgressView progress=job.progress test_id="backtest-progress" />
        <ErrorBox error=error />
        <ErrorBox error=job.error />
        {move || result.get().map(|(candles, forecast)| view! { <ForecastView candles=candles forecast=forecast /> })}
        {move || backtest.get().map(|r| view! { <BacktestView report=r /> })}
    }
}

#[component]
fn ForecastView(candles: Vec<Candle>, forecast: Forecast) -> impl IntoView {
    let summary = format!(
        "{} {} from {} (close {}): {}, {:?}, on {} — features {}, inference {}.",
        forecast.symbol,
        forecast.timeframe,
        format::ts(forecast.origin_ts),
        format::price(forecast.origin_close),
        counted(forecast.models.len(), "model", "models"),
        forecast.combine,
        forecast.device.label,
        format::ms(forecast.features_ms),
        format::ms(forecast.inference_ms),
    );
    let notice = placement_note(forecast.fell_back.clone(), &forecast.device);
    let step = forecast.timeframe.seconds();
    let rows = forecast
        .horizons
        .iter()
        .map(|h| {
            view! {
                <tr>
                    <td>{h.horizon}</td>
                    <td>{format::ts(forecast.origin_ts + step * i64::from(h.horizon))}</td>
                    <td>{format!("{:+.3e}", h.expected_return)}</td>
                    <td>{format::price(h.price)}</td>
                    <td>{format::price(h.q05)}</td>
                    <td>{format::price(h.q50)}</td>
                    <td>{format::price(h.q95)}</td>
                    <td>{format!("{} – {}", format::price(h.baseline_q05), format::price(h.baseline_q95))}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <p class="success" data-test="forecast-summary">{summary}</p>
        {notice}
        <ForecastChart candles=candles forecast=forecast.clone() />
        <p class="legend">
            <span class="key path"></span>"forecast  "
            <span class="key band"></span>"q05–q95 band  "
            <span class="key naive"></span>"naive (no change) band"
        </p>
        <table class="list" data-test="forecast-table">
            <thead><tr><th>"horizon"</th><th>"bar"</th><th>"log return"</th><th>"price"</th><th>"q05"</th><th>"q50"</th><th>"q95"</th><th>"naive band"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

/// Why a forecast or backtest ran where it did: the reason the CPU stood in for the GPU, else
/// `auto`'s reason for its choice.
fn placement_note(fell_back: Option<String>, device: &ResolvedDevice) -> Option<AnyView> {
    match (fell_back, device.choice.clone()) {
        (Some(n), _) => Some(view! { <p class="notice">"Ran on the CPU: "{n}</p> }.into_any()),
        (None, Some(c)) => {
            Some(view! { <p class="hint" data-test="device-choice">{c}</p> }.into_any())
        }
        (None, None) => None,
    }
}

#[component]
fn BacktestView(report: BacktestReport) -> impl IntoView {
    let summary = format!(
        "Backtest {} – {}: {} on {}, {}.",
        format::ts(report.first_ts),
        format::ts(report.last_ts),
        counted(report.models.len(), "model", "models"),
        report.device.label,
        format::ms(report.elapsed_ms)
    );
    let rows = report
        .horizons
        .iter()
        .map(|h| {
            view! {
                <tr>
                    <td>{h.horizon}</td>
                    <td>{h.n}</td>
                    <td>{format!("{:.5}", h.mae_price)}</td>
                    <td>{format!("{:.5}", h.baseline_mae_price)}</td>
                    <td>{format!("{:+.4}", h.skill)}</td>
                    <td>{format::percent(h.directional_accuracy)}</td>
                    <td>{format!("{} / {}", format::percent(h.coverage), format::percent(h.baseline_coverage))}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <h2>"Backtest"</h2>
        <p class="success" data-test="backtest-summary">{summary}</p>
        {placement_note(report.fell_back.clone(), &report.device)}
        <table class="list">
            <thead><tr><th>"horizon"</th><th>"forecasts"</th><th>"MAE (price)"</th><th>"naive MAE (price)"</th><th>"skill"</th><th>"direction"</th><th>"band coverage (naive)"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
        <p class="hint">"MAE of the forecast price in the quote currency; skill = 1 − MAE / naive MAE: below 0 is no better than \
            forecasting no change, as is usual for FX."</p>
    }
}
