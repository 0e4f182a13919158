//! The cost model behind `auto` (and "Use GPU (if available)"): for a job of a known size it
//! estimates the time on each device that can serve the job, and placement runs the job where
//! the estimate is lowest, so that choosing `auto` never sends a job to a GPU that is slower
//! than the CPU for it (a small fit, a tiny network, a GPU whose upload is the bound).
//!
//! Each operation has a size measure ([`Workload::relative_size`]: 1 at the size our benchmark
//! tables were measured at), and each class of device a straight line in it: a fixed cost
//! (launches, transfers' latency) and a cost per unit of size. The built-in lines come from
//! the tables in docs/benchmarks.md (an NVIDIA H100 through CUDA and through Vulkan, a
//! 16-thread Xeon for the CPU, whose per-size cost is scaled by this machine's threads).
//! [`CostModel::calibrated`] then fits them to this machine: every stored benchmark row that
//! ran here on a device of this machine gives the ratio of the measured median to the built-in
//! estimate, and the median of the newest run's ratios scales that device's line for that
//! operation. So `forexgpt bench` on a machine teaches `auto` about it, and the estimates say
//! which run they came from.
//!
//! Steady-state times only: the first GPU job of a process also compiles kernels (cached on
//! disk afterwards), which no estimate includes.

use forexgpt_protocol::{AdapterType, BenchRun, CpuInfo};

use crate::compute_device::{ComputeDevice, Target};

/// The operations the cost model knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CostOp {
    /// Ridge, lasso or elastic net: the products `XᵀX`, `XᵀY` and a small solve.
    LinearFit,
    PcaFit,
    ForestFit,
    ForestPredict,
    /// Autoencoder or VAE training by our fused kernels on a GPU (on the CPU, by burn).
    EncoderTraining,
    /// A forecast or backtest: every model of an ensemble on every bar.
    EnsembleInference,
    /// An ensemble of autoencoder models: each bar through every member's encoder.
    EncoderEnsembleInference,
}

impl CostOp {
    const ALL: [CostOp; 7] = [
        CostOp::LinearFit,
        CostOp::PcaFit,
        CostOp::ForestFit,
        CostOp::ForestPredict,
        CostOp::EncoderTraining,
        CostOp::EnsembleInference,
        CostOp::EncoderEnsembleInference,
    ];

    /// The operation of a stored benchmark row (`ridge`, `rf_fit`, `autoencoder`, …), when
    /// its time is what a job of this operation costs on that device.
    pub fn of_benchmark(operation: &str) -> Option<CostOp> {
        Some(match operation {
            "ridge" | "lasso" | "elasticnet" => CostOp::LinearFit,
            "pca" => CostOp::PcaFit,
            "rf_fit" => CostOp::ForestFit,
            "rf_predict" => CostOp::ForestPredict,
            // The encoder suite's rows (`autoencoder_fit`, `vae_fit`); the bare names are
            // those of runs stored before the suite named its rows so.
            "autoencoder" | "autoencoder_fit" | "vae" | "vae_fit" => CostOp::EncoderTraining,
            "forecast" => CostOp::EnsembleInference,
            // A forecast with its bands is what the app places (`predict_ae`, the members'
            // predictions alone, is not a job of its own).
            "forecast_ae" => CostOp::EncoderEnsembleInference,
            _ => return None,
        })
    }

