//! The window: a header with what `auto` runs on, the tab bar, and the five tabs. Every tab
//! stays mounted (hidden when not shown), so work started in one goes on while another is open.

use forexgpt_protocol::{AppError, DeviceInfo, SeriesInfo};
use leptos::prelude::*;

use crate::ipc::{Args, call};
use crate::tabs::{BenchTab, DataTab, DevicesTab, ForecastTab, TrainingTab};
use crate::widgets::gpu_unavailable;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Data,
    Training,
    Forecast,
    Benchmark,
    Devices,
}

impl Tab {
    const ALL: [Tab; 5] = [
        Tab::Data,
        Tab::Training,
        Tab::Forecast,
        Tab::Benchmark,
        Tab::Devices,
    ];

    const fn label(self) -> &'static str {
        match self {
            Tab::Data => "Data",
            Tab::Training => "Training",
            Tab::Forecast => "Forecast",
            Tab::Benchmark => "Benchmark",
            Tab::Devices => "Devices",
        }
    }
}

/// What several tabs share: the probed devices, the stored series, and counters that tabs bump
/// after changing models or benchmark runs so that the others reload their lists.
#[derive(Clone, Copy)]
pub struct Shared {
    pub devices: LocalResource<Result<DeviceInfo, AppError>>,
    pub series: LocalResource<Result<Vec<SeriesInfo>, AppError>>,
    pub series_version: RwSignal<u32>,
    pub models_version: RwSignal<u32>,
}

impl Shared {
    /// `None` while probing; then `Some(None)` when a GPU is usable, or `Some(Some(reason))`.
    pub fn gpu_unavailable(self) -> Signal<Option<Option<String>>> {
        Signal::derive(move || {
            self.devices.get().map(|r| match r {
                Ok(info) => gpu_unavailable(&info),
                Err(e) => Some(format!("the devices could not be probed: {}", e.message)),
            })
        })
    }

    /// The stored series, empty while loading or after an error.
    pub fn series_list(self) -> Signal<Vec<SeriesInfo>> {
        Signal::derive(move || self.series.get().and_then(Result::ok).unwrap_or_default())
    }
}

#[component]
pub fn App() -> impl IntoView {
    let series_version = RwSignal::new(0u32);
    let shared = Shared {
        devices: LocalResource::new(|| call::<DeviceInfo>("device_info", Args::new())),
        series: LocalResource::new(move || {
            series_version.track();
            call::<Vec<SeriesInfo>>("list_series", Args::new())
        }),
        series_version,
        models_version: RwSignal::new(0),
    };
    provide_context(shared);
    let tab = RwSignal::new(Tab::Data);
    let device_badge = move || match shared.devices.get() {
        None => "probing devices…".to_string(),
        Some(Ok(info)) => format!("auto → {}", info.auto.label),
        Some(Err(e)) => format!("devices: {}", e.message),
    };
    let pane = move |which: Tab, content: AnyView| {
        view! {
            <section class="pane" data-test=format!("pane-{}", which.label().to_lowercase())
                style:display=move || if tab.get() == which { "block" } else { "none" }>
                {content}
            </section>
        }
    };
    view! {
        <header>
            <h1>"ForexGPT Workbench"</h1>
            <span class="badge" data-test="device-badge">{device_badge}</span>
        </header>
        <nav>
            {Tab::ALL
                .into_iter()
                .map(|t| {
                    view! {
                        <button
                            class:active=move || tab.get() == t
                            data-test=format!("tab-{}", t.label().to_lowercase())
                            on:click=move |_| tab.set(t)
                        >
                            {t.label()}
                        </button>
                    }
                })
                .collect_view()}
        </nav>
        <main>
            {pane(Tab::Data, view! { <DataTab /> }.into_any())}
            {pane(Tab::Training, view! { <TrainingTab /> }.into_any())}
            {pane(Tab::Forecast, view! { <ForecastTab /> }.into_any())}
            {pane(Tab::Benchmark, view! { <BenchTab /> }.into_any())}
            {pane(Tab::Devices, view! { <DevicesTab /> }.into_any())}
        </main>
    }
}
