//! The fused network-training kernel against a plain float64 implementation of the same
//! steps (written here, independently of the kernel), on every GPU this machine has:
//! lavapipe's Vulkan in CI, CUDA where usable. Without a GPU the test says so and checks
//! nothing (the engine's tests cover the CPU path).
#![cfg(any(feature = "wgpu", feature = "cuda"))]
#![allow(clippy::unwrap_used)]

use forexgpt_device::ComputeDevice;
use forexgpt_device::cube::{CubeJob, cubecl, run_cube_job};
use forexgpt_device::testing::test_gpus;
use forexgpt_kernels::fused_mlp::{
    Act, AdamConstants, ChainShape, ChainTrainer, CubePlan, MAX_UNROLL, SOFTWARE_UNROLL,
};
use forexgpt_random::SplitMix64;

/// A float64 reference: the chain's forward pass, MSE loss, backpropagation and burn's Adam,
/// with dropout's hashed masks (`dropout_seed`) as the kernel's docs define them.
struct Reference {
    shape: ChainShape,
    params: Vec<f64>,
    m1: Vec<f64>,
    m2: Vec<f64>,
    t: i32,
    dropout_seed: u32,
}

/// The "lowbias32" hash, as the kernel's docs give it.
fn lowbias32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// What dropout multiplies output `i` of layer `l` by, for the row at `position` of the
/// epoch's order at Adam step `t` (1-based) of a network with `seed`.
fn dropout_factor(threshold: u32, seed: u32, t: u32, position: u32, l: usize, i: usize) -> f64 {
    let unit = (l as u32) * 65_536 + i as u32;
    let h = lowbias32(seed ^ lowbias32(t ^ lowbias32(position ^ lowbias32(unit))));
    if h < threshold {
        0.0
    } else {
        1.0 / (1.0 - f64::from(threshold) / 4_294_967_296.0)
    }
}

fn act(a: Act, z: f64) -> f64 {
    match a {
        Act::Relu => z.max(0.0),
        Act::LeakyRelu => {
            if z > 0.0 {
                z
            } else {
                0.01 * z
            }
        }
        Act::Tanh => z.tanh(),
        Act::Gelu => 0.5 * z * (1.0 + erf(z / std::f64::consts::SQRT_2)),
    }
}

fn slope(a: Act, z: f64) -> f64 {
    match a {
        Act::Relu => f64::from(u8::from(z > 0.0)),
        Act::LeakyRelu => {
            if z > 0.0 {
                1.0
            } else {
                0.01
            }
        }
        Act::Tanh => 1.0 - z.tanh().powi(2),
        Act::Gelu => {
            let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
            0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2)) + z * pdf
        }
    }
}

