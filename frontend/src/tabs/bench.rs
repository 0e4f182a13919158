//! The Benchmark tab: run a suite on the CPU and every GPU with progress and cancel, see one
//! run as bars (log time, speedup over the CPU) and a table, and compare two stored runs.

use forexgpt_protocol::{AppError, BenchComparison, BenchRequest, BenchRun, BenchSize, BenchSuite};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::charts::BenchBars;
use crate::format;
use crate::ipc::{Args, JobControl, call};
use crate::widgets::{ErrorBox, JobProgressView, empty_row};

#[component]
pub fn BenchTab() -> impl IntoView {
    let suite = RwSignal::new(BenchSuite::Forecast);
    let size = RwSignal::new(BenchSize::Small);
    let job = JobControl::new();
    let version = RwSignal::new(0u32);
    let shown = RwSignal::new(None::<i64>);
    let runs = LocalResource::new(move || {
        version.track();
        call::<Vec<BenchRun>>("bench_runs", Args::new())
    });
    let run = move |_| {
        let request = BenchRequest {
            suite: suite.get_untracked(),
            size: size.get_untracked(),
            ..BenchRequest::default()
        };
        job.run("run_benchmark", request, move |r: BenchRun| {
            shown.set(Some(r.id));
            version.update(|v| *v += 1);
        });
    };
    let list = Signal::derive(move || runs.get().and_then(Result::ok).unwrap_or_default());
    let shown_run = move || {
        let runs = list.get();
        match shown.get() {
            Some(id) => runs.into_iter().find(|r| r.id == id),
            None => runs.into_iter().next(),
        }
    };
    view! {
        <h2>"Run a benchmark"</h2>
        <div class="form">
            <label>
                "suite "
                <select data-test="bench-suite" on:change=move |ev| {
                    if let Some(s) = BenchSuite::parse(&event_target_value(&ev)) {
                        suite.set(s);
                    }
                }>
                    {BenchSuite::ALL
                        .map(|s| view! { <option value=s.name() selected=move || suite.get() == s>{s.name()}</option> })
                        .collect_view()}
                </select>
            </label>
            <label>
                "size "
                <select data-test="bench-size" on:change=move |ev| {
                    if let Some(s) = BenchSize::parse(&event_target_value(&ev)) {
                        size.set(s);
                    }
                }>
                    {BenchSize::ALL
                        .map(|s| view! { <option value=s.name() selected=move || size.get() == s>{s.name()}</option> })
                        .collect_view()}
                </select>
            </label>
            <span class="hint">"small: under a minute on a 2-core CPU; large: regressors on 1M × 128 (for GPU machines)"</span>
            <button class="primary" data-test="bench-button" on:click=run
                prop:disabled=move || job.is_running()>"Run"</button>
            <button on:click=move |_| job.cancel() prop:disabled=move || !job.is_running()>"Cancel"</button>
        </div>
        <JobProgressView progress=job.progress test_id="bench-progress" />
        <ErrorBox error=job.error />
        {move || shown_run().map(|r| view! { <RunView run=r /> })}
        <History runs=list shown=shown version=version />
    }
}

#[component]
fn RunView(run: BenchRun) -> impl IntoView {
    let header = format!(
        "Run #{} — {}, suite {}, {} repeats — {} ({} threads); devices: {}; v{}{}",
        run.id,
        format::ts(run.created_ts),
        run.settings.suite,
        run.settings.repeats,
        run.machine.cpu,
        run.machine.cpu_threads,
        run.machine.devices.join(", "),
        run.app_version,
        run.git_rev
            .as_deref()
            .map_or(String::new(), |g| format!(" ({g})"))
    );
    let rows = run
        .results
        .iter()
        .map(|r| {
            view! {
                <tr>
                    <td>{r.operation.clone()}</td>
                    <td>{r.size.clone()}</td>
                    <td>{r.device.clone()}</td>
                    <td>{format::ms(r.median_ms)}</td>
                    <td>{format!("{} – {}", format::ms(r.min_ms), format::ms(r.max_ms))}</td>
                    <td>{format::ms(r.first_run_ms)}</td>
                    <td>{r.max_rel_diff_vs_cpu.map(|d| format!("{d:.1e}"))}</td>
                </tr>
            }
        })
        .collect_view();
    let failures = (!run.machine.failures.is_empty()).then(|| {
        let items = run
            .machine
            .failures
            .iter()
            .map(|f| view! { <li>{f.clone()}</li> })
            .collect_view();
        view! {
            <div class="notice" data-test="bench-failures">
                "Failed on their GPU (not in the table):"
                <ul>{items}</ul>
            </div>
        }
    });
    view! {
        <h2>"Results"</h2>
        <p class="success" data-test="bench-run-header">{header}</p>
        <BenchBars results=run.results.clone() />
        <table class="list" data-test="bench-table">
            <thead><tr><th>"operation"</th><th>"size"</th><th>"device"</th><th>"median"</th><th>"range"</th><th>"first (cold) run"</th><th>"max rel. diff vs CPU"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
        {failures}
    }
}