    /// Built-in (fixed ms, ms per unit of relative size) on a class of device.
    ///
    /// Sources (docs/benchmarks.md): linear models and PCA on 1M × 128 → 8, "Linear models
    /// and PCA on wgpu: our Gram kernel, rows through mapped buffers (issue 21)" (one call
    /// on an H100 machine's 16-thread Xeon: CPU 70 ms, PCA 54 ms; CUDA through cuBLAS 38 ms,
    /// PCA 36 ms; Vulkan 45–47 ms, PCA 44 ms; wgpu's fixed part is an estimate); the forest's
    /// 100 trees on 10,000 × 64 → 4 and 100,000 predicted rows, "Random forest on CUDA,
    /// second design", third round (CPU 1,269 / 121 ms, CUDA 60 / 5.4 ms), the Vulkan walk
    /// from "The forest's walk as a CubeCL kernel" (13–17 ms, build E), the Vulkan fit from
    /// "Forest fit on wgpu: trees grown a level at a time (issue 21)" (158–169 ms at build
    /// R; its fixed part, 45 ms, an estimate: preparing the sorted lists and a round trip
    /// per level);
    /// the 128-64-16 autoencoder, 20 epochs of 10,000 × 128: the CPU from "Encoder training
    /// by our fused kernels, third version" on an H200 (2,485 ms), the GPUs from "Fused
    /// kernels: a batch split among workgroups" on an H100 (the batch in 32 cubes of 2 rows:
    /// CUDA 154 ms, Vulkan 336 ms; kernel compilation, a first run's, is not in the line);
    /// 50 models × 1,000 bars from "Full table, one call" (CPU 149 ms, CUDA 141 ms, Vulkan
    /// 91 ms); autoencoder ensembles (`forecast_ae`, with bands) from "The CPU against Vulkan
    /// on the H100, suite by suite (issue 21)" (CPU 0.07 ms for 1 model on 1 bar, 3.3 ms for
    /// 50, 157 ms for 50 on 1,000 bars; Vulkan 0.55–0.75 ms on 1 bar, 91 ms on 1,000) and,
    /// for CUDA, "Ensembles of autoencoder models in one dispatch" (0.05–0.12 ms on 1 bar,
    /// 76 ms on 1,000); burn's training path on the GPUs (the same autoencoder, 20 epochs):
    /// Vulkan 8,384 ms from the suite on Vulkan in "Forest fit on wgpu: trees grown a level
    /// at a time" (build R, H100), CUDA from "Autoencoder and VAE at 100 epochs on the
    /// H100" (22.7 s for 100 epochs, burn's path then: 4,546 ms for 20); its CPU line is the
    /// CPU's training line.
    fn line(self, class: DeviceClass) -> (f64, f64) {
        use CostOp::*;
        use DeviceClass::*;
        match (self, class) {
            (LinearFit, Cpu) => (1.0, 69.0),
            (LinearFit, Cuda) => (4.0, 34.5),
            (LinearFit, Wgpu) => (5.0, 41.0),
            (PcaFit, Cpu) => (1.0, 53.0),
            (PcaFit, Cuda) => (5.0, 31.5),
            (PcaFit, Wgpu) => (5.0, 39.0),
            (ForestFit, Cpu) => (2.0, 1_250.0),
            (ForestFit, Cuda) => (15.0, 45.0),
            (ForestFit, Wgpu) => (45.0, 115.0),
            (ForestPredict, Cpu) => (0.2, 120.0),
            (ForestPredict, Cuda) => (1.0, 4.5),
            (ForestPredict, Wgpu) => (2.0, 7.0),
            (EncoderTraining, Cpu) => (2.0, 2_490.0),
            (EncoderTraining, Cuda) => (20.0, 155.0),
            (EncoderTraining, Wgpu) => (20.0, 340.0),
            (EnsembleInference, Cpu) => (0.01, 150.0),
            (EnsembleInference, Cuda) => (0.9, 140.0),
            (EnsembleInference, Wgpu) => (0.6, 90.0),
            (EncoderEnsembleInference, Cpu) => (0.0, 157.0),
            (EncoderEnsembleInference, Cuda) => (0.05, 76.0),
            (EncoderEnsembleInference, Wgpu) => (0.55, 90.0),
        }
    }

    /// The job as the user would name it.
    pub fn name(self) -> &'static str {
        match self {
            CostOp::LinearFit => "linear fit",
            CostOp::PcaFit => "PCA fit",
            CostOp::ForestFit => "forest fit",
            CostOp::ForestPredict => "forest prediction",
            CostOp::EncoderTraining => "encoder training",
            CostOp::EnsembleInference => "model inference",
            CostOp::EncoderEnsembleInference => "autoencoder-model inference",
        }
    }
}

/// The threads of the CPU the built-in CPU lines were measured on.
const REFERENCE_THREADS: f64 = 16.0;

/// Networks of one shape a GPU trains in about the time of one (side by side in the same
/// launches). With a network's batch split among 32 workgroups, one network already fills
/// much of the GPU: 16 autoencoders took 2.7× one on CUDA and 1.8× on Vulkan on the H100
/// over 100 epochs ("Encoder training with the batch split by default"), so about 6 train
/// in the time of one. The CPU trains them one by one.
const GPU_NETWORKS_AT_ONCE: usize = 6;

