//! How the fused training kernel's speed depends on its [`CubePlan`] (rows of a batch per
//! cube, units per cube), on every GPU of this machine: the reference autoencoder of
//! docs/benchmarks.md (128-128-64-16 mirrored, ReLU, batch 64, Adam 1e-3) on 10,000 × 128
//! random rows (validation on 2,000), one network and a grid of 16, each plan timed over
//! whole epochs (training steps and the validation pass, as the engine runs them) after a
//! one-epoch warm-up that compiles the kernels.
//!
//! cargo run --release -p forexgpt-kernels --features cuda,wgpu --example fused_plans [EPOCHS]
//! `FUSED_PLANS=ROWS,UNITS,NETWORKS;…` times only those plans (e.g. `2,256,1;8,1024,16`);
//! `FUSED_UNROLL=N` unrolls the products' inner loops N times (default `MAX_UNROLL`);
//! `FUSED_WIDE_ADAM=1` (or `0`) makes the Adam dispatch take tiles of 1,024 parameters (or
//! 256) whatever the grid's size; `FUSED_ADAM_STAGE=N` makes it stage at most N values a
//! round (default 4,096 on every device; the engine gives CUDA 2,048).
//! The timed epochs run as the engine runs them: each queued before the last one's losses
//! are read (`FUSED_AHEAD=0`: read before the next is queued, as before `c993998`).
//! Every network of a grid starts from the same weights and draws its rows' orders from its
//! own generator, so the first network's last losses (printed in full) are the same on every
//! plan, alone or in a grid: a network's numbers do not depend on the plan.
//! (bench/device/fused_plans.sh runs it on the GPU machine.)

