//! Human-readable tables and JSON output.

use anyhow::Result;
use forexgpt_core::timestamp::format_ts;
use forexgpt_protocol::{
    BenchResult, FeatureSummary, Gap, GapKind, GapSummary, ImportReport, SeriesInfo, counted,
};
use serde::Serialize;

/// Like `println!`, but a closed stdout (`forexgpt data | head`) ends the program quietly
/// instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}

pub fn write_line(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn gap_line(g: &GapSummary) -> String {
    format!(
        "{} weekend, {} holiday, {} ({} missing)",
        g.weekend_gaps,
        g.holiday_gaps,
        counted(g.session_hole_count, "in-session hole", "in-session holes"),
        counted(g.missing_bars_in_holes, "bar", "bars")
    )
}

pub fn print_resample(r: &ImportReport) {
    outln!(
        "{} {}: built {} bars from {} stored bars ({})",
        r.symbol,
        r.timeframe,
        r.inserted,
        r.rows_read,
        r.file
    );
    outln!(
        "  range {} → {} UTC",
        format_ts(r.first_ts),
        format_ts(r.last_ts)
    );
    outln!("  gaps: {}", gap_line(&r.gaps));
}

pub fn print_import(r: &ImportReport) {
    outln!(
        "{} {}: {} bars read from {} ({}), {} new, {} already stored{}",
        r.symbol,
        r.timeframe,
        r.rows_read,
        r.file,
        r.format,
        r.inserted,
        r.unchanged,
        if r.replaced_sample {
            ""
        } else if r.replaced {
            ", series replaced"
        } else {
            ""
        }
    );
    if r.replaced_sample {
        outln!(
            "  note: {} {} held only the built-in sample; your file replaced it",
            r.symbol,
            r.timeframe
        );
    }
    outln!(
        "  range {} → {} UTC",
        format_ts(r.first_ts),
        format_ts(r.last_ts)
    );
    outln!("  gaps: {}", gap_line(&r.gaps));
    for hole in &r.gaps.session_holes {
        outln!("    hole: {}", describe_gap(hole));
    }
}

fn describe_gap(g: &Gap) -> String {
    let kind = match g.kind {
        GapKind::Weekend => "weekend",
        GapKind::Holiday => "holiday",
        GapKind::SessionHole => "in session",
    };
    format!(
        "{} → {}  {} missing  ({kind})",
        format_ts(g.after_ts),
        format_ts(g.before_ts),
        counted(g.missing_bars, "bar", "bars")
    )
}

pub fn print_series_list(list: &[SeriesInfo], db: &str) {
    outln!("database: {db}");
    if list.is_empty() {
        outln!(
            "no series stored; import one with `forexgpt import FILE --symbol EURUSD --timeframe 1h`"
        );
        return;
    }
    outln!(
        "{:<10} {:>4} {:>8}  {:<19}  {:<19}  source",
        "symbol",
        "tf",
        "bars",
        "first (UTC)",
        "last (UTC)"
    );
    for s in list {
        outln!(
            "{:<10} {:>4} {:>8}  {:<19}  {:<19}  {}",
            s.symbol,
            s.timeframe.as_str(),
            s.bars,
            format_ts(s.first_ts),
            format_ts(s.last_ts),
            s.source
        );
        if let Some(g) = &s.gaps {
            outln!("{:>25}gaps: {}", "", gap_line(g));
        }
    }
}

pub fn print_series_detail(info: &SeriesInfo, gaps: &[Gap]) {
    outln!(
        "{} {}: {} bars, {} → {} UTC, from {}",
        info.symbol,
        info.timeframe,
        info.bars,
        format_ts(info.first_ts),
        format_ts(info.last_ts),
        info.source
    );
    if let Some(g) = &info.gaps {
        outln!("gaps: {}", gap_line(g));
    }
    for g in gaps {
        outln!("  {}", describe_gap(g));
    }
}

pub fn print_feature_summary(s: &FeatureSummary, all_columns: bool) {
    outln!(
        "{} {}: {} bars → {} rows × {} features ({} bars of warm-up)",
        s.symbol,
        s.timeframe,
        s.bars,
        s.rows,
        s.columns.len(),
        s.warmup
    );
    outln!(
        "rows from {} to {} UTC; built in {:.1} ms",
        format_ts(s.first_ts),
        format_ts(s.last_ts),
        s.elapsed_ms
    );
    let horizons: Vec<String> = s.horizons.iter().map(u32::to_string).collect();
    outln!(
        "targets: log returns at horizons [{}] bars; {} labelled rows",
        horizons.join(", "),
        s.labelled_rows
    );
    let part = |(a, b): (usize, usize)| format!("rows {a}..{b} ({})", b - a);
    outln!(
        "split: train {}, validation {}, test {} (purge {})",
        part(s.split.train),
        part(s.split.validation),
        part(s.split.test),
        s.split.purge
    );
    outln!(
        "{:<24} {:>12} {:>12} {:>12} {:>12}",
        "feature",
        "mean",
        "std",
        "min",
        "max"
    );
    let shown: Box<dyn Iterator<Item = _>> = if all_columns || s.columns.len() <= 24 {
        Box::new(s.columns.iter())
    } else {
        Box::new(
            s.columns
                .iter()
                .take(8)
                .chain(s.columns.iter().skip(s.columns.len() - 16)),
        )
    };
    for (i, c) in shown.enumerate() {
        if !all_columns && s.columns.len() > 24 && i == 8 {
            outln!(
                "{:<24} (… {} more; --all-columns shows them)",
                "…",
                s.columns.len() - 24
            );
        }
        outln!(
            "{:<24} {:>12.5e} {:>12.5e} {:>12.5e} {:>12.5e}",
            c.name,
            c.mean,
            c.std,
            c.min,
            c.max
        );
    }
}

pub fn print_bench(results: &[BenchResult]) {
    outln!(
        "{:<12} {:>16} {:<34} {:>10} {:>10} {:>10} {:>10} {:>13} {:>9}",
        "operation",
        "size",
        "device",
        "cold ms",
        "median ms",
        "min ms",
        "max ms",
        "items/s",
        "vs cpu"
    );
    for r in results {
        let diff = r
            .max_rel_diff_vs_cpu
            .map_or_else(String::new, |d| format!("{d:.1e}"));
        let device: String = r.device.chars().take(34).collect();
        outln!(
            "{:<12} {:>16} {:<34} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>13.0} {:>9}",
            r.operation,
            r.size,
            device,
            r.first_run_ms,
            r.median_ms,
            r.min_ms,
            r.max_ms,
            r.throughput_per_s,
            diff
        );
    }
}