/// The devices whose built-in lines differ. Software wgpu adapters (lavapipe) have none:
/// `auto` never picks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceClass {
    Cpu,
    Cuda,
    Wgpu,
}

impl DeviceClass {
    fn of(device: &ComputeDevice) -> Option<DeviceClass> {
        match device.target {
            Target::Cpu => Some(DeviceClass::Cpu),
            Target::Cuda { .. } => Some(DeviceClass::Cuda),
            Target::Wgpu { adapter_type, .. } => {
                (adapter_type != AdapterType::Cpu).then_some(DeviceClass::Wgpu)
            }
            // Estimated apart (`CostModel::estimate`).
            Target::Failing => None,
        }
    }
}

/// The size of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    pub op: CostOp,
    pub rows: usize,
    pub cols: usize,
    /// Targets (linear fit), components (PCA), trees (forest), epochs (encoder), models
    /// (inference).
    pub units: usize,
    /// The encoder's parameters (weights and biases); a forest's depth limit (0: fully
    /// grown); unused elsewhere.
    pub parameters: usize,
    /// Networks of this size trained together (encoder training; 1 elsewhere).
    pub copies: usize,
}

impl Workload {
    pub fn linear_fit(rows: usize, cols: usize, targets: usize) -> Workload {
        Workload::new(CostOp::LinearFit, rows, cols, targets)
    }

    pub fn pca_fit(rows: usize, cols: usize, components: usize) -> Workload {
        Workload::new(CostOp::PcaFit, rows, cols, components)
    }

    pub fn forest_fit(rows: usize, cols: usize, trees: usize) -> Workload {
        Workload::new(CostOp::ForestFit, rows, cols, trees)
    }

    /// A forest whose trees stop at `max_depth` (`None`: fully grown): it grows that many
    /// levels instead of about `log2(rows)`.
    pub fn with_max_depth(self, max_depth: Option<usize>) -> Workload {
        Workload {
            parameters: max_depth.unwrap_or(0),
            ..self
        }
    }

    pub fn forest_predict(rows: usize, cols: usize, trees: usize) -> Workload {
        Workload::new(CostOp::ForestPredict, rows, cols, trees)
    }

    /// `copies` networks of `parameters` trained together, each on `rows` training rows of
    /// `cols` columns for `epochs` epochs.
    pub fn encoder_training(
        rows: usize,
        cols: usize,
        epochs: usize,
        parameters: usize,
        copies: usize,
    ) -> Workload {
        Workload {
            parameters,
            copies: copies.max(1),
            ..Workload::new(CostOp::EncoderTraining, rows, cols, epochs)
        }
    }

    /// `models` models on `bars` bars of `cols` features.
    pub fn inference(models: usize, bars: usize, cols: usize) -> Workload {
        Workload::new(CostOp::EnsembleInference, bars, cols, models)
    }

    /// `models` autoencoder models (encoder, then regressor) on `bars` bars of `cols`
    /// features.
    pub fn encoder_inference(models: usize, bars: usize, cols: usize) -> Workload {
        Workload::new(CostOp::EncoderEnsembleInference, bars, cols, models)
    }

    fn new(op: CostOp, rows: usize, cols: usize, units: usize) -> Workload {
        Workload {
            op,
            rows,
            cols,
            units,
            parameters: 0,
            copies: 1,
        }
    }

    /// The job's size relative to the size the built-in lines were measured at.
    pub fn relative_size(&self) -> f64 {
        let (r, c, u) = (self.rows as f64, self.cols as f64, self.units as f64);
        match self.op {
            // Multiply-adds of XᵀX and XᵀY.
            CostOp::LinearFit => r * c * (c + u) / (1e6 * 128.0 * 136.0),
            CostOp::PcaFit => r * c * c / (1e6 * 128.0 * 128.0),
            // Every tree sorts its rows into nodes on every level (about log2(rows) levels,
            // fewer under a depth limit), weighing each feature.
            CostOp::ForestFit => {
                let mut levels = r.max(2.0).log2();
                if self.parameters > 0 {
                    levels = levels.min(self.parameters as f64 + 1.0);
                }
                u * r * levels * c / (100.0 * 1e4 * 1e4f64.log2() * 64.0)
            }
            CostOp::ForestPredict => u * r / (100.0 * 1e5),
            CostOp::EncoderTraining => {
                r * u * self.parameters as f64
                    / (1e4 * 20.0 * mirrored_mlp_parameters(128, &[128, 64], 16, false) as f64)
            }
            // Models × bars (the features per model are alike in every ensemble).
            CostOp::EnsembleInference => u * r / (50.0 * 1_000.0),
            // Models × bars, and a member's fixed part of a call (its layers' set-up) worth
            // about 20 bars: on the CPU one member takes 0.07 ms for 1 bar, 3.1 ms for 1,000.
            CostOp::EncoderEnsembleInference => u * (r + 20.0) / (50.0 * 1_020.0),
        }
    }

