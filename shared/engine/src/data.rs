//! The data jobs: import CSV files, list and delete series, store resampled series, and
//! summarise feature matrices.

use std::path::Path;
use std::time::Instant;

use forexgpt_core::candle::Candle;
use forexgpt_core::features::{FeatureMatrix, Targets, build_features, build_targets};
use forexgpt_core::gaps::{find_gaps, summarize_gaps};
use forexgpt_core::import::read_candles_csv;
use forexgpt_core::resample::resample;
use forexgpt_core::split::{chronological_split, default_purge};
use forexgpt_core::store::{ImportSource, StoreError};
use forexgpt_core::timestamp::format_ts;
use forexgpt_protocol::{
    ColumnSummary, CsvFormat, FeatureExport, FeatureSpec, FeatureSummary, Gap, ImportReport,
    ImportRequest, ProgressEvent, SeriesInfo, SplitSpec, SplitSummary, Stage, TargetSpec,
    Timeframe,
};

use crate::Workbench;
use crate::error::EngineError;
use crate::progress::{CancelToken, ProgressSink};

/// Symbols are names like `EURUSD`, `XAUUSD`, `EUR-USD` or `US500.cash`.
pub fn normalize_symbol(symbol: &str) -> Result<String, EngineError> {
    let s = symbol.trim();
    let ok = (1..=20).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(s.to_ascii_uppercase())
    } else {
        Err(EngineError::InvalidSymbol(symbol.to_string()))
    }
}

/// Seconds since the Unix epoch, now (creation times of models and benchmark runs).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The feature matrix, its targets and their chronological split, as one request describes
/// them (the purge defaults to window + largest horizon).
pub(crate) fn labelled_features(
    candles: &[Candle],
    features: &FeatureSpec,
    targets: &TargetSpec,
    split: &SplitSpec,
) -> Result<(FeatureMatrix, Targets, SplitSummary), EngineError> {
    let fm = build_features(candles, features)?;
    let targets = build_targets(&fm, targets)?;
    let max_h = targets.horizons.iter().copied().max().unwrap_or(0);
    let split = chronological_split(targets.rows, split, default_purge(features.window, max_h))?;
    Ok((fm, targets, split))
}

/// What to build a feature matrix from, and how.
#[derive(Debug, Clone)]
pub struct FeatureRequest {
    pub symbol: String,
    pub timeframe: Timeframe,
    pub features: FeatureSpec,
    pub targets: TargetSpec,
    pub split: SplitSpec,
}

impl Workbench {
    /// The bars of a series (stored, or resampled from a finer stored one), in time order.
    pub fn candles(&self, symbol: &str, timeframe: Timeframe) -> Result<Vec<Candle>, EngineError> {
        let symbol = normalize_symbol(symbol)?;
        Ok(self.store.load_or_resample(&symbol, timeframe)?.0)
    }

