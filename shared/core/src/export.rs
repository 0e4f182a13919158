//! The feature matrix, its targets and split, written to a file for pandas / scikit-learn:
//! CSV or Parquet, chosen by the file's extension. The file is written beside its final name
//! and renamed into place, so a failed export leaves no half-written file behind.
//!
//! Columns, in order: `time` (bar open, UTC), `close`, every feature column, one
//! `target_h{h}` per horizon (the log return `ln(close[t+h] / close[t])`, empty where the
//! future is not known yet), and `split` (`train`, `validation`, `test`, or empty for rows the
//! purge leaves out or that have no targets).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use forexgpt_protocol::SplitSummary;
use parquet::basic::{LogicalType, Repetition, TimeUnit, Type as PhysicalType};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use crate::features::{FeatureMatrix, Targets};

/// Rows per Parquet row group: readers load a group at a time.
const ROWS_PER_GROUP: usize = 65_536;

/// The file types `export_features` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Parquet,
}

impl ExportFormat {
    /// The format a file name asks for (`.csv`, `.parquet` or `.pq`, any case).
    pub fn of(path: &Path) -> Result<ExportFormat, ExportError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("csv") => Ok(ExportFormat::Csv),
            Some("parquet" | "pq") => Ok(ExportFormat::Parquet),
            _ => Err(ExportError::UnknownFormat {
                path: path.display().to_string(),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Parquet => "parquet",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot tell the file type of {path}: name it .csv or .parquet")]
    UnknownFormat { path: String },
    #[error("cannot write {path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("cannot write {path} as Parquet: {message}")]
    Parquet { path: String, message: String },
}

/// What one export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub format: ExportFormat,
    pub rows: usize,
    pub columns: Vec<String>,
}

/// The table to write: one row per feature row.
struct Table<'a> {
    features: &'a FeatureMatrix,
    targets: &'a Targets,
    split: Vec<&'static str>,
    columns: Vec<String>,
}

impl<'a> Table<'a> {
    fn new(features: &'a FeatureMatrix, targets: &'a Targets, split: &SplitSummary) -> Self {
        let mut labels = vec![""; features.rows()];
        for (part, (from, to)) in [
            ("train", split.train),
            ("validation", split.validation),
            ("test", split.test),
        ] {
            for label in labels.iter_mut().take(to).skip(from) {
                *label = part;
            }
        }
        let mut columns = vec!["time".to_string(), "close".to_string()];
        columns.extend(features.columns.iter().cloned());
        columns.extend(targets.horizons.iter().map(|h| format!("target_h{h}")));
        columns.push("split".into());
        Table {
            features,
            targets,
            split: labels,
            columns,
        }
    }

    fn rows(&self) -> usize {
        self.features.rows()
    }

    /// Target `k` of row `r`, when the row has targets.
    fn target(&self, r: usize, k: usize) -> Option<f64> {
        (r < self.targets.rows).then(|| self.targets.row(r)[k])
    }
}