    /// The size in words, e.g. `1,000,000 × 128 → 8`.
    pub fn describe(&self) -> String {
        let n = group_thousands;
        let count = |k: usize, one: &str, many: &str| {
            format!("{} {}", n(k), if k == 1 { one } else { many })
        };
        match self.op {
            CostOp::LinearFit => format!("{} × {} → {}", n(self.rows), self.cols, self.units),
            CostOp::PcaFit => format!(
                "{} × {}, {}",
                n(self.rows),
                self.cols,
                count(self.units, "component", "components")
            ),
            CostOp::ForestFit => format!(
                "{}, {} × {}",
                count(self.units, "tree", "trees"),
                n(self.rows),
                self.cols
            ),
            CostOp::ForestPredict => format!(
                "{} on {}",
                count(self.units, "tree", "trees"),
                count(self.rows, "row", "rows")
            ),
            CostOp::EncoderTraining => format!(
                "{}{} × {}, {}, {} parameters",
                if self.copies > 1 {
                    format!("{} networks of ", self.copies)
                } else {
                    String::new()
                },
                n(self.rows),
                self.cols,
                count(self.units, "epoch", "epochs"),
                n(self.parameters)
            ),
            CostOp::EnsembleInference | CostOp::EncoderEnsembleInference => format!(
                "{} on {}",
                count(self.units, "model", "models"),
                count(self.rows, "bar", "bars")
            ),
        }
    }

    /// The workload of a stored benchmark row: its operation and the size it wrote
    /// (`1000000×128→8`, `100 trees, 10000×64→4`, `100 trees, 100000×64`,
    /// `10000×128, 20 epochs`, `50 models, 1000 bars`).
    pub fn of_benchmark(operation: &str, size: &str) -> Option<Workload> {
        let op = CostOp::of_benchmark(operation)?;
        let numbers: Vec<usize> = size
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        Some(match (op, numbers.as_slice()) {
            (CostOp::LinearFit, &[rows, cols, targets]) => {
                Workload::linear_fit(rows, cols, targets)
            }
            // The benchmark fits as many components as its rows have targets.
            (CostOp::PcaFit, &[rows, cols, components]) => {
                Workload::pca_fit(rows, cols, components)
            }
            (CostOp::ForestFit, &[trees, rows, cols, _targets]) => {
                Workload::forest_fit(rows, cols, trees)
            }
            (CostOp::ForestPredict, &[trees, rows, cols]) => {
                Workload::forest_predict(rows, cols, trees)
            }
            // The benchmark's networks are the default 128-64-16 ones.
            (CostOp::EncoderTraining, &[rows, cols, epochs]) => Workload::encoder_training(
                rows,
                cols,
                epochs,
                mirrored_mlp_parameters(cols, &[128, 64], 16, operation.starts_with("vae")),
                1,
            ),
            (CostOp::EnsembleInference, &[models, bars]) => {
                // The forecast benchmark's models read the sample's 88 features.
                Workload::inference(models, bars, 88)
            }
            (CostOp::EncoderEnsembleInference, &[models, bars]) => {
                Workload::encoder_inference(models, bars, 88)
            }
            _ => return None,
        })
    }
}