/// erf by its Taylor series (|x| ≤ 3) or continued-fraction tail: ample for f32 comparisons.
fn erf(x: f64) -> f64 {
    if x.abs() > 3.0 {
        let t = 1.0 / (1.0 + 0.5 * x.abs());
        let y = 1.0
            - t * (-x * x - 1.265_512_23
                + t * (1.000_023_68
                    + t * (0.374_091_96
                        + t * (0.096_784_18
                            + t * (-0.186_288_06
                                + t * (0.278_868_07
                                    + t * (-1.135_203_98
                                        + t * (1.488_515_87
                                            + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
                .exp();
        return y.copysign(x);
    }
    let mut term = x;
    let mut sum = x;
    for n in 1..200 {
        term *= -x * x / n as f64;
        let add = term / (2 * n + 1) as f64;
        sum += add;
        if add.abs() < 1e-17 {
            break;
        }
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// Per layer boundary, per row, the values.
type Layers = Vec<Vec<Vec<f64>>>;

impl Reference {
    fn new(shape: &ChainShape, params: &[f32], dropout_seed: u32) -> Reference {
        Reference {
            shape: shape.clone(),
            params: params.iter().map(|&v| f64::from(v)).collect(),
            m1: vec![0.0; params.len()],
            m2: vec![0.0; params.len()],
            t: 0,
            dropout_seed,
        }
    }

    /// Dropout's factor for output `i` of layer `l` of the row at `position` at step `t`
    /// (1 without dropout, or when not training: `t` 0).
    fn factor(&self, t: u32, position: u32, l: usize, i: usize) -> f64 {
        if self.shape.dropout == 0 || t == 0 {
            return 1.0;
        }
        dropout_factor(self.shape.dropout, self.dropout_seed, t, position, l, i)
    }

    fn offsets(&self) -> Vec<usize> {
        let mut at = 0;
        self.shape
            .widths
            .windows(2)
            .map(|w| {
                let o = at;
                at += w[0] * w[1] + w[1];
                o
            })
            .collect()
    }

    /// Pre-activations and activations of every layer for `rows`, without dropout.
    fn forward(&self, rows: &[Vec<f64>]) -> (Layers, Layers) {
        self.forward_at(rows, 0, 0)
    }

    /// The same while training at step `t` (1-based; 0: no dropout), the rows at positions
    /// `first…` of the epoch's order: activated outputs are dropped or scaled.
    fn forward_at(&self, rows: &[Vec<f64>], t: u32, first: u32) -> (Layers, Layers) {
        let offsets = self.offsets();
        let mut a = vec![rows.to_vec()];
        let mut z = vec![rows.to_vec()];
        for (l, w) in self.shape.widths.windows(2).enumerate() {
            let (fin, fout) = (w[0], w[1]);
            let (wo, bo) = (offsets[l], offsets[l] + fin * fout);
            let mut zl = Vec::new();
            let mut al = Vec::new();
            for (b, prev) in a[l].iter().enumerate() {
                let zr: Vec<f64> = (0..fout)
                    .map(|j| {
                        self.params[bo + j]
                            + (0..fin)
                                .map(|i| prev[i] * self.params[wo + i * fout + j])
                                .sum::<f64>()
                    })
                    .collect();
                let ar = zr
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| {
                        if self.shape.activated[l] {
                            act(self.shape.activation, v) * self.factor(t, first + b as u32, l, j)
                        } else {
                            v
                        }
                    })
                    .collect();
                zl.push(zr);
                al.push(ar);
            }
            z.push(zl);
            a.push(al);
        }
        (z, a)
    }

    /// Summed per-value loss of `rows` (Σ diff² / width).
    fn loss(&self, rows: &[Vec<f64>]) -> f64 {
        let (_, a) = self.forward(rows);
        Self::loss_of(rows, &a, self.shape.widths[0])
    }

    fn loss_of(rows: &[Vec<f64>], a: &Layers, d: usize) -> f64 {
        let d = d as f64;
        let out = a.last().unwrap();
        rows.iter()
            .zip(out)
            .map(|(x, y)| x.iter().zip(y).map(|(p, q)| (q - p).powi(2)).sum::<f64>() / d)
            .sum()
    }

    /// One Adam step on `rows` (at positions `first…` of the epoch's order); returns the
    /// batch's summed per-value loss.
    fn step(&mut self, rows: &[Vec<f64>], first: u32, lr: f64) -> f64 {
        let t = self.t as u32 + 1;
        let (z, a) = self.forward_at(rows, t, first);
        let loss = Self::loss_of(rows, &a, self.shape.widths[0]);
        let offsets = self.offsets();
        let layers = self.shape.widths.len() - 1;
        let d = self.shape.widths[0];
        let scale = 2.0 / (rows.len() * d) as f64;
        let mut delta: Vec<Vec<f64>> = a[layers]
            .iter()
            .zip(rows)
            .map(|(y, x)| y.iter().zip(x).map(|(q, p)| (q - p) * scale).collect())
            .collect();
        let mut grad = vec![0.0; self.params.len()];
        for l in (0..layers).rev() {
            let (fin, fout) = (self.shape.widths[l], self.shape.widths[l + 1]);
            let (wo, bo) = (offsets[l], offsets[l] + fin * fout);
            for (b, dr) in delta.iter().enumerate() {
                for j in 0..fout {
                    grad[bo + j] += dr[j];
                    for i in 0..fin {
                        grad[wo + i * fout + j] += dr[j] * a[l][b][i];
                    }
                }
            }
            if l > 0 {
                delta = delta
                    .iter()
                    .enumerate()
                    .map(|(b, dr)| {
                        (0..fin)
                            .map(|i| {
                                let g: f64 = (0..fout)
                                    .map(|j| dr[j] * self.params[wo + i * fout + j])
                                    .sum();
                                if self.shape.activated[l - 1] {
                                    g * slope(self.shape.activation, z[l][b][i])
                                        * self.factor(t, first + b as u32, l - 1, i)
                                } else {
                                    g
                                }
                            })
                            .collect()
                    })
                    .collect();
            }
        }
        self.t += 1;
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let c2 = (1.0 - b2.powi(self.t)).sqrt();
        let step = lr * c2 / (1.0 - b1.powi(self.t));
        for (p, g) in grad.iter().enumerate() {
            self.m1[p] = b1 * self.m1[p] + (1.0 - b1) * g;
            self.m2[p] = b2 * self.m2[p] + (1.0 - b2) * g * g;
            self.params[p] -= step * self.m1[p] / (self.m2[p].sqrt() + eps * c2);
        }
        loss
    }
}

struct Case {
    shape: ChainShape,
    train: Vec<f32>,
    validation: Vec<f32>,
    initial: Vec<Vec<f32>>,
    /// Each network's dropout seed.
    seeds: Vec<u32>,
    orders: Vec<Vec<u32>>,
    epochs: usize,
    lr: f32,
}

/// A case whose networks drop activated outputs with probability `p` (seeds apart).
fn with_dropout(mut c: Case, p: f64) -> Case {
    c.shape.dropout = forexgpt_kernels::fused_mlp::dropout_threshold(p);
    c.seeds = (0..c.initial.len() as u32).map(|k| 1_000 + 7 * k).collect();
    c
}

fn case(activation: Act, nets: usize, n_train: usize, batch: usize) -> Case {
    case_w(activation, nets, n_train, batch, vec![7, 6, 3, 6, 7])
}

/// `nets` networks of `widths` (activated after every layer but the middle and the last one)
/// on `n_train` random rows in batches of `batch`, for two epochs.
fn case_w(activation: Act, nets: usize, n_train: usize, batch: usize, widths: Vec<usize>) -> Case {
    let d = widths[0];
    let layers = widths.len() - 1;
    let shape = ChainShape {
        widths: widths.clone(),
        activated: (0..layers)
            .map(|l| l + 1 != layers / 2 && l + 1 != layers)
            .collect(),
        activation,
        batch,
        vae_head: None,
        dropout: 0,
    };
    let mut rng = SplitMix64::new(7);
    let mut draw = |n: usize, k: f64| -> Vec<f32> {
        (0..n)
            .map(|_| ((2.0 * rng.uniform() - 1.0) * k) as f32)
            .collect()
    };
    let train = draw(n_train * d, 1.5);
    let validation = draw(9 * d, 1.5);
    let initial: Vec<Vec<f32>> = (0..nets).map(|_| draw(shape.parameters(), 0.4)).collect();
    let epochs = 2;
    let mut orders = Vec::new();
    for _ in 0..epochs {
        let mut all = Vec::new();
        for _ in 0..nets {
            let mut o: Vec<u32> = (0..n_train as u32).collect();
            for i in (1..o.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                o.swap(i, j);
            }
            all.extend(o);
        }
        orders.push(all);
    }
    Case {
        shape,
        train,
        validation,
        seeds: vec![0; initial.len()],
        initial,
        orders,
        epochs,
        lr: 0.01,
    }
}

/// What the kernel produced: per epoch, each network's training and validation loss; then
/// each network's parameters.
type Trained = (Vec<(Vec<f64>, Vec<f64>)>, Vec<Vec<f32>>);

struct TrainCase<'a> {
    case: &'a Case,
    only: Option<usize>,
    plan: CubePlan,
    /// Fill the trainer's scratch buffers, Adam moments and best weights with NaN first (as
    /// if the device handed them out uninitialised, as CUDA does; the moments and best weights
    /// are then set again on the device).
    poisoned: bool,
    /// Sum the gradients in Adam tiles of 1,024 parameters (a large grid's) instead of 256.
    wide_adam: bool,
    /// Stage at most this many values a round in the Adam dispatch (several rounds a batch).
    adam_stage: Option<usize>,
}

impl CubeJob for TrainCase<'_> {
    type Output = Result<Trained, String>;

    fn run<R: cubecl::Runtime>(self, device: &R::Device) -> Self::Output {
        let c = self.case;
        let n = c.train.len() / c.shape.widths[0];
        let (initial, nets): (Vec<Vec<f32>>, Vec<usize>) = match self.only {
            Some(k) => (vec![c.initial[k].clone()], vec![k]),
            None => (c.initial.clone(), (0..c.initial.len()).collect()),
        };
        let mut trainer = ChainTrainer::<R>::with_plan(
            device,
            c.shape.clone(),
            &c.train,
            &c.validation,
            &initial,
            self.plan,
        )?;
        if self.poisoned {
            trainer.fill_scratch(f32::NAN)?;
            if trainer.best_parameters()? != initial {
                return Err("the best weights are not the initial ones after the set-up".into());
            }
        }
        if self.wide_adam {
            trainer.set_wide_adam_tiles(true);
        }
        if let Some(values) = self.adam_stage {
            trainer.set_adam_stage_values(values);
        }
        trainer.set_dropout_seeds(&nets.iter().map(|&k| c.seeds[k]).collect::<Vec<_>>())?;
        let active = vec![true; nets.len()];
        let mut losses = Vec::new();
        for e in 0..c.epochs {
            let orders: Vec<u32> = nets
                .iter()
                .flat_map(|&k| c.orders[e][k * n..(k + 1) * n].iter().copied())
                .collect();
            let train = trainer
                .epoch(
                    &orders,
                    None,
                    &active,
                    AdamConstants::with_lr(c.lr),
                    0.0,
                    &|| false,
                )?
                .ok_or("cancelled")?;
            let validation = trainer.validation_loss(&active, 0.0)?;
            losses.push((train, validation));
        }
        Ok((losses, trainer.parameters()?))
    }
}

fn gpu_devices() -> Vec<ComputeDevice> {
    test_gpus("the fused kernel")
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

/// A plan of `rows_per_cube` rows a cube, `units` units each, unrolled as the engine does
/// on a software rasterizer (lavapipe compiles fully unrolled kernels for minutes).
fn plan(rows_per_cube: usize, units: u32) -> CubePlan {
    CubePlan {
        rows_per_cube,
        units,
        unroll: SOFTWARE_UNROLL,
    }
}

/// The whole batch in one cube, unrolled as [`plan`].
fn whole(batch: usize) -> CubePlan {
    CubePlan {
        unroll: SOFTWARE_UNROLL,
        ..CubePlan::whole_batch(batch)
    }
}

fn check_against_reference(device: &ComputeDevice, c: &Case) {
    check_with_plan(device, c, whole(c.shape.batch));
}

fn check_with_plan(device: &ComputeDevice, c: &Case, plan: CubePlan) {
    check_with(device, c, plan, false);
}

fn check_with(device: &ComputeDevice, c: &Case, plan: CubePlan, poisoned: bool) {
    check_case(device, c, plan, poisoned, false);
}

fn check_case(device: &ComputeDevice, c: &Case, plan: CubePlan, poisoned: bool, wide_adam: bool) {
    let (losses, params) = run_cube_job(
        device,
        "test",
        TrainCase {
            case: c,
            only: None,
            plan,
            poisoned,
            wide_adam,
            adam_stage: None,
        },
    )
    .unwrap()
    .unwrap();
    let n = c.train.len() / c.shape.widths[0];
    let rows = |x: &[f32]| -> Vec<Vec<f64>> {
        x.chunks(c.shape.widths[0])
            .map(|r| r.iter().map(|&v| f64::from(v)).collect())
            .collect()
    };
    let train_rows = rows(&c.train);
    let validation_rows = rows(&c.validation);
    for (k, initial) in c.initial.iter().enumerate() {
        let mut reference = Reference::new(&c.shape, initial, c.seeds[k]);
        for (e, orders) in c.orders.iter().enumerate() {
            let order = &orders[k * n..(k + 1) * n];
            let mut sum = 0.0;
            for (s, batch) in order.chunks(c.shape.batch).enumerate() {
                let picked: Vec<Vec<f64>> = batch
                    .iter()
                    .map(|&r| train_rows[r as usize].clone())
                    .collect();
                let first = (s * c.shape.batch) as u32;
                sum += reference.step(&picked, first, f64::from(c.lr));
            }
            let train = sum / n as f64;
            let validation = reference.loss(&validation_rows) / validation_rows.len() as f64;
            let (got_train, got_validation) = (losses[e].0[k], losses[e].1[k]);
            assert!(
                close(got_train, train, 1e-4),
                "{}: network {k}, epoch {e}: training loss {got_train} vs reference {train}",
                device.label()
            );
            assert!(
                close(got_validation, validation, 1e-4),
                "{}: network {k}, epoch {e}: validation loss {got_validation} vs reference {validation}",
                device.label()
            );
        }
        let (worst, at) = params[k]
            .iter()
            .zip(&reference.params)
            .map(|(&g, &r)| (f64::from(g) - r).abs())
            .enumerate()
            .fold(
                (0.0, 0),
                |(w, a), (i, d)| if d > w { (d, i) } else { (w, a) },
            );
        eprintln!(
            "{:?}, {plan:?}: worst {worst:e} at {at} of {}",
            c.shape.widths,
            params[k].len()
        );
        assert!(
            worst < 2e-4,
            "{}: network {k}: parameters differ from the reference by up to {worst}",
            device.label()
        );
    }
}

#[test]
fn every_activation_trains_as_the_float64_reference_does() {
    for device in gpu_devices() {
        for activation in [Act::Relu, Act::LeakyRelu, Act::Tanh, Act::Gelu] {
            // 11 rows in batches of 4: two full batches and one of 3, over two epochs.
            check_against_reference(&device, &case(activation, 2, 11, 4));
        }
        // 70 rows in batches of 2: 35 steps, more than one flush per epoch.
        check_against_reference(&device, &case(Act::Tanh, 1, 70, 2));
        // The default network (input 32 here) on 300 rows in batches of 64: a version that
        // looped over steps inside one dispatch got this wrong on lavapipe.
        let default_net = vec![32, 128, 64, 16, 64, 128, 32];
        check_against_reference(&device, &case_w(Act::Tanh, 1, 300, 64, default_net));
        // Products whose inputs pass through workgroup memory in several chunks (300 inputs
        // of 64 rows, 300 rows' worth of gradients; at most 32 KiB a chunk), with a short
        // last batch of 8 rows.
        let wide = vec![300, 40, 8, 40, 300];
        check_against_reference(&device, &case_w(Act::Tanh, 1, 200, 64, wide));
        // Layers wider than a cube's units: each unit takes several output columns.
        check_against_reference(&device, &case_w(Act::Tanh, 1, 10, 4, vec![1100, 8, 1100]));
    }
}

#[test]
fn a_batch_split_among_cubes_trains_as_the_reference_does() {
    for device in gpu_devices() {
        // 11 rows in batches of 4, slices of 1 and 3 rows: the last batch (3 rows) leaves
        // the last cube of each split empty, and slices of 3 split a batch unevenly.
        for rows_per_cube in [1, 3] {
            check_with_plan(&device, &case(Act::Gelu, 2, 11, 4), plan(rows_per_cube, 64));
        }
        // The default network (input 32) in batches of 64 split into 8 and 4 cubes, with
        // 1,024 and 64 units; a short last batch of 44 rows leaves cubes partly or wholly
        // without rows.
        let default_net = vec![32, 128, 64, 16, 64, 128, 32];
        // (GELU: leaky ReLU's kink makes float32 and float64 part at pre-activations near 0,
        // by 2e-4 in this case's validation loss with the batch in one cube as well.)
        let c = case_w(Act::Gelu, 2, 300, 64, default_net);
        check_with_plan(&device, &c, plan(8, 1024));
        check_with_plan(&device, &c, plan(8, 256));
        check_with_plan(&device, &c, plan(16, 64));
        // The gradients summed in Adam tiles of 1,024 parameters, as for large grids (the
        // last batch short, and with NaN in every scratch value at the start).
        check_case(&device, &c, plan(8, 256), true, true);
        check_case(
            &device,
            &case(Act::Gelu, 2, 11, 4),
            plan(3, 64),
            false,
            true,
        );
        // Unrolled as on a GPU (blocks of 16 inputs, the next block's weights loaded ahead)
        // on a network small enough for lavapipe to compile quickly: 32 and 48 inputs.
        let unrolled = case_w(Act::Tanh, 2, 40, 8, vec![32, 48, 16, 48, 32]);
        for rows_per_cube in [2, 8] {
            let p = CubePlan {
                unroll: MAX_UNROLL,
                ..plan(rows_per_cube, 64)
            };
            check_with_plan(&device, &unrolled, p);
        }
    }
}

/// A network's numbers do not depend on the plan: how its batches are split among cubes,
/// the cubes' units, the Adam dispatch's tiles, or the whole batch in one cube (gradients
/// summed and Adam applied there). Each weight's gradient is summed over the batch in its
/// rows' order and each row's loss in a fixed order, so a network trains bit for bit the
/// same alone (cubes of 2 rows) as in a large grid (cubes of 8 rows, Adam tiles of 1,024).
#[test]
fn a_network_trains_bit_for_bit_the_same_whatever_the_plan() {
    for device in gpu_devices() {
        // 40 rows in batches of 16 (the last one 8 rows short); layers of 32 and 48 inputs
        // fill their Adam tiles' rows (the bias then an extra row), 16 inputs leave it room.
        let c = case_w(Act::Tanh, 2, 40, 16, vec![32, 48, 16, 48, 32]);
        let train = |plan: CubePlan, wide_adam: bool, adam_stage: Option<usize>| {
            run_cube_job(
                &device,
                "test",
                TrainCase {
                    case: &c,
                    only: None,
                    plan,
                    poisoned: false,
                    wide_adam,
                    adam_stage,
                },
            )
            .unwrap()
            .unwrap()
        };
        let (losses, weights) = train(plan(2, 64), false, None);
        // (64 values a round: the Adam dispatch stages a batch's rows a few at a time.)
        for (other, wide_adam, adam_stage) in [
            (plan(4, 256), false, None),
            (plan(2, 64), true, None),
            (plan(8, 256), true, None),
            (plan(16, 64), false, None),
            (plan(4, 64), false, Some(64)),
            (plan(8, 256), true, Some(64)),
            (whole(16), false, None),
        ] {
            let (got_losses, got_weights) = train(other, wide_adam, adam_stage);
            let what = format!(
                "{}: {other:?}, Adam tiles of 1,024: {wide_adam}, staging {adam_stage:?} values",
                device.label()
            );
            assert_eq!(got_weights, weights, "{what}");
            assert_eq!(got_losses, losses, "{what}");
        }
    }
}

/// Scratch memory is allocated without being cleared: with every scratch value NaN at the
/// start, training still matches the reference, so no step reads a value it did not write.
/// The cases are those where rows go missing: short last batches, cubes of a split left
/// without rows, and fewer training rows than one batch.
#[test]
fn no_step_reads_scratch_memory_it_did_not_write() {
    for device in gpu_devices() {
        let c = case(Act::Gelu, 2, 11, 4);
        check_with(&device, &c, whole(4), true);
        check_with(&device, &c, plan(3, 64), true);
        let few = case(Act::Tanh, 1, 3, 4);
        check_with(&device, &few, whole(4), true);
        check_with(&device, &few, plan(1, 64), true);
        let default_net = vec![32, 128, 64, 16, 64, 128, 32];
        let c = case_w(Act::Gelu, 2, 300, 64, default_net);
        check_with(&device, &c, plan(16, 64), true);
    }
}

#[test]
fn a_grid_trained_together_gives_each_network_what_it_gets_alone() {
    for device in gpu_devices() {
        let c = case(Act::Gelu, 3, 23, 5);
        // Each batch split among three cubes (the networks' Adam in a second dispatch).
        let split = plan(2, 64);
        let (together_losses, together) = run_cube_job(
            &device,
            "test",
            TrainCase {
                case: &c,
                only: None,
                plan: split,
                poisoned: false,
                wide_adam: false,
                adam_stage: None,
            },
        )
        .unwrap()
        .unwrap();
        for (k, together) in together.iter().enumerate() {
            let (alone_losses, alone) = run_cube_job(
                &device,
                "test",
                TrainCase {
                    case: &c,
                    only: Some(k),
                    plan: split,
                    poisoned: false,
                    wide_adam: false,
                    adam_stage: None,
                },
            )
            .unwrap()
            .unwrap();
            assert_eq!(*together, alone[0], "{}: network {k}", device.label());
            for (t, a) in together_losses.iter().zip(&alone_losses) {
                assert_eq!(t.0[k], a.0[0]);
                assert_eq!(t.1[k], a.1[0]);
            }
        }
    }
}

/// Dropout (its hashed masks) against the reference: every activation, the batch in one cube
/// and split among cubes (the masks follow the rows' positions, not the cubes), and a grid
/// whose networks drop different units but each what it drops alone.
#[test]
fn dropout_trains_as_the_reference_does_on_any_plan_alone_or_in_a_grid() {
    for device in gpu_devices() {
        for activation in [Act::Relu, Act::LeakyRelu, Act::Tanh, Act::Gelu] {
            let c = with_dropout(case(activation, 2, 11, 4), 0.3);
            check_against_reference(&device, &c);
            check_with_plan(&device, &c, plan(3, 64));
        }
        let default_net = vec![32, 128, 64, 16, 64, 128, 32];
        let c = with_dropout(case_w(Act::Tanh, 2, 300, 64, default_net), 0.2);
        check_with_plan(&device, &c, plan(8, 256));
        check_with(&device, &c, plan(16, 64), true);

        let c = with_dropout(case(Act::Gelu, 3, 23, 5), 0.5);
        let split = plan(2, 64);
        let run = |only| {
            run_cube_job(
                &device,
                "test",
                TrainCase {
                    case: &c,
                    only,
                    plan: split,
                    poisoned: false,
                    wide_adam: false,
                    adam_stage: None,
                },
            )
            .unwrap()
            .unwrap()
        };
        let (together_losses, together) = run(None);
        for (k, together) in together.iter().enumerate() {
            let (alone_losses, alone) = run(Some(k));
            assert_eq!(*together, alone[0], "{}: network {k}", device.label());
            for (t, a) in together_losses.iter().zip(&alone_losses) {
                assert_eq!(t.0[k], a.0[0]);
                assert_eq!(t.1[k], a.1[0]);
            }
        }
    }
}

/// Trains `case` twice in one job: epoch by epoch, reading each epoch's losses and
/// weights before the next; and as the engine does, each epoch queued before the last one's
/// losses are read, its weights snapshotted and kept after (network `k` keeps epoch `e`
/// where `keeps(e, k)`). Returns both runs' losses, the weights after each epoch of the
/// first, and the kept weights of the second.
struct QueuedAhead<'a> {
    case: &'a Case,
    plan: CubePlan,
    keeps: fn(usize, usize) -> bool,
}

type QueuedTrained = (
    Vec<(Vec<f64>, Vec<f64>)>,
    Vec<(Vec<f64>, Vec<f64>)>,
    Vec<Vec<Vec<f32>>>,
    Vec<Vec<f32>>,
);

impl CubeJob for QueuedAhead<'_> {
    type Output = Result<QueuedTrained, String>;

    fn run<R: cubecl::Runtime>(self, device: &R::Device) -> Self::Output {
        let c = self.case;
        let nets = c.initial.len();
        let active = vec![true; nets];
        let adam = AdamConstants::with_lr(c.lr);
        let new = || {
            ChainTrainer::<R>::with_plan(
                device,
                c.shape.clone(),
                &c.train,
                &c.validation,
                &c.initial,
                self.plan,
            )
        };
        let mut one_by_one = new()?;
        let (mut losses, mut weights) = (Vec::new(), Vec::new());
        for orders in &c.orders {
            let train = one_by_one
                .epoch(orders, None, &active, adam, 0.0, &|| false)?
                .ok_or("cancelled")?;
            let validation = one_by_one.validation_loss(&active, 0.0)?;
            losses.push((train, validation));
            weights.push(one_by_one.parameters()?);
        }
        let mut ahead = new()?;
        let reader = ahead.reader();
        let mut ahead_losses = Vec::new();
        let mut pending = None;
        for e in 0..=c.orders.len() {
            let next = match c.orders.get(e) {
                Some(orders) => {
                    let train = ahead
                        .queue_epoch(&reader, orders, None, &active, adam, 0.0, &|| false)?
                        .ok_or("cancelled")?;
                    let validation = ahead.queue_validation(&reader, &active, 0.0)?;
                    ahead.snapshot(e % 2, &active)?;
                    Some((train, validation))
                }
                None => None,
            };
            if let Some((train, validation)) = pending.take() {
                let done = e - 1;
                ahead_losses.push((ahead.losses(train)?, ahead.losses(validation)?));
                let keep: Vec<bool> = (0..nets).map(|k| (self.keeps)(done, k)).collect();
                ahead.keep_snapshot(done % 2, &keep)?;
            }
            pending = next;
        }
        Ok((losses, ahead_losses, weights, ahead.best_parameters()?))
    }
}

/// The engine queues each epoch before it reads the last one's losses, and keeps a
/// network's weights of an epoch from a snapshot taken then: the losses are those of
/// epochs run one by one, and each network ends with the weights of the last epoch it kept,
/// bit for bit. Of four epochs, one network keeps epochs 0 and 1 (epoch 1's slot is taken
/// again by epoch 3, queued after the keep), the other 0 and 2.
#[test]
fn epochs_queued_ahead_train_the_same_and_keep_each_epochs_weights() {
    for device in gpu_devices() {
        let mut c = case(Act::Tanh, 2, 23, 5);
        c.orders = [c.orders.clone(), c.orders.clone()].concat();
        c.epochs = c.orders.len();
        for plan in [plan(2, 64), whole(5)] {
            let (losses, ahead_losses, weights, kept) = run_cube_job(
                &device,
                "test",
                QueuedAhead {
                    case: &c,
                    plan,
                    keeps: |e, k| if k == 0 { e <= 1 } else { e % 2 == 0 },
                },
            )
            .unwrap()
            .unwrap();
            let what = format!("{}, {plan:?}", device.label());
            assert_eq!(ahead_losses, losses, "{what}");
            assert_eq!(kept[0], weights[1][0], "{what}: network 0");
            assert_eq!(kept[1], weights[2][1], "{what}: network 1");
            assert_ne!(
                weights[2], weights[3],
                "{what}: the last epoch changes the weights"
            );
        }
    }
}
