//! The Data tab: the stored series, a candlestick chart of one of them, and CSV import with
//! progress, cancel and the importer's errors (file, line, field) shown as they are.

use forexgpt_protocol::{
    Candle, CandlesRequest, CsvFormat, ImportReport, ImportRequest, Timeframe,
};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::app::Shared;
use crate::charts::CandleChart;
use crate::format;
use crate::ipc::{Args, JobControl, call};
use crate::widgets::{ErrorBox, JobProgressView, SeriesSelect, empty_row, parse_series_key};

/// How many of the latest bars the chart loads.
const CHART_BARS: [usize; 3] = [500, 2_000, 10_000];

#[component]
pub fn DataTab() -> impl IntoView {
    let shared = expect_context::<Shared>();
    let series = shared.series_list();
    let selected = RwSignal::new(String::new());
    let chart_bars = RwSignal::new(CHART_BARS[0]);
    let candles = LocalResource::new(move || {
        let key = selected.get();
        let last = chart_bars.get();
        async move {
            let Some((symbol, timeframe)) = parse_series_key(&key) else {
                return Ok(Vec::new());
            };
            let request = CandlesRequest {
                symbol,
                timeframe,
                last,
            };
            call::<Vec<Candle>>("series_candles", Args::new().with("request", &request)).await
        }
    });
    let bars = Signal::derive(move || candles.get().and_then(Result::ok).unwrap_or_default());
    let candle_error = Signal::derive(move || candles.get().and_then(Result::err));
    let list_error = Signal::derive(move || shared.series.get().and_then(Result::err));
    view! {
        <h2>"Stored series"</h2>
        <ErrorBox error=list_error />
        <table class="list" data-test="series-table">
            <thead>
                <tr><th>"symbol"</th><th>"timeframe"</th><th>"bars"</th><th>"first"</th><th>"last"</th><th>"in-session gaps"</th><th>"source"</th></tr>
            </thead>
            <tbody>
                {move || {
                    let list = series.get();
                    if list.is_empty() && shared.series.get().is_some() {
                        return empty_row(7, "series-empty",
                            "No series stored. Import a CSV file of candles below (MetaTrader, HistData, Dukascopy or plain OHLCV).".into()).into_any();
                    }
                    list
                        .into_iter()
                        .map(|s| {
                            let key = crate::widgets::series_key(&s.symbol, s.timeframe);
                            let pick = key.clone();
                            let gaps = s.gaps.as_ref().map_or("—".to_string(), |g| g.session_hole_count.to_string());
                            view! {
                                <tr class="clickable" class:selected=move || selected.get() == key
                                    on:click=move |_| selected.set(pick.clone())>
                                    <td>{s.symbol.clone()}</td>
                                    <td>{s.timeframe.to_string()}</td>
                                    <td>{s.bars}</td>
                                    <td>{format::ts(s.first_ts)}</td>
                                    <td>{format::ts(s.last_ts)}</td>
                                    <td>{gaps}</td>
                                    <td>{s.source.clone()}</td>
                                </tr>
                            }
                        })
                        .collect_view()
                        .into_any()
                }}
            </tbody>
        </table>
        <h2>"Chart"</h2>
        <div class="row">
            <SeriesSelect series=series selected=selected test_id="chart-series" />
            <label>
                "load the latest "
                <select on:change=move |ev| {
                    if let Ok(n) = event_target_value(&ev).parse() {
                        chart_bars.set(n);
                    }
                }>
                    {CHART_BARS.map(|n| view! { <option value=n.to_string()>{n}</option> }).collect_view()}
                </select>
                " bars"
            </label>
            <span class="hint">"Wheel to zoom, drag to pan."</span>
        </div>
        <ErrorBox error=candle_error />
        <CandleChart candles=bars />
        <ImportForm />
    }
}

#[component]
fn ImportForm() -> impl IntoView {
    let shared = expect_context::<Shared>();
    let path = RwSignal::new(String::new());
    let symbol = RwSignal::new(String::new());
    let timeframe = RwSignal::new(Timeframe::H1);
    let format = RwSignal::new(CsvFormat::Auto);
    let replace = RwSignal::new(false);
    let job = JobControl::new();
    let error = job.error;
    let report = RwSignal::new(None::<ImportReport>);

    let browse = move |_| {
        spawn_local(async move {
            match call::<Option<String>>("pick_csv_file", Args::new()).await {
                Ok(Some(p)) => path.set(p),
                Ok(None) => {}
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let import = move |_| {
        let request = ImportRequest {
            path: path.get_untracked().trim().to_string(),
            symbol: symbol.get_untracked().trim().to_string(),
            timeframe: timeframe.get_untracked(),
            format: format.get_untracked(),
            replace: replace.get_untracked(),
        };
        report.set(None);
        job.run("import_csv", request, move |r: ImportReport| {
            report.set(Some(r));
            shared.series_version.update(|v| *v += 1);
        });
    };
    view! {
        <h2>"Import a CSV file"</h2>
        <div class="form">
            <label class="wide">
                "file "
                <input type="text" data-test="import-path" placeholder="/path/to/prices.csv"
                    prop:value=move || path.get()
                    on:input=move |ev| path.set(event_target_value(&ev)) />
                <button on:click=browse>"Browse…"</button>
            </label>
            <label>
                "symbol "
                <input type="text" data-test="import-symbol" placeholder="EURUSD" size="10"
                    prop:value=move || symbol.get()
                    on:input=move |ev| symbol.set(event_target_value(&ev)) />
            </label>
            <label>
                "timeframe "
                <select data-test="import-timeframe" on:change=move |ev| {
                    if let Ok(tf) = event_target_value(&ev).parse() {
                        timeframe.set(tf);
                    }
                }>
                    {Timeframe::ALL
                        .map(|tf| view! { <option value=tf.as_str() selected=tf == Timeframe::H1>{tf.as_str()}</option> })
                        .collect_view()}
                </select>
            </label>
            <label>
                "layout "
                <select on:change=move |ev| {
                    if let Ok(f) = event_target_value(&ev).parse() {
                        format.set(f);
                    }
                }>
                    {CsvFormat::ALL.map(|f| view! { <option value=f.as_str()>{f.as_str()}</option> }).collect_view()}
                </select>
            </label>
            <label>
                <input type="checkbox" prop:checked=move || replace.get()
                    on:change=move |ev| replace.set(event_target_checked(&ev)) />
                "Replace the stored series"
            </label>
            <button class="primary" data-test="import-button" on:click=import
                prop:disabled=move || job.is_running() || path.get().trim().is_empty() || symbol.get().trim().is_empty()>
                "Import"
            </button>
            <button on:click=move |_| job.cancel() prop:disabled=move || !job.is_running()>"Cancel"</button>
        </div>
        <JobProgressView progress=job.progress test_id="import-progress" />
        <ErrorBox error=error test_id="import-error" />
        {move || report.get().map(|r| view! {
            <p class="success" data-test="import-report">
                {format!(
                    "Imported {} {}: {} rows read, {} new, {} unchanged ({} – {}), {} layout, {} in-session gaps.",
                    r.symbol, r.timeframe, r.rows_read, r.inserted, r.unchanged,
                    format::ts(r.first_ts), format::ts(r.last_ts), r.format, r.gaps.session_hole_count
                )}
                {r.replaced_sample.then(|| format!(
                    " {} {} held only the built-in sample: your file replaced it.", r.symbol, r.timeframe
                ))}
            </p>
        })}
    }
}