/// Weights and biases of a mirrored MLP autoencoder: `input` → `hidden`… → `latent` (twice
/// `latent` for a VAE's μ and log σ² heads) → `hidden` reversed → `input`.
pub fn mirrored_mlp_parameters(input: usize, hidden: &[usize], latent: usize, vae: bool) -> usize {
    let dense = |i: usize, o: usize| i * o + o;
    let mut widths = vec![input];
    widths.extend_from_slice(hidden);
    let encoder: usize = widths.windows(2).map(|w| dense(w[0], w[1])).sum::<usize>()
        + dense(
            *widths.last().unwrap_or(&input),
            latent * if vae { 2 } else { 1 },
        );
    let mut back = vec![latent];
    back.extend(hidden.iter().rev());
    back.push(input);
    encoder + back.windows(2).map(|w| dense(w[0], w[1])).sum::<usize>()
}

fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A time in words: `850 µs`, `12 ms`, `1.4 s`.
pub fn format_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1e3)
    } else if ms < 1_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1e3)
    }
}

/// Where an estimate came from.
#[derive(Debug, Clone, PartialEq)]
pub enum EstimateSource {
    /// The built-in line of the device's class.
    BuiltIn,
    /// The built-in line scaled to benchmark run `run` of this machine.
    Benchmark { run: i64 },
}

/// One device's expected time for a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub ms: f64,
    pub source: EstimateSource,
}

/// A device's line for one operation, scaled to this machine by a benchmark run.
#[derive(Debug, Clone, PartialEq)]
struct Calibration {
    op: CostOp,
    /// The device's label as the benchmark wrote it; `cpu` for the CPU.
    device: String,
    factor: f64,
    run: i64,
}

/// The built-in lines, and the factors this machine's benchmark runs gave.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CostModel {
    calibrations: Vec<Calibration>,
}

impl CostModel {
    /// The built-in lines alone.
    pub fn built_in() -> CostModel {
        CostModel::default()
    }

    /// The built-in lines scaled by stored benchmark runs (any order): for each operation and
    /// device, the newest run that measured it on this machine gives the factor, the median
    /// of its rows' ratios of measured to built-in time. CPU rows count only from runs on a
    /// CPU of this model and thread count (a database may come from another machine); GPU
    /// rows are matched by the device's label when it is placed.
    pub fn calibrated(runs: &[BenchRun], cpu: &CpuInfo) -> CostModel {
        let mut runs: Vec<&BenchRun> = runs.iter().collect();
        runs.sort_by_key(|r| std::cmp::Reverse((r.created_ts, r.id)));
        let mut calibrations: Vec<Calibration> = Vec::new();
        for run in runs {
            let same_cpu =
                run.machine.cpu == cpu.model && run.machine.cpu_threads == cpu.logical_threads;
            let mut ratios: Vec<(CostOp, String, f64)> = Vec::new();
            for row in &run.results {
                let Some(workload) = Workload::of_benchmark(&row.operation, &row.size) else {
                    continue;
                };
                let is_cpu = row.device == "cpu" || row.device.starts_with("cpu (");
                let class = match (is_cpu, row.device.split(':').next()) {
                    (true, _) if same_cpu => DeviceClass::Cpu,
                    (true, _) => continue,
                    (false, Some("cuda")) => DeviceClass::Cuda,
                    (false, Some("wgpu")) => DeviceClass::Wgpu,
                    _ => continue,
                };
                let threads = if class == DeviceClass::Cpu {
                    cpu.logical_threads
                } else {
                    0
                };
                let Some(built_in) = built_in_ms(workload, class, threads) else {
                    continue;
                };
                if row.median_ms.is_finite() && row.median_ms > 0.0 {
                    let device = if is_cpu {
                        "cpu".to_string()
                    } else {
                        row.device.clone()
                    };
                    ratios.push((workload.op, device, row.median_ms / built_in));
                }
            }
            for op in CostOp::ALL {
                let mut devices: Vec<&str> = ratios
                    .iter()
                    .filter(|r| r.0 == op)
                    .map(|r| r.1.as_str())
                    .collect();
                devices.dedup();
                for device in devices {
                    if calibrations
                        .iter()
                        .any(|c| c.op == op && c.device == device)
                    {
                        continue;
                    }
                    let mut own: Vec<f64> = ratios
                        .iter()
                        .filter(|r| r.0 == op && r.1 == device)
                        .map(|r| r.2)
                        .collect();
                    own.sort_by(f64::total_cmp);
                    let factor = own[own.len() / 2];
                    calibrations.push(Calibration {
                        op,
                        device: device.to_string(),
                        factor,
                        run: run.id,
                    });
                }
            }
        }
        CostModel { calibrations }
    }