#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn main() {
    plans::main();
}

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn main() {
    eprintln!("built without GPU support: rebuild with --features cuda and/or wgpu");
    std::process::exit(2);
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod plans {
    use std::time::{Duration, Instant};

    use forexgpt_device::cube::{CubeJob, cubecl, run_cube_job};
    use forexgpt_device::testing::test_gpus;
    use forexgpt_kernels::fused_mlp::{
        Act, AdamConstants, ChainShape, ChainTrainer, CubePlan, MAX_UNROLL,
    };
    use forexgpt_random::SplitMix64;

    const ROWS: usize = 10_000;
    const VALIDATION: usize = 2_000;
    const WIDTH: usize = 128;

    struct Data {
        shape: ChainShape,
        train: Vec<f32>,
        validation: Vec<f32>,
        initial: Vec<f32>,
    }

    fn data() -> Data {
        let widths = vec![WIDTH, 128, 64, 16, 64, 128, WIDTH];
        let shape = ChainShape {
            activated: vec![true, true, false, true, true, false],
            widths,
            activation: Act::Relu,
            batch: 64,
            vae_head: None,
            dropout: 0,
        };
        let mut rng = SplitMix64::new(11);
        let mut draw = |n: usize, k: f64| -> Vec<f32> {
            (0..n)
                .map(|_| ((2.0 * rng.uniform() - 1.0) * k) as f32)
                .collect()
        };
        Data {
            train: draw(ROWS * WIDTH, 1.0),
            validation: draw(VALIDATION * WIDTH, 1.0),
            initial: draw(shape.parameters(), 0.1),
            shape,
        }
    }

    struct Timed<'a> {
        data: &'a Data,
        plan: CubePlan,
        nets: usize,
        epochs: usize,
        wide_adam: Option<bool>,
        adam_stage: Option<usize>,
        ahead: bool,
    }

    /// (time of the timed epochs, the first network's last training and validation losses,
    /// dispatches, cubes per network, units per cube, the host's time queuing and waiting in
    /// the timed epochs)
    type Outcome = (Duration, (f64, f64), u64, usize, u32, Duration, Duration);

    impl CubeJob for Timed<'_> {
        type Output = Result<Outcome, String>;

        fn run<R: cubecl::Runtime>(self, device: &R::Device) -> Self::Output {
            let d = self.data;
            let initial = vec![d.initial.clone(); self.nets];
            let mut trainer = ChainTrainer::<R>::with_plan(
                device,
                d.shape.clone(),
                &d.train,
                &d.validation,
                &initial,
                self.plan,
            )?;
            if let Some(wide) = self.wide_adam {
                trainer.set_wide_adam_tiles(wide);
            }
            if let Some(values) = self.adam_stage {
                trainer.set_adam_stage_values(values);
            }
            let active = vec![true; self.nets];
            let adam = AdamConstants::with_lr(1e-3);
            let mut rngs: Vec<SplitMix64> = (0..self.nets)
                .map(|k| SplitMix64::new(5 + k as u64))
                .collect();
            let mut orders = || {
                let mut order = Vec::with_capacity(self.nets * ROWS);
                for rng in &mut rngs {
                    let mut o: Vec<u32> = (0..ROWS as u32).collect();
                    for i in (1..o.len()).rev() {
                        o.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
                    }
                    order.extend(o);
                }
                order
            };
            // The warm-up epoch (it compiles the kernels), read back at once.
            trainer
                .epoch(&orders(), None, &active, adam, 0.0, &|| false)?
                .ok_or("cancelled")?;
            trainer.validation_loss(&active, 0.0)?;
            let warm = trainer.timing();
            // The timed epochs as the engine runs them: each queued before the last one's
            // losses are read, its weights snapshotted and then kept (as if each improved).
            let started = Instant::now();
            let reader = trainer.reader();
            let mut loss = (0.0, 0.0);
            let mut pending = None;
            for e in 0..=self.epochs {
                let next = if e < self.epochs {
                    let train = trainer
                        .queue_epoch(&reader, &orders(), None, &active, adam, 0.0, &|| false)?
                        .ok_or("cancelled")?;
                    let validation = trainer.queue_validation(&reader, &active, 0.0)?;
                    trainer.snapshot(e % 2, &active)?;
                    Some((e, train, validation))
                } else {
                    None
                };
                // The epoch read now: the one queued before, or (not queued ahead) this one.
                let to_read = if self.ahead {
                    std::mem::replace(&mut pending, next)
                } else {
                    next
                };
                if let Some((done, train, validation)) = to_read {
                    loss = (trainer.losses(train)?[0], trainer.losses(validation)?[0]);
                    trainer.keep_snapshot(done % 2, &active)?;
                }
            }
            Ok((
                started.elapsed(),
                loss,
                trainer.timing().dispatches - warm.dispatches,
                trainer.cubes_per_network(),
                trainer.units(),
                trainer.timing().queuing - warm.queuing,
                trainer.timing().waiting - warm.waiting,
            ))
        }
    }

    /// The sweep's plans: (rows per cube, units, networks).
    fn default_runs() -> Vec<(usize, u32, usize)> {
        let mut runs = Vec::new();
        for rows in [64, 32, 16, 8, 4, 2] {
            for units in [1024, 256] {
                runs.push((rows, units, 1));
            }
        }
        for rows in [64, 16, 8, 4] {
            for units in [1024, 256] {
                runs.push((rows, units, 16));
            }
        }
        runs
    }

    /// `ROWS,UNITS,NETWORKS;…` (FUSED_PLANS: a few plans only, e.g. under a profiler).
    fn parse_runs(list: &str) -> Option<Vec<(usize, u32, usize)>> {
        list.split(';')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let v: Vec<&str> = p.split(',').map(str::trim).collect();
                match v[..] {
                    [r, u, n] => Some((r.parse().ok()?, u.parse().ok()?, n.parse().ok()?)),
                    _ => None,
                }
            })
            .collect()
    }

    pub fn main() {
        let epochs: usize = std::env::args()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(20);
        let data = data();
        let devices = test_gpus("the plan sweep");
        if devices.is_empty() {
            eprintln!("no GPU on this machine: nothing measured");
            std::process::exit(1);
        }
        println!(
            "| device | rows per cube | units | cubes per network | networks | {epochs} epochs (ms) | dispatches | queuing (ms) | waiting (ms) | last loss | last validation loss |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let runs = match std::env::var("FUSED_PLANS") {
            Ok(list) => match parse_runs(&list) {
                Some(runs) => runs,
                None => {
                    eprintln!(
                        "FUSED_PLANS='{list}': expected ROWS,UNITS,NETWORKS;… (e.g. 2,256,1;8,256,16)"
                    );
                    std::process::exit(2);
                }
            },
            Err(_) => default_runs(),
        };
        let unroll = std::env::var("FUSED_UNROLL")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(MAX_UNROLL);
        let wide_adam = std::env::var("FUSED_WIDE_ADAM")
            .ok()
            .map(|v| v.trim() == "1");
        let adam_stage = std::env::var("FUSED_ADAM_STAGE")
            .ok()
            .and_then(|v| v.trim().parse().ok());
        let ahead = std::env::var("FUSED_AHEAD").map_or(true, |v| v.trim() != "0");
        for device in &devices {
            for &(rows, units, nets) in &runs {
                let plan = CubePlan {
                    rows_per_cube: rows,
                    units,
                    unroll,
                };
                let job = Timed {
                    data: &data,
                    plan,
                    nets,
                    epochs,
                    wide_adam,
                    adam_stage,
                    ahead,
                };
                match run_cube_job(device, "fused plans", job) {
                    Ok(Ok((time, loss, dispatches, parts, units, queuing, waiting))) => println!(
                        "| {} | {rows} | {units} | {parts} | {nets} | {:.0} | {dispatches} | {:.0} | {:.0} | {:.12} | {:.12} |",
                        device.label(),
                        time.as_secs_f64() * 1e3,
                        queuing.as_secs_f64() * 1e3,
                        waiting.as_secs_f64() * 1e3,
                        loss.0,
                        loss.1
                    ),
                    Ok(Err(e)) => {
                        println!("| {} | {rows} | {units} | failed: {e} |", device.label())
                    }
                    Err(e) => println!("| {} | {rows} | {units} | failed: {e} |", device.label()),
                }
            }
        }
    }
}