    /// Imports one CSV file: everything or nothing.
    pub fn import_csv(
        &mut self,
        request: &ImportRequest,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<ImportReport, EngineError> {
        let symbol = normalize_symbol(&request.symbol)?;
        let (path, timeframe, replace) =
            (Path::new(&request.path), request.timeframe, request.replace);
        let parsed = read_candles_csv(path, request.format, timeframe, &mut |done, total| {
            progress.report(ProgressEvent::new(Stage::ReadCsv, done, Some(total), None));
            !cancel.is_cancelled()
        })?;
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let file = path.display().to_string();
        progress.report(ProgressEvent {
            stage: Stage::Store,
            done: 0,
            total: Some(parsed.candles.len() as u64),
            message: None,
            epoch: None,
        });
        let source = ImportSource {
            file: &file,
            format: parsed.format.as_str(),
            replace,
        };
        let outcome = self
            .store
            .import_candles(&symbol, timeframe, &parsed.candles, &source)?;
        progress.report(ProgressEvent {
            stage: Stage::Store,
            done: parsed.candles.len() as u64,
            total: Some(parsed.candles.len() as u64),
            message: None,
            epoch: None,
        });
        let gaps = summarize_gaps(&find_gaps(&parsed.candles, timeframe));
        let (first, last) = (
            &parsed.candles[0],
            &parsed.candles[parsed.candles.len() - 1],
        );
        Ok(ImportReport {
            file,
            symbol,
            timeframe,
            format: parsed.format,
            rows_read: parsed.candles.len() as u64,
            inserted: outcome.inserted,
            unchanged: outcome.unchanged,
            replaced: replace || outcome.replaced_sample,
            replaced_sample: outcome.replaced_sample,
            first_ts: first.ts,
            last_ts: last.ts,
            gaps,
        })
    }

    /// Every stored series; with `with_gaps`, each with its gap summary.
    pub fn list_series(&self, with_gaps: bool) -> Result<Vec<SeriesInfo>, EngineError> {
        let mut list = self.store.list_series()?;
        if with_gaps {
            for info in &mut list {
                let candles = self.store.load_candles(&info.symbol, info.timeframe)?;
                info.gaps = Some(summarize_gaps(&find_gaps(&candles, info.timeframe)));
            }
        }
        Ok(list)
    }

    /// One series with its summary and every gap in it.
    pub fn series_gaps(
        &self,
        symbol: &str,
        timeframe: Timeframe,
    ) -> Result<(SeriesInfo, Vec<Gap>), EngineError> {
        let symbol = normalize_symbol(symbol)?;
        let candles = self.store.load_candles(&symbol, timeframe)?;
        let gaps = find_gaps(&candles, timeframe);
        let mut info = self
            .store
            .list_series()?
            .into_iter()
            .find(|s| s.symbol == symbol && s.timeframe == timeframe)
            .ok_or_else(|| StoreError::SeriesNotFound {
                symbol: symbol.clone(),
                timeframe,
                hint: String::new(),
            })?;
        info.gaps = Some(summarize_gaps(&gaps));
        Ok((info, gaps))
    }

    pub fn delete_series(
        &mut self,
        symbol: &str,
        timeframe: Timeframe,
    ) -> Result<bool, EngineError> {
        Ok(self
            .store
            .delete_series(&normalize_symbol(symbol)?, timeframe)?)
    }

    /// Builds `to` bars from the stored `from` bars and stores them (replacing any stored
    /// `to` series).
    pub fn resample_series(
        &mut self,
        symbol: &str,
        from: Timeframe,
        to: Timeframe,
    ) -> Result<ImportReport, EngineError> {
        let symbol = normalize_symbol(symbol)?;
        let base = self.store.load_candles(&symbol, from)?;
        let bars = resample(&base, from, to)?;
        let label = format!("resampled from {from}");
        let source = ImportSource {
            file: &label,
            format: "resample",
            replace: true,
        };
        let outcome = self.store.import_candles(&symbol, to, &bars, &source)?;
        Ok(ImportReport {
            file: label,
            symbol,
            timeframe: to,
            format: CsvFormat::Auto,
            rows_read: base.len() as u64,
            inserted: outcome.inserted,
            unchanged: outcome.unchanged,
            replaced: true,
            replaced_sample: outcome.replaced_sample,
            first_ts: bars.first().map_or(0, |c| c.ts),
            last_ts: bars.last().map_or(0, |c| c.ts),
            gaps: summarize_gaps(&find_gaps(&bars, to)),
        })
    }

    /// Writes the feature matrix, targets and split labels of a stored series to `path` (CSV
    /// or Parquet by its extension), all or nothing.
    pub fn export_features(
        &self,
        request: &FeatureRequest,
        path: &Path,
    ) -> Result<FeatureExport, EngineError> {
        let symbol = normalize_symbol(&request.symbol)?;
        // Checked before any work: a wrong file name should not cost a feature build.
        forexgpt_core::export::ExportFormat::of(path)?;
        let (candles, _) = self.store.load_or_resample(&symbol, request.timeframe)?;
        let started = Instant::now();
        let feature_spec = request.features.clone().fitted_to(request.timeframe);
        let (fm, targets, split) =
            labelled_features(&candles, &feature_spec, &request.targets, &request.split)?;
        let written = forexgpt_core::export::export_features(path, &fm, &targets, &split)?;
        Ok(FeatureExport {
            path: path.display().to_string(),
            format: written.format.as_str().to_string(),
            rows: written.rows,
            columns: written.columns,
            elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Builds the feature matrix and targets of a stored series and summarises them.
    pub fn feature_summary(&self, request: &FeatureRequest) -> Result<FeatureSummary, EngineError> {
        let symbol = normalize_symbol(&request.symbol)?;
        let (candles, _) = self.store.load_or_resample(&symbol, request.timeframe)?;
        let started = Instant::now();
        let feature_spec = request.features.clone().fitted_to(request.timeframe);
        let (fm, targets, split) =
            labelled_features(&candles, &feature_spec, &request.targets, &request.split)?;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(from = %format_ts(fm.ts[0]), rows = fm.rows(), "built features");
        let columns = fm
            .columns
            .iter()
            .enumerate()
            .map(|(j, name)| {
                let (mut sum, mut min, mut max) = (0.0, f64::INFINITY, f64::NEG_INFINITY);
                for v in fm.column(j) {
                    sum += v;
                    min = min.min(v);
                    max = max.max(v);
                }
                let mean = sum / fm.rows() as f64;
                let var =
                    fm.column(j).map(|v| (v - mean) * (v - mean)).sum::<f64>() / fm.rows() as f64;
                ColumnSummary {
                    name: name.clone(),
                    mean,
                    std: var.sqrt(),
                    min,
                    max,
                }
            })
            .collect();
        Ok(FeatureSummary {
            symbol,
            timeframe: request.timeframe,
            bars: candles.len(),
            rows: fm.rows(),
            labelled_rows: targets.rows,
            warmup: fm.warmup,
            first_ts: fm.ts[0],
            last_ts: fm.ts[fm.rows() - 1],
            horizons: targets.horizons,
            split,
            columns,
            elapsed_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use forexgpt_protocol::GapKind;

    use super::*;
    use crate::progress::NoProgress;
    use forexgpt_core::store::Store;

    fn request(path: &Path, symbol: &str) -> ImportRequest {
        ImportRequest {
            path: path.display().to_string(),
            symbol: symbol.into(),
            timeframe: Timeframe::H1,
            format: CsvFormat::Auto,
            replace: false,
        }
    }

    fn workbench() -> Workbench {
        Workbench::with_store(Store::open_in_memory().unwrap()).unwrap()
    }

    #[test]
    fn a_new_database_opened_by_many_connections_at_once_is_set_up_once() {
        // The desktop app opens one connection per command, and its first screen sends
        // several commands at once to a database that does not exist yet.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh.sqlite");
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let wb = Workbench::open(Some(&path))?;
                    wb.list_series(false)
                })
            })
            .collect();
        for handle in handles {
            let series = handle.join().unwrap().unwrap();
            assert!(series.iter().all(|s| s.bars == 6225), "{series:?}");
        }
        let wb = Workbench::open(Some(&path)).unwrap();
        assert_eq!(wb.list_series(false).unwrap().len(), 1);
    }

    #[test]
    fn the_sample_is_seeded_once_and_is_real_hourly_eurusd() {
        let wb = workbench();
        let (info, gaps) = wb.series_gaps("eurusd", Timeframe::H1).unwrap();
        assert_eq!(info.bars, 6225);
        assert_eq!(format_ts(info.first_ts), "2017-01-01 22:00:00");
        assert_eq!(format_ts(info.last_ts), "2017-12-29 21:00:00");
        let summary = info.gaps.unwrap();
        // 51 weekends and Christmas Day (25 Dec 07:00 → 22:00); no hole inside a session.
        assert_eq!(
            (
                summary.weekend_gaps,
                summary.holiday_gaps,
                summary.session_hole_count
            ),
            (51, 1, 0),
            "{summary:?}"
        );
        let christmas = gaps.iter().find(|g| g.kind == GapKind::Holiday).unwrap();
        assert_eq!(format_ts(christmas.after_ts), "2017-12-25 07:00:00");
        assert_eq!(christmas.missing_bars, 14);
    }

    #[test]
    fn deleting_the_sample_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("wb.sqlite");
        let mut wb = Workbench::open(Some(&db)).unwrap();
        assert!(wb.delete_series("EURUSD", Timeframe::H1).unwrap());
        drop(wb);
        let wb = Workbench::open(Some(&db)).unwrap();
        assert!(wb.list_series(false).unwrap().is_empty());
    }

    #[test]
    fn a_bad_file_stores_nothing_and_a_good_one_everything() {
        let mut wb = workbench();
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.csv");
        let mut f = std::fs::File::create(&bad).unwrap();
        writeln!(f, "time,open,high,low,close\n2024-01-02 13:00,1.1,1.2,1.0,1.15\n2024-01-02 14:00,1.1,1.0,1.05,1.15").unwrap();
        drop(f);
        let err = wb
            .import_csv(&request(&bad, "GBPUSD"), &NoProgress, &CancelToken::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.csv") && err.contains("line 3, field high"),
            "{err}"
        );
        assert_eq!(wb.list_series(false).unwrap().len(), 1, "only the sample");

        let good = dir.path().join("good.csv");
        std::fs::write(&good, "time,open,high,low,close\n2024-01-10 13:00,1.1,1.2,1.0,1.15\n2024-01-10 15:00,1.1,1.2,1.05,1.15\n").unwrap();
        let report = wb
            .import_csv(&request(&good, "gbpusd"), &NoProgress, &CancelToken::new())
            .unwrap();
        assert_eq!((report.symbol.as_str(), report.inserted), ("GBPUSD", 2));
        assert_eq!(report.gaps.session_hole_count, 1);
        assert!(matches!(
            wb.import_csv(&request(&good, "EUR USD"), &NoProgress, &CancelToken::new()),
            Err(EngineError::InvalidSymbol(_))
        ));
    }

    #[test]
    fn cancelled_import_stores_nothing() {
        let mut wb = workbench();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.csv");
        std::fs::write(
            &file,
            "time,open,high,low,close\n2024-01-02 13:00,1.1,1.2,1.0,1.15\n",
        )
        .unwrap();
        let cancel = CancelToken::new();
        cancel.cancel();
        let result = wb.import_csv(&request(&file, "GBPUSD"), &NoProgress, &cancel);
        assert!(matches!(result, Err(EngineError::Cancelled)));
        assert_eq!(wb.list_series(false).unwrap().len(), 1);
    }

    #[test]
    fn feature_summary_of_the_sample_and_of_a_resampled_series() {
        let mut wb = workbench();
        let request = FeatureRequest {
            symbol: "EURUSD".into(),
            timeframe: Timeframe::H1,
            features: FeatureSpec::default(),
            targets: TargetSpec::default(),
            split: SplitSpec::default(),
        };
        let s = wb.feature_summary(&request).unwrap();
        assert_eq!(s.bars, 6225);
        assert_eq!(s.rows, 6225 - 48);
        assert_eq!(s.labelled_rows, s.rows - 24);
        assert_eq!(s.columns.len(), 88);
        assert!(s.split.train.1 < s.split.validation.0 && s.split.validation.1 < s.split.test.0);
        let report = wb
            .resample_series("EURUSD", Timeframe::H1, Timeframe::H4)
            .unwrap();
        // 6,225 hourly bars make ~1,556 full 4h bars plus partial ones at each session start.
        assert!(
            (1556..1700).contains(&report.inserted),
            "{}",
            report.inserted
        );
        let four = FeatureRequest {
            timeframe: Timeframe::H4,
            ..request
        };
        assert_eq!(
            wb.feature_summary(&four).unwrap().bars as u64,
            report.inserted
        );
    }
}