    /// Whether any benchmark run scaled the built-in lines.
    pub fn is_calibrated(&self) -> bool {
        !self.calibrations.is_empty()
    }

    /// The expected time of `workload` on `device` (with `cpu_threads` for the CPU), or
    /// `None` where nothing is known of it there.
    pub fn estimate(
        &self,
        workload: Workload,
        device: &ComputeDevice,
        cpu_threads: usize,
    ) -> Option<Estimate> {
        if device.target == Target::Failing {
            // A fault-injection GPU (tests) is expected to take no time, so that `auto` always
            // tries it and the fallback paths behind it run.
            return Some(Estimate {
                ms: 0.0,
                source: EstimateSource::BuiltIn,
            });
        }
        let class = DeviceClass::of(device)?;
        let ms = built_in_ms(workload, class, cpu_threads)?;
        let label = if class == DeviceClass::Cpu {
            "cpu"
        } else {
            device.label()
        };
        let op = workload.op;
        Some(
            match self
                .calibrations
                .iter()
                .find(|c| c.op == op && c.device == label)
            {
                Some(c) => Estimate {
                    ms: ms * c.factor,
                    source: EstimateSource::Benchmark { run: c.run },
                },
                None => Estimate {
                    ms,
                    source: EstimateSource::BuiltIn,
                },
            },
        )
    }
}

/// The built-in line's time; the CPU's per-size part scaled from 16 threads to `cpu_threads`.
fn built_in_ms(workload: Workload, class: DeviceClass, cpu_threads: usize) -> Option<f64> {
    let (fixed, per_size) = workload.op.line(class);
    let threads = if class == DeviceClass::Cpu {
        REFERENCE_THREADS / cpu_threads.max(1) as f64
    } else {
        1.0
    };
    // Networks trained together: one after the other on the CPU, side by side on a GPU.
    let rounds = if class == DeviceClass::Cpu {
        workload.copies
    } else {
        workload.copies.div_ceil(GPU_NETWORKS_AT_ONCE)
    };
    Some(fixed + per_size * threads * rounds as f64 * workload.relative_size())
}

#[cfg(test)]
mod tests {
    use forexgpt_protocol::{BenchMachine, BenchResult, BenchSettings};

    use super::*;
    use crate::testing::described_machine;

    fn cpu16() -> CpuInfo {
        CpuInfo {
            model: "Test Xeon".into(),
            logical_threads: 16,
            arch: "x86_64".into(),
        }
    }

