//! SVG charts: candles with zoom and pan, a forecast path with its quantile band over recent
//! candles, loss curves of network training, and benchmark bars on a logarithmic time axis.

use forexgpt_protocol::{BenchResult, Candle, EpochProgress, Forecast, auto_prefers_cpu, counted};
use leptos::prelude::*;

use crate::format;

const WIDTH: f64 = 1000.0;
/// Low enough that the Data tab's chart fits the default 1280×800 window.
const HEIGHT: f64 = 300.0;
/// Room for the price axis on the right and the time axis below.
const AXIS_RIGHT: f64 = 72.0;
const AXIS_BOTTOM: f64 = 22.0;
const PLOT_W: f64 = WIDTH - AXIS_RIGHT;
const PLOT_H: f64 = HEIGHT - AXIS_BOTTOM;

/// Maps prices in `[lo, hi]` to plot y (top = hi), with 4 % headroom.
#[derive(Clone, Copy)]
struct PriceScale {
    lo: f64,
    hi: f64,
}

impl PriceScale {
    fn new(lo: f64, hi: f64) -> PriceScale {
        let pad = ((hi - lo) * 0.04).max(hi.abs() * 1e-6);
        PriceScale {
            lo: lo - pad,
            hi: hi + pad,
        }
    }

    fn y(self, price: f64) -> f64 {
        PLOT_H * (self.hi - price) / (self.hi - self.lo)
    }

    fn ticks(self) -> Vec<f64> {
        (0..=4)
            .map(|i| self.lo + (self.hi - self.lo) * f64::from(i) / 4.0)
            .collect()
    }
}

fn price_axis(scale: PriceScale) -> impl IntoView {
    scale
        .ticks()
        .into_iter()
        .map(|p| {
            let y = scale.y(p);
            view! {
                <line class="grid" x1="0" x2=PLOT_W y1=y y2=y />
                <text class="axis" x=PLOT_W + 4.0 y=(y + 4.0).clamp(11.0, PLOT_H)>{format::price(p)}</text>
            }
        })
        .collect_view()
}

fn time_axis(times: &[(f64, i64)]) -> impl IntoView + use<> {
    times
        .iter()
        .map(|&(x, ts)| {
            view! { <text class="axis" x=x y=HEIGHT - 6.0 text-anchor="middle">{format::ts(ts)}</text> }
        })
        .collect_view()
}

/// Candle bodies and wicks of `bars`, bar `i` centred at `x(i)` with `slot` px per bar.
fn candle_marks<F: Fn(usize) -> f64>(
    bars: &[Candle],
    scale: PriceScale,
    x: F,
    slot: f64,
) -> impl IntoView + use<F> {
    let body_w = (slot * 0.7).max(1.0);
    bars.iter()
        .enumerate()
        .map(|(i, c)| {
            let cx = x(i);
            let up = c.close >= c.open;
            let (top, bottom) = if up {
                (c.close, c.open)
            } else {
                (c.open, c.close)
            };
            let body_h = (scale.y(bottom) - scale.y(top)).max(0.8);
            view! {
                <g class=if up { "candle up" } else { "candle down" }>
                    <line x1=cx x2=cx y1=scale.y(c.high) y2=scale.y(c.low) />
                    <rect x=cx - body_w / 2.0 y=scale.y(top) width=body_w height=body_h />
                </g>
            }
        })
        .collect_view()
}

/// Up to five evenly spaced time labels for bars placed by `x`.
fn time_labels(bars: &[Candle], x: impl Fn(usize) -> f64) -> Vec<(f64, i64)> {
    if bars.is_empty() {
        return Vec::new();
    }
    let step = (bars.len() / 5).max(1);
    (step / 2..bars.len())
        .step_by(step)
        .take(5)
        .map(|i| (x(i), bars[i].ts))
        .collect()
}

/// The visible window `[start, start + count)` after zooming by `factor` around `pivot`
/// (a share of the width) or panning; always inside `0..total` and at least 10 bars.
pub fn zoom_window(
    start: usize,
    count: usize,
    total: usize,
    factor: f64,
    pivot: f64,
) -> (usize, usize) {
    if total == 0 {
        return (0, 0);
    }
    let new_count = ((count as f64 * factor).round() as usize).clamp(10.min(total), total);
    let anchor = start as f64 + pivot.clamp(0.0, 1.0) * count as f64;
    let new_start = (anchor - pivot.clamp(0.0, 1.0) * new_count as f64)
        .round()
        .max(0.0) as usize;
    (new_start.min(total - new_count), new_count)
}