/// Writes `features` with their `targets` and `split` to `path` (CSV or Parquet by its
/// extension), all or nothing.
pub fn export_features(
    path: &Path,
    features: &FeatureMatrix,
    targets: &Targets,
    split: &SplitSummary,
) -> Result<Exported, ExportError> {
    let format = ExportFormat::of(path)?;
    let table = Table::new(features, targets, split);
    let io = |cause| ExportError::Io {
        path: path.display().to_string(),
        cause,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "export".into(), |n| n.to_string_lossy().into_owned());
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(&dir)
        .map_err(io)?;
    match format {
        ExportFormat::Csv => {
            let mut out = std::io::BufWriter::new(temp.as_file_mut());
            write_csv(&table, &mut out).map_err(io)?;
            out.flush().map_err(io)?;
        }
        ExportFormat::Parquet => {
            write_parquet(&table, temp.as_file_mut()).map_err(|e| ExportError::Parquet {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        }
    }
    temp.as_file().sync_all().map_err(io)?;
    temp.persist(path).map_err(|e| io(e.error))?;
    Ok(Exported {
        format,
        rows: table.rows(),
        columns: table.columns,
    })
}

/// `2017-01-03T12:00:00Z`: what pandas reads as a UTC timestamp.
fn iso_utc(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0).map_or_else(
        || ts.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

fn write_csv(table: &Table, out: &mut impl Write) -> std::io::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    let csv_error = |e: csv::Error| std::io::Error::other(e.to_string());
    writer.write_record(&table.columns).map_err(csv_error)?;
    let fm = table.features;
    let h = table.targets.horizons.len();
    let mut record: Vec<String> = Vec::with_capacity(table.columns.len());
    for r in 0..table.rows() {
        record.clear();
        record.push(iso_utc(fm.ts[r]));
        // Rust's shortest round-trip form: reading the text back gives the same f64.
        record.push(fm.close[r].to_string());
        record.extend(fm.row(r).iter().map(f64::to_string));
        record.extend((0..h).map(|k| table.target(r, k).map_or(String::new(), |v| v.to_string())));
        record.push(table.split[r].to_string());
        writer.write_record(&record).map_err(csv_error)?;
    }
    writer.flush()
}

fn schema(table: &Table) -> parquet::errors::Result<Type> {
    let column = |name: &str, physical, repetition| {
        Type::primitive_type_builder(name, physical)
            .with_repetition(repetition)
            .build()
            .map(Arc::new)
    };
    let mut fields = vec![Arc::new(
        Type::primitive_type_builder("time", PhysicalType::INT64)
            .with_repetition(Repetition::REQUIRED)
            .with_logical_type(Some(LogicalType::timestamp(true, TimeUnit::MILLIS)))
            .build()?,
    )];
    fields.push(column("close", PhysicalType::DOUBLE, Repetition::REQUIRED)?);
    for name in &table.features.columns {
        fields.push(column(name, PhysicalType::DOUBLE, Repetition::REQUIRED)?);
    }
    for h in &table.targets.horizons {
        fields.push(column(
            &format!("target_h{h}"),
            PhysicalType::DOUBLE,
            Repetition::OPTIONAL,
        )?);
    }
    fields.push(Arc::new(
        Type::primitive_type_builder("split", PhysicalType::BYTE_ARRAY)
            .with_repetition(Repetition::REQUIRED)
            .with_logical_type(Some(LogicalType::String))
            .build()?,
    ));
    Type::group_type_builder("features")
        .with_fields(fields)
        .build()
}

fn write_parquet(table: &Table, file: &mut std::fs::File) -> parquet::errors::Result<()> {
    let props = Arc::new(
        WriterProperties::builder()
            .set_created_by(format!("forexgpt {}", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema(table)?), props)?;
    let fm = table.features;
    let (d, h) = (fm.n_columns(), table.targets.horizons.len());
    for start in (0..table.rows()).step_by(ROWS_PER_GROUP) {
        let rows = start..(start + ROWS_PER_GROUP).min(table.rows());
        let mut group = writer.next_row_group()?;
        let mut index = 0;
        while let Some(mut column) = group.next_column()? {
            match index {
                0 => {
                    let ms: Vec<i64> = fm.ts[rows.clone()].iter().map(|t| t * 1000).collect();
                    column.typed::<Int64Type>().write_batch(&ms, None, None)?;
                }
                1 => {
                    column.typed::<DoubleType>().write_batch(
                        &fm.close[rows.clone()],
                        None,
                        None,
                    )?;
                }
                j if j < 2 + d => {
                    let values: Vec<f64> = rows.clone().map(|r| fm.row(r)[j - 2]).collect();
                    column
                        .typed::<DoubleType>()
                        .write_batch(&values, None, None)?;
                }
                j if j < 2 + d + h => {
                    let k = j - 2 - d;
                    let cells: Vec<Option<f64>> =
                        rows.clone().map(|r| table.target(r, k)).collect();
                    let values: Vec<f64> = cells.iter().flatten().copied().collect();
                    let defined: Vec<i16> = cells.iter().map(|c| i16::from(c.is_some())).collect();
                    column
                        .typed::<DoubleType>()
                        .write_batch(&values, Some(&defined), None)?;
                }
                _ => {
                    let labels: Vec<ByteArray> = rows
                        .clone()
                        .map(|r| ByteArray::from(table.split[r]))
                        .collect();
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&labels, None, None)?;
                }
            }
            column.close()?;
            index += 1;
        }
        group.close()?;
    }
    writer.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{build_features, build_targets};
    use crate::split::{chronological_split, default_purge};
    use crate::synthetic;
    use forexgpt_protocol::{FeatureSpec, SplitSpec, TargetSpec};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;

    fn dataset() -> (FeatureMatrix, Targets, SplitSummary) {
        let candles = synthetic::random_walk_hourly(400, 11);
        let fm = build_features(&candles, &FeatureSpec::default()).unwrap();
        let targets = build_targets(
            &fm,
            &TargetSpec {
                horizons: vec![1, 4],
            },
        )
        .unwrap();
        let split =
            chronological_split(targets.rows, &SplitSpec::default(), default_purge(16, 4)).unwrap();
        (fm, targets, split)
    }

    /// Every cell of a CSV export, by row, as text.
    fn csv_cells(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
        let mut reader = csv::Reader::from_path(path).unwrap();
        let header = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_string)
            .collect();
        let rows = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect();
        (header, rows)
    }

    #[test]
    fn csv_and_parquet_hold_the_same_table() {
        let (fm, targets, split) = dataset();
        let dir = tempfile::tempdir().unwrap();
        let csv_path = dir.path().join("features.csv");
        let pq_path = dir.path().join("features.parquet");
        let written = export_features(&csv_path, &fm, &targets, &split).unwrap();
        assert_eq!(written.format, ExportFormat::Csv);
        assert_eq!(written.rows, fm.rows());
        export_features(&pq_path, &fm, &targets, &split).unwrap();

        let (header, rows) = csv_cells(&csv_path);
        assert_eq!(header, written.columns);
        assert_eq!(header.len(), 2 + fm.n_columns() + 2 + 1);
        assert_eq!(rows.len(), fm.rows());
        // The CSV's text gives back every value exactly.
        assert_eq!(rows[0][0], iso_utc(fm.ts[0]));
        assert_eq!(rows[5][2].parse::<f64>().unwrap(), fm.row(5)[0]);
        assert_eq!(
            rows[3][2 + fm.n_columns() + 1].parse::<f64>().unwrap(),
            targets.row(3)[1]
        );
        // The last rows have no future: empty targets, no split part.
        let last = rows.last().unwrap();
        assert_eq!(last[2 + fm.n_columns()], "");
        assert_eq!(last[header.len() - 1], "");
        assert_eq!(rows[split.train.0][header.len() - 1], "train");
        assert_eq!(rows[split.test.1 - 1][header.len() - 1], "test");

        // Parquet read back by the parquet crate's own reader, cell by cell against the CSV.
        let reader = SerializedFileReader::new(std::fs::File::open(&pq_path).unwrap()).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr();
        let names: Vec<String> = schema
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        assert_eq!(names, header);
        let mut n = 0;
        for (r, row) in reader.get_row_iter(None).unwrap().enumerate() {
            let row = row.unwrap();
            assert_eq!(row.get_timestamp_millis(0).unwrap(), fm.ts[r] * 1000);
            for (j, cell) in rows[r].iter().enumerate().take(header.len() - 1).skip(1) {
                match row.get_double(j) {
                    Ok(v) => assert_eq!(v, cell.parse::<f64>().unwrap(), "row {r} col {j}"),
                    Err(_) => assert_eq!(cell, "", "row {r} col {j}: null in Parquet"),
                }
            }
            assert_eq!(
                row.get_string(header.len() - 1).unwrap(),
                &rows[r][header.len() - 1]
            );
            n += 1;
        }
        assert_eq!(n, fm.rows());
    }

    #[test]
    fn an_unknown_extension_or_a_failed_write_leaves_nothing() {
        let (fm, targets, split) = dataset();
        let dir = tempfile::tempdir().unwrap();
        let xlsx = dir.path().join("features.xlsx");
        let err = export_features(&xlsx, &fm, &targets, &split).unwrap_err();
        assert!(
            err.to_string().contains("name it .csv or .parquet"),
            "{err}"
        );
        // A folder where the file should go: the write fails and no partial file remains.
        let taken = dir.path().join("taken.csv");
        std::fs::create_dir(&taken).unwrap();
        assert!(export_features(&taken, &fm, &targets, &split).is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("taken.csv")]);
    }
}