    #[test]
    fn the_built_in_lines_give_the_measured_times_at_the_measured_sizes() {
        let machine = described_machine(true);
        let cpu = machine.cpu();
        let wgpu = machine
            .resolve(forexgpt_protocol::DevicePreference::Wgpu(Some(0)))
            .unwrap();
        let model = CostModel::built_in();
        let big = Workload::linear_fit(1_000_000, 128, 8);
        assert!((big.relative_size() - 1.0).abs() < 1e-12);
        let on_cpu = model.estimate(big, &cpu, 16).unwrap();
        let on_wgpu = model.estimate(big, &wgpu, 16).unwrap();
        assert_eq!(on_cpu.ms, 70.0);
        assert_eq!(on_wgpu.ms, 46.0);
        assert_eq!(on_cpu.source, EstimateSource::BuiltIn);
        // Two threads: the CPU's per-size part is eight times the 16-thread one.
        assert_eq!(model.estimate(big, &cpu, 2).unwrap().ms, 1.0 + 8.0 * 69.0);
        // Autoencoder ensembles: one member on one bar stays on the CPU (0.07 ms against
        // Vulkan's 0.6 ms fixed part); fifty members on one bar go to the GPU (3.3 ms on the
        // CPU against 0.75 ms on Vulkan, measured).
        let ms = |w: Workload, d: &ComputeDevice| model.estimate(w, d, 16).unwrap().ms;
        let one = Workload::encoder_inference(1, 1, 88);
        let fifty = Workload::encoder_inference(50, 1, 88);
        assert!(ms(one, &cpu) < ms(one, &wgpu));
        assert!(ms(fifty, &wgpu) < ms(fifty, &cpu));
        assert!((ms(Workload::encoder_inference(50, 1_000, 88), &cpu) - 157.0).abs() < 1e-9);
        // The forest grows on wgpu a level at a time: far ahead of the CPU at the seed size;
        // a depth limit shortens the work (4 levels of about 13).
        let forest = Workload::forest_fit(10_000, 64, 100);
        assert!(ms(forest, &wgpu) * 5.0 < ms(forest, &cpu));
        let shallow = forest.with_max_depth(Some(3));
        assert!((shallow.relative_size() * 1e4f64.log2() / 4.0 - 1.0).abs() < 1e-12);
        assert!((forest.with_max_depth(Some(40)).relative_size() - 1.0).abs() < 1e-12);
        let reference = Workload::encoder_training(10_000, 128, 20, 51_728, 1);
        assert_eq!(mirrored_mlp_parameters(128, &[128, 64], 16, false), 51_728);
        assert!((reference.relative_size() - 1.0).abs() < 1e-12);
        // The fused kernels beat the CPU (a network they do not cover trains on the CPU
        // only: its job does not offer the GPUs at all).
        assert!(ms(reference, &wgpu) * 5.0 < ms(reference, &cpu));
        // Sixteen networks together: sixteen times one on the CPU, about three on a GPU.
        let grid = Workload::encoder_training(10_000, 128, 20, 51_728, 16);
        let one_cpu = model.estimate(reference, &cpu, 16).unwrap().ms;
        assert_eq!(
            model.estimate(grid, &cpu, 16).unwrap().ms,
            2.0 + 16.0 * (one_cpu - 2.0)
        );
        let one_wgpu = model.estimate(reference, &wgpu, 16).unwrap().ms;
        assert_eq!(
            model.estimate(grid, &wgpu, 16).unwrap().ms,
            20.0 + 3.0 * (one_wgpu - 20.0)
        );
        assert!(
            grid.describe()
                .starts_with("16 networks of 10,000 × 128, 20 epochs")
        );
        assert_eq!(
            mirrored_mlp_parameters(128, &[128, 64], 16, true),
            51_728 + 64 * 16 + 16
        );
    }

    #[test]
    fn benchmark_sizes_parse_into_workloads() {
        assert_eq!(
            Workload::of_benchmark("lasso", "1000000×128→8"),
            Some(Workload::linear_fit(1_000_000, 128, 8))
        );
        assert_eq!(
            Workload::of_benchmark("rf_fit", "100 trees, 10000×64→4"),
            Some(Workload::forest_fit(10_000, 64, 100))
        );
        assert_eq!(
            Workload::of_benchmark("rf_predict", "100 trees, 100000×64"),
            Some(Workload::forest_predict(100_000, 64, 100))
        );
        for op in ["autoencoder", "autoencoder_fit"] {
            assert_eq!(
                Workload::of_benchmark(op, "10000×128, 20 epochs").map(|w| w.parameters),
                Some(51_728),
                "{op}"
            );
        }
        assert_eq!(
            Workload::of_benchmark("vae_fit", "10000×128, 20 epochs").map(|w| w.parameters),
            Some(mirrored_mlp_parameters(128, &[128, 64], 16, true))
        );
        assert_eq!(
            Workload::of_benchmark("forecast_ae", "50 models, 1000 bars"),
            Some(Workload::encoder_inference(50, 1000, 88))
        );
        assert_eq!(
            Workload::of_benchmark("forecast", "1 model, 1 bar"),
            Some(Workload::inference(1, 1, 88))
        );
        // Rows whose time is not a job's (members without bands, grids, a CUDA-only
        // comparison walk, data steps, burn's GPU rows of older runs, bad sizes) weigh
        // nothing.
        for (op, size) in [
            ("vae_fit_burn", "10000×128, 20 epochs"),
            ("predict_ae", "50 models, 1000 bars"),
            ("autoencoder_grid_fit", "16 networks, 10000×128, 20 epochs"),
            ("rf_predict_cubecl", "100 trees, 100000×64"),
            ("features", "100000 bars"),
            ("ridge", "a lot"),
        ] {
            assert_eq!(Workload::of_benchmark(op, size), None, "{op}");
        }
        assert_eq!(
            Workload::linear_fit(1_000_000, 128, 8).describe(),
            "1,000,000 × 128 → 8"
        );
        assert_eq!(Workload::inference(1, 1, 88).describe(), "1 model on 1 bar");
        assert_eq!(
            Workload::forest_predict(2_000, 88, 300).describe(),
            "300 trees on 2,000 rows"
        );
    }