pub fn pan_window(start: usize, count: usize, total: usize, shift: f64) -> usize {
    let max_start = total.saturating_sub(count) as f64;
    (start as f64 + shift).round().clamp(0.0, max_start) as usize
}

/// Candles with mouse-wheel zoom (around the pointer), drag to pan, and buttons for both.
#[component]
pub fn CandleChart(#[prop(into)] candles: Signal<Vec<Candle>>) -> impl IntoView {
    let window = RwSignal::new((0usize, 0usize));
    let drag = RwSignal::new(None::<(i32, usize)>);
    Effect::new(move |_| {
        let total = candles.with(Vec::len);
        let count = total.min(150);
        window.set((total - count, count));
    });
    let total = move || candles.with(Vec::len);
    let zoom = move |factor: f64, pivot: f64| {
        let (start, count) = window.get_untracked();
        window.set(zoom_window(start, count, total(), factor, pivot));
    };
    let pivot_of = |ev: &web_sys::MouseEvent| {
        let width = leptos::prelude::event_target::<web_sys::Element>(ev)
            .closest("svg")
            .ok()
            .flatten()
            .map_or(1.0, |svg| svg.get_bounding_client_rect().width().max(1.0));
        (f64::from(ev.offset_x()) / width, width)
    };
    let body = move || {
        let (start, count) = window.get();
        candles.with(|all| {
            let end = (start + count).min(all.len());
            let bars = &all[start.min(end)..end];
            if bars.is_empty() {
                return view! { <text class="axis" x="20" y="40">"no bars"</text> }.into_any();
            }
            let lo = bars.iter().map(|c| c.low).fold(f64::INFINITY, f64::min);
            let hi = bars
                .iter()
                .map(|c| c.high)
                .fold(f64::NEG_INFINITY, f64::max);
            let scale = PriceScale::new(lo, hi);
            let slot = PLOT_W / bars.len() as f64;
            let x = move |i: usize| (i as f64 + 0.5) * slot;
            let labels = time_labels(bars, x);
            view! {
                {price_axis(scale)}
                {candle_marks(bars, scale, x, slot)}
                {time_axis(&labels)}
            }
            .into_any()
        })
    };
    let caption = move || {
        let (start, count) = window.get();
        candles.with(
            |all| match (all.get(start), all.get((start + count).saturating_sub(1))) {
                (Some(first), Some(last)) => format!(
                    "showing {} – {} ({} of the {} loaded)",
                    format::ts(first.ts),
                    format::ts(last.ts),
                    counted(count, "bar", "bars"),
                    all.len()
                ),
                _ => String::new(),
            },
        )
    };
    view! {
        <div class="chart-tools">
            <button on:click=move |_| zoom(0.7, 1.0) title="Zoom in">"+"</button>
            <button on:click=move |_| zoom(1.0 / 0.7, 1.0) title="Zoom out">"−"</button>
            <button on:click=move |_| {
                let (start, count) = window.get_untracked();
                window.set((pan_window(start, count, total(), -(count as f64) / 3.0), count));
            } title="Earlier">"◀"</button>
            <button on:click=move |_| {
                let (start, count) = window.get_untracked();
                window.set((pan_window(start, count, total(), count as f64 / 3.0), count));
            } title="Later">"▶"</button>
            <span class="caption" data-test="chart-caption">{caption}</span>
        </div>
        <svg
            class="chart candles"
            data-test="candle-chart"
            viewBox=format!("0 0 {WIDTH} {HEIGHT}")
            on:wheel=move |ev: web_sys::WheelEvent| {
                ev.prevent_default();
                let (pivot, _) = pivot_of(&ev);
                zoom(if ev.delta_y() > 0.0 { 1.25 } else { 0.8 }, pivot);
            }
            on:mousedown=move |ev: web_sys::MouseEvent| drag.set(Some((ev.client_x(), window.get_untracked().0)))
            on:mousemove=move |ev: web_sys::MouseEvent| {
                if let Some((x0, start0)) = drag.get_untracked() {
                    let (_, width) = pivot_of(&ev);
                    let (_, count) = window.get_untracked();
                    let shift = -f64::from(ev.client_x() - x0) / width * count as f64;
                    window.set((pan_window(start0, count, total(), shift), count));
                }
            }
            on:mouseup=move |_| drag.set(None)
            on:mouseleave=move |_| drag.set(None)
        >
            {body}
        </svg>
    }
}