/// Stored runs, newest first: show one, pick two to compare, delete.
#[component]
fn History(
    #[prop(into)] runs: Signal<Vec<BenchRun>>,
    shown: RwSignal<Option<i64>>,
    version: RwSignal<u32>,
) -> impl IntoView {
    let a = RwSignal::new(None::<i64>);
    let b = RwSignal::new(None::<i64>);
    let error = RwSignal::new(None::<AppError>);
    let comparison = RwSignal::new(None::<(i64, i64, Vec<BenchComparison>)>);
    let compare = move |_| {
        let (Some(ra), Some(rb)) = (a.get_untracked(), b.get_untracked()) else {
            return;
        };
        error.set(None);
        spawn_local(async move {
            match call::<Vec<BenchComparison>>(
                "compare_bench_runs",
                Args::new().with("a", &ra).with("b", &rb),
            )
            .await
            {
                Ok(rows) => comparison.set(Some((ra, rb, rows))),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let delete = move |id: i64| {
        spawn_local(async move {
            match call::<()>("delete_bench_run", Args::new().with("id", &id)).await {
                Ok(()) => {
                    if shown.get_untracked() == Some(id) {
                        shown.set(None);
                    }
                    version.update(|v| *v += 1);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let row = move |r: BenchRun| {
        let id = r.id;
        view! {
            <tr class:selected=move || shown.get() == Some(id)>
                <td>{format!("#{id}")}</td>
                <td>{format::ts(r.created_ts)}</td>
                <td>{r.settings.suite.clone()}</td>
                <td>{r.results.len()}</td>
                <td>{r.machine.devices.join(", ")}</td>
                <td><input type="radio" name="bench-a" on:change=move |_| a.set(Some(id)) /></td>
                <td><input type="radio" name="bench-b" on:change=move |_| b.set(Some(id)) /></td>
                <td>
                    <button class="small" on:click=move |_| shown.set(Some(id))>"Show"</button>
                    <button class="small" on:click=move |_| delete(id)>"Delete"</button>
                </td>
            </tr>
        }
    };
    view! {
        <h2>"History"</h2>
        <ErrorBox error=error />
        <table class="list" data-test="bench-history">
            <thead><tr><th>"run"</th><th>"when"</th><th>"suite"</th><th>"results"</th><th>"devices"</th><th>"A"</th><th>"B"</th><th></th></tr></thead>
            <tbody>{move || {
                let list = runs.get();
                if list.is_empty() {
                    return empty_row(8, "bench-history-empty",
                        "No benchmark runs yet. Press Run above: every run is kept here with its machine, \
                         devices and version, and two runs can be compared.".into()).into_any();
                }
                list.into_iter().map(row).collect_view().into_any()
            }}</tbody>
        </table>
        <button on:click=compare prop:disabled=move || a.get().is_none() || b.get().is_none()>"Compare A and B"</button>
        {move || comparison.get().map(|(ra, rb, rows)| {
            if rows.is_empty() {
                view! { <p class="notice">{format!("Runs #{ra} and #{rb} share no operation (name, size and device).")}</p> }.into_any()
            } else {
                let rows = rows.into_iter().map(|c| view! {
                    <tr>
                        <td>{c.operation}</td><td>{c.size}</td><td>{c.device}</td>
                        <td>{format::ms(c.a_median_ms)}</td><td>{format::ms(c.b_median_ms)}</td>
                        <td>{format!("{:.2}×", c.speedup_b_over_a)}</td>
                    </tr>
                }).collect_view();
                view! {
                    <table class="list" data-test="bench-compare">
                        <thead><tr><th>"operation"</th><th>"size"</th><th>"device"</th>
                            <th>{format!("#{ra}")}</th><th>{format!("#{rb}")}</th><th>{format!("#{rb} vs #{ra}")}</th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                }.into_any()
            }
        })}
    }
}