    fn row(operation: &str, size: &str, device: &str, median_ms: f64) -> BenchResult {
        BenchResult {
            operation: operation.into(),
            size: size.into(),
            device: device.into(),
            first_run_ms: median_ms,
            median_ms,
            min_ms: median_ms,
            max_ms: median_ms,
            repeats: 1,
            throughput_per_s: 0.0,
            max_rel_diff_vs_cpu: None,
        }
    }

    fn run(id: i64, cpu: &str, results: Vec<BenchResult>) -> BenchRun {
        BenchRun {
            id,
            created_ts: id * 100,
            app_version: "test".into(),
            git_rev: None,
            machine: BenchMachine {
                os: "linux x86_64".into(),
                cpu: cpu.into(),
                cpu_threads: 16,
                devices: Vec::new(),
                failures: Vec::new(),
            },
            settings: BenchSettings {
                suite: "regressors".into(),
                repeats: 1,
                rows: 0,
                features: 0,
                targets: 0,
                ..BenchSettings::default()
            },
            results,
        }
    }

    #[test]
    fn the_newest_benchmark_run_of_this_machine_scales_the_lines() {
        let machine = described_machine(true);
        let cpu = machine.cpu();
        let wgpu = machine
            .resolve(forexgpt_protocol::DevicePreference::Wgpu(Some(0)))
            .unwrap();
        let size = "1000000×128→8";
        let runs = vec![
            // Older: the GPU measured at twice the built-in line.
            run(
                1,
                "Test Xeon",
                vec![row("ridge", size, wgpu.label(), 2_020.0)],
            ),
            // Newer: the GPU at half, from the median of three rows; the CPU at 4×.
            run(
                2,
                "Test Xeon",
                vec![
                    row("ridge", size, "cpu", 1_124.0),
                    row("ridge", size, wgpu.label(), 505.0),
                    row("lasso", size, wgpu.label(), 404.0),
                    row("elasticnet", size, wgpu.label(), 10_000.0),
                    row("features", "100000 bars", "cpu", 20.0),
                    row("ridge", size, "scikit-learn 1.9.1 (16 threads)", 1_254.0),
                ],
            ),
            // Newest, but from another CPU: its CPU row says nothing of this machine.
            run(3, "Other CPU", vec![row("ridge", size, "cpu", 5.0)]),
        ];
        let model = CostModel::calibrated(&runs, &cpu16());
        assert!(model.is_calibrated());
        let big = Workload::linear_fit(1_000_000, 128, 8);
        let on_wgpu = model.estimate(big, &wgpu, 16).unwrap();
        assert!((on_wgpu.ms - 505.0).abs() < 1e-9, "{on_wgpu:?}");
        assert_eq!(on_wgpu.source, EstimateSource::Benchmark { run: 2 });
        let on_cpu = model.estimate(big, &cpu, 16).unwrap();
        assert!((on_cpu.ms - 1_124.0).abs() < 1e-9, "{on_cpu:?}");
        // Operations no run measured keep the built-in line.
        let pca = model
            .estimate(Workload::pca_fit(1_000_000, 128, 8), &wgpu, 16)
            .unwrap();
        assert_eq!(pca.source, EstimateSource::BuiltIn);
    }

    #[test]
    fn the_protocol_lists_exactly_the_benchmark_operations_auto_weighs() {
        for op in forexgpt_protocol::AUTO_WEIGHED_OPERATIONS {
            assert!(CostOp::of_benchmark(op).is_some(), "{op}");
        }
        for op in [
            "autoencoder_grid_fit",
            "features",
            "import_csv",
            "autoencoder_fit_burn",
        ] {
            assert!(CostOp::of_benchmark(op).is_none(), "{op}");
            assert!(!forexgpt_protocol::AUTO_WEIGHED_OPERATIONS.contains(&op));
        }
    }

    #[test]
    fn times_read_in_words() {
        assert_eq!(format_ms(0.85), "850 µs");
        assert_eq!(format_ms(12.4), "12 ms");
        assert_eq!(format_ms(1_440.0), "1.4 s");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(group_thousands(999), "999");
    }
}