/// Recent candles, then the forecast: the combined price path, its q05–q95 band and the naive
/// forecast's band (dashed), one bar per step to the right of the origin.
#[component]
pub fn ForecastChart(candles: Vec<Candle>, forecast: Forecast) -> impl IntoView {
    let max_h = forecast
        .horizons
        .iter()
        .map(|h| h.horizon)
        .max()
        .unwrap_or(1) as usize;
    let slots = candles.len() + max_h;
    let slot = PLOT_W / slots.max(1) as f64;
    let x = move |i: usize| (i as f64 + 0.5) * slot;
    let origin_i = candles.len().saturating_sub(1);
    let mut lo = candles.iter().map(|c| c.low).fold(f64::INFINITY, f64::min);
    let mut hi = candles
        .iter()
        .map(|c| c.high)
        .fold(f64::NEG_INFINITY, f64::max);
    for h in &forecast.horizons {
        lo = lo.min(h.q05).min(h.baseline_q05);
        hi = hi.max(h.q95).max(h.baseline_q95);
    }
    let scale = PriceScale::new(lo, hi);
    let origin = (x(origin_i), scale.y(forecast.origin_close));
    let at = |h: u32| x(origin_i + h as usize);
    let points = |f: &dyn Fn(&forexgpt_protocol::HorizonForecast) -> f64| {
        forecast
            .horizons
            .iter()
            .map(|h| format!("{:.1},{:.1}", at(h.horizon), scale.y(f(h))))
            .collect::<Vec<_>>()
    };
    let start = format!("{:.1},{:.1}", origin.0, origin.1);
    let band = {
        let upper = points(&|h| h.q95);
        let mut lower = points(&|h| h.q05);
        lower.reverse();
        format!("{start} {} {}", upper.join(" "), lower.join(" "))
    };
    let naive_upper = format!("{start} {}", points(&|h| h.baseline_q95).join(" "));
    let naive_lower = format!("{start} {}", points(&|h| h.baseline_q05).join(" "));
    let path = format!("{start} {}", points(&|h| h.price).join(" "));
    let dots = forecast
        .horizons
        .iter()
        .map(|h| view! { <circle class="forecast-dot" cx=at(h.horizon) cy=scale.y(h.price) r="3" /> })
        .collect_view();
    let labels = time_labels(&candles, x);
    view! {
        <svg class="chart forecast" data-test="forecast-chart" viewBox=format!("0 0 {WIDTH} {HEIGHT}")>
            {price_axis(scale)}
            {candle_marks(&candles, scale, x, slot)}
            <line class="origin" x1=origin.0 x2=origin.0 y1="0" y2=PLOT_H />
            <polygon class="band" points=band />
            <polyline class="naive-band" points=naive_upper />
            <polyline class="naive-band" points=naive_lower />
            <polyline class="forecast-path" points=path />
            {dots}
            {time_axis(&labels)}
        </svg>
    }
}

/// Training and validation loss per epoch of one network, on a shared linear axis from the
/// lowest to the highest loss seen (the first epochs of a VAE can dwarf the rest, so the
/// axis starts at the second epoch when there are enough of them).
#[component]
pub fn LossChart(label: String, points: Vec<EpochProgress>) -> impl IntoView {
    const H: f64 = 200.0;
    let epochs = points.first().map_or(1, |p| p.epochs).max(2) as f64;
    let skip = usize::from(points.len() > 5);
    let shown = || points.iter().skip(skip);
    let losses = || {
        shown()
            .flat_map(|p| [p.train_loss, p.validation_loss])
            .filter(|v| v.is_finite())
    };
    let lo = losses().fold(f64::INFINITY, f64::min);
    let hi = losses().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi.is_finite() {
        (lo, hi.max(lo + 1e-9))
    } else {
        (0.0, 1.0)
    };
    let scale = PriceScale::new(lo, hi);
    let x = |epoch: usize| PLOT_W * (epoch as f64 - 1.0) / (epochs - 1.0);
    let y = |v: f64| H * scale.y(v) / PLOT_H;
    let line = |value: fn(&EpochProgress) -> f64| {
        shown()
            .map(|p| format!("{:.1},{:.1}", x(p.epoch), y(value(p))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let ticks = scale
        .ticks()
        .into_iter()
        .map(|v| {
            let ty = y(v);
            view! {
                <line class="grid" x1="0" x2=PLOT_W y1=ty y2=ty />
                <text class="axis" x=PLOT_W + 4.0 y=(ty + 4.0).clamp(11.0, H)>{format!("{v:.4}")}</text>
            }
        })
        .collect_view();
    let last = points.last().map(|p| {
        format!(
            "{label}: epoch {}/{} · loss {:.4} · validation {:.4} · {:.0} rows/s \
             (solid: training, dashed: validation)",
            p.epoch, p.epochs, p.train_loss, p.validation_loss, p.samples_per_s
        )
    });
    view! {
        <p class="hint" data-test="loss-label">{last}</p>
        <svg class="chart loss" data-test="loss-chart" viewBox=format!("0 0 {WIDTH} {}", H + 6.0)>
            {ticks}
            <polyline class="loss-train" points=line(|p| p.train_loss) />
            <polyline class="loss-validation" points=line(|p| p.validation_loss) />
        </svg>
    }
}

/// One bar per result, grouped by operation and size, lengths on a log scale of the median
/// time, labelled with the time and the speedup over the group's CPU row.
#[component]
pub fn BenchBars(results: Vec<BenchResult>) -> impl IntoView {
    let mut groups: Vec<(String, Vec<&BenchResult>)> = Vec::new();
    for r in &results {
        let key = format!("{} · {}", r.operation, r.size);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rows)) => rows.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let positive = || results.iter().map(|r| r.median_ms).filter(|&m| m > 0.0);
    let lo = positive()
        .fold(f64::INFINITY, f64::min)
        .max(1e-4)
        .log10()
        .floor();
    let hi = positive()
        .fold(0.0, f64::max)
        .max(1e-3)
        .log10()
        .ceil()
        .max(lo + 1.0);
    // Room for a 36-character device label (see `short_device`) and for the longest value
    // label ("1719 ms  350× slower than cpu") after the longest bar.
    const LABEL_W: f64 = 250.0;
    const VALUE_W: f64 = 210.0;
    const ROW: f64 = 18.0;
    let bar_w = WIDTH - LABEL_W - VALUE_W;
    let length = |ms: f64| ((ms.max(1e-4).log10() - lo) / (hi - lo) * bar_w).max(2.0);
    let mut y = 0.0;
    let mut marks = Vec::new();
    for (key, rows) in &groups {
        y += ROW;
        marks.push(view! { <text class="group" x="0" y=y - 4.0>{key.clone()}</text> }.into_any());
        let cpu = rows.iter().find(|r| r.device == "cpu").map(|r| r.median_ms);
        for r in rows {
            let speedup = match cpu {
                Some(c) if r.device != "cpu" && r.median_ms > 0.0 => {
                    format!(" · {}", format::vs_cpu(c / r.median_ms))
                }
                _ => String::new(),
            };
            let class = format!("bar {}", device_class(&r.device));
            let title = match cpu {
                Some(c) if r.device != "cpu" && auto_prefers_cpu(r, c) => format!(
                    "{}: slower than the CPU here, so \"Use GPU\" runs this job on the CPU",
                    r.device
                ),
                _ => r.device.clone(),
            };
            marks.push(
                view! {
                    <g class=class>
                        <title>{title}</title>
                        <text class="device" x="12" y=y + 13.0>{short_device(&r.device)}</text>
                        <rect x=LABEL_W y=y + 3.0 width=length(r.median_ms) height=ROW - 6.0 />
                        <text class="value" x=LABEL_W + length(r.median_ms) + 6.0 y=y + 13.0>
                            {format!("{}{speedup}", format::ms(r.median_ms))}
                        </text>
                    </g>
                }
                .into_any(),
            );
            y += ROW;
        }
    }
    let height = y + 24.0;
    let decades = (lo as i32..=hi as i32)
        .map(|d| {
            let x = LABEL_W + (f64::from(d) - lo) / (hi - lo) * bar_w;
            view! {
                <line class="grid" x1=x x2=x y1="0" y2=y />
                <text class="axis" x=x y=y + 16.0 text-anchor="middle">{format::ms(10f64.powi(d))}</text>
            }
        })
        .collect_view();
    view! {
        <svg class="chart bench" data-test="bench-chart" viewBox=format!("0 0 {WIDTH} {height}")>
            {decades}
            {marks}
        </svg>
    }
}

/// A device's label short enough for the bars' label column: its id and the adapter's name,
/// without the driver details (`wgpu:0 (llvmpipe (LLVM 15.0.6, 256 bits), Vulkan, software)` →
/// `wgpu:0 llvmpipe`). The full name is the bar's tooltip and is in the table below.
fn short_device(device: &str) -> String {
    const MAX_CHARS: usize = 36;
    let label = match device.split_once(" (") {
        Some((id, rest)) => {
            let name = rest
                .split([',', '(', ')'])
                .next()
                .unwrap_or_default()
                .trim();
            format!("{id} {name}")
        }
        None => device.to_string(),
    };
    if label.chars().count() > MAX_CHARS {
        let cut: String = label.chars().take(MAX_CHARS - 1).collect();
        format!("{}…", cut.trim_end())
    } else {
        label
    }
}

/// The colour class of a result's device: our CPU, wgpu or CUDA, or a peer library.
fn device_class(device: &str) -> &'static str {
    let d = device.to_ascii_lowercase();
    if d == "cpu" {
        "cpu"
    } else if d.starts_with("cuda") {
        "cuda"
    } else if d.starts_with("wgpu") {
        "wgpu"
    } else {
        "peer"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zooming_keeps_the_pivot_bar_in_place_and_stays_inside() {
        // Zoom in around the middle of bars 100..200 of 1000.
        let (start, count) = zoom_window(100, 100, 1000, 0.5, 0.5);
        assert_eq!((start, count), (125, 50));
        // Zooming out past everything shows everything.
        assert_eq!(zoom_window(100, 100, 1000, 100.0, 0.5), (0, 1000));
        // Never fewer than 10 bars, nor more than there are.
        assert_eq!(zoom_window(0, 12, 1000, 0.1, 0.0).1, 10);
        assert_eq!(zoom_window(0, 5, 5, 0.1, 0.0), (0, 5));
        assert_eq!(zoom_window(0, 0, 0, 2.0, 0.5), (0, 0));
    }

    #[test]
    fn panning_stops_at_both_ends() {
        assert_eq!(pan_window(10, 100, 1000, -50.0), 0);
        assert_eq!(pan_window(850, 100, 1000, 500.0), 900);
        assert_eq!(pan_window(500, 100, 1000, 20.4), 520);
    }

    #[test]
    fn device_labels_keep_the_id_and_the_adapter_name() {
        assert_eq!(
            short_device("wgpu:0 (llvmpipe (LLVM 15.0.6, 256 bits), Vulkan, software)"),
            "wgpu:0 llvmpipe"
        );
        assert_eq!(
            short_device("cuda:0 (NVIDIA H100 80GB HBM3)"),
            "cuda:0 NVIDIA H100 80GB HBM3"
        );
        assert_eq!(
            short_device("wgpu:1 (NVIDIA H100 80GB HBM3, Vulkan)"),
            "wgpu:1 NVIDIA H100 80GB HBM3"
        );
        assert_eq!(short_device("cpu"), "cpu");
        let long = short_device("wgpu:0 (A very long adapter name that goes on and on and on)");
        assert!(long.ends_with('…') && long.chars().count() <= 36, "{long}");
    }

    #[test]
    fn devices_get_their_colour_class() {
        assert_eq!(device_class("cpu"), "cpu");
        assert_eq!(device_class("cuda:0 (NVIDIA H100)"), "cuda");
        assert_eq!(device_class("wgpu:0 (llvmpipe)"), "wgpu");
        assert_eq!(device_class("scikit-learn 1.9.1"), "peer");
    }
}
