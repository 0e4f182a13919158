//! Fused training of small dense networks: one CubeCL kernel (one source for CUDA and wgpu:
//! Vulkan, Metal, DX12) runs whole Adam steps of a chain of dense layers trained to reproduce
//! its input (the autoencoder), a few cubes (workgroups) per network, so a grid of networks
//! trains in the same launches.
//!
//! Each step's batch can be split into slices of a few rows ([`CubePlan`]), one cube each. A
//! cube gathers its rows in the epoch's order, runs them forward through every layer, takes
//! the MSE loss and its gradient, and runs backward layer by layer (each layer's output
//! gradient, from which the layer below's follows), writing each row's loss at the row's
//! position in the pass (summed in a fixed order per row). A second
//! dispatch sums each weight's gradient over the whole batch from the layers' inputs and
//! output gradients the cubes left in device memory, and applies Adam ([`chain_adam`]); with
//! the batch in one cube, that cube sums and applies Adam itself in the same dispatch. Either
//! way a weight's gradient is summed over the batch's rows in their order, whatever the plan
//! (before, each cube wrote its slice's gradient, a copy of all parameters, and the second
//! dispatch added the copies up: for a grid of 16, 26 MB written and read back a step, 30 %
//! of its time on an H100). Weights, Adam
//! moments and activations stay in device memory; the host uploads one shuffled row order
//! per network and epoch, queues the epoch's dispatches, and reads back each network's loss
//! once (`sum_losses` adds its rows' losses on the device, in an order fixed by their
//! count). A network's numbers therefore do not depend on the plan.
//! Validation is the same kernel without the backward half, every batch's slices in one
//! dispatch (they are independent).
//!
//! Why split: one cube runs a step as ~15 dependent phases (a product each), every one
//! waiting for its slowest unit; a cube of 1,024 units on one streaming multiprocessor took
//! 292 µs a step on an H200 with the GPU otherwise idle. Slices make each phase shorter and
//! put several multiprocessors on one network. On an H100 it paid: the reference
//! autoencoder trained 5× faster through CUDA and 3× through Vulkan with its batch of 64 in
//! 32 cubes of 2 rows than in one cube ([`CubePlan::for_grid`] says how a step is spread).
//!
//! One step per dispatch (or pair), not a loop of steps in one dispatch: a loop of steps gave
//! wrong losses on lavapipe for the 128-64-16 network (4+ steps per dispatch; right with 1–3
//! and for smaller networks), and a dispatch per step keeps each one far below OS GPU
//! watchdogs.
//!
//! Numerics follow burn's path (`forexgpt-engine`'s reference trainer): burn's `Linear`
//! layout (`weight` is `inputs × outputs`, row-major, then the bias), PyTorch's `MSELoss`
//! (mean over the batch's values), burn's Adam (`p -= lr·m·√(1−β₂ᵗ)/(1−β₁ᵗ) / (√v +
//! ε·√(1−β₂ᵗ))`), the same activations (GELU exact, through erf; LeakyReLU slope 0.01).
//! All arithmetic is f32; sums run in a fixed order, so results are deterministic on a given
//! device.
//!
//! The VAE is the same chain with one layer outputting `[μ | log σ²]`, a sampling phase
//! (`z = μ + σ·ε` with the host's draws, the KL term) and its backward (see [`ChainShape`]).
//!
//! Dropout (training only) zeroes each activated layer's outputs with probability `p` and
//! scales the rest by `1/(1−p)`, as burn's `Dropout` does after each activation. Its masks
//! are not drawn from a generator but hashed, so that the forward and backward passes, every
//! cube plan, and a network trained alone or in a grid all see the same mask without storing
//! it: output `i` of layer `l`, for the row at position `r` of the epoch's order, at Adam step
//! `t` (1-based over the trainer's life) of the network with dropout seed `s`, is dropped when
//! `mix(s ^ mix(t ^ mix(r ^ mix(l·2¹⁶ + i)))) < ChainShape::dropout`, `mix` being the
//! "lowbias32" integer hash (`x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b;
//! x ^= x >> 16`, wrapping). burn's CPU path draws its masks from its own generator, so a
//! network with dropout does not train to the same weights on the CPU and on a GPU.

use cubecl::prelude::*;
use cubecl::server::Handle;
use forexgpt_protocol::Activation;

/// Most units (threads) of the cube that trains one network: a cube takes the largest power
/// of two up to this that the device allows (CUDA, Vulkan and Metal adapters allow 1,024;
/// WebGPU guarantees 256). Each step is a chain of small products whose every phase waits
/// for the slowest unit, so more units per network means shorter phases.
pub const MAX_CUBE_UNITS: u32 = 1024;

/// Fewest units the kernel runs with (a power of two: the rows' losses take
/// 32 units each, `LOSS_LANES`).
pub const MIN_CUBE_UNITS: u32 = 64;

/// Units that sum one row's loss together (see [`chain_step`]).
const LOSS_LANES: u32 = 32;

/// Most workgroup memory a cube stages its products' inputs through, in f32 values (32 KiB:
/// what Metal allows; CUDA and Vulkan on NVIDIA allow 48 KiB; a device with less gets
/// smaller chunks).
pub const MAX_STAGE: u32 = 8192;

/// The staging values a cube gets on a device with `max_bytes` of workgroup memory: the
/// largest power of two that fits, up to [`MAX_STAGE`].
pub fn stage_values(max_bytes: usize) -> u32 {
    floor_power_of_two((max_bytes / 4).min(MAX_STAGE as usize) as u32)
}

/// The largest power of two up to `x` (0 for 0).
fn floor_power_of_two(x: u32) -> u32 {
    x.checked_ilog2().map_or(0, |log| 1 << log)
}

/// The units a cube gets on a device that allows `max_units` per cube, if it can run the
/// kernel at all.
pub fn cube_units(max_units: u32) -> Option<u32> {
    let units = max_units.min(MAX_CUBE_UNITS);
    (units >= MIN_CUBE_UNITS).then(|| floor_power_of_two(units))
}

/// Steps queued between flushes (which submit the queued dispatches and surface errors) and
/// cancellation checks.
pub const STEPS_PER_FLUSH: usize = 32;

/// PyTorch's `LeakyReLU` default slope (as burn's path uses).
const LEAKY_SLOPE: f32 = 0.01;

/// The activation between layers, as the kernel is compiled for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Act {
    Relu,
    LeakyRelu,
    Tanh,
    Gelu,
}

impl From<Activation> for Act {
    fn from(a: Activation) -> Act {
        match a {
            Activation::Relu => Act::Relu,
            Activation::LeakyRelu => Act::LeakyRelu,
            Activation::Tanh => Act::Tanh,
            Activation::Gelu => Act::Gelu,
        }
    }
}

/// A chain of dense layers trained to reproduce its input, on batches of `batch` rows:
/// boundary widths `widths[0] → widths[1] → … → widths[L]` (the last is the first), layer `l`
/// followed by the activation where `activated[l]`.
///
/// With `vae_head: Some(h)` the chain is a VAE: layer `h` outputs `[μ | log σ²]`
/// (`widths[h + 1]` is twice the latent size), the next layer reads the sample
/// `z = μ + σ·ε` (or `μ` when validating) of the latent size, and the loss is
/// `½·SSE + w·KL(N(μ, σ²) ‖ N(0, 1))` per row, as burn's `Vae`.
///
/// `dropout` is the threshold of the dropout hash (see the module's docs) below which an
/// activated output is dropped while training: [`dropout_threshold`] of the probability;
/// 0 for none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChainShape {
    pub widths: Vec<usize>,
    pub activated: Vec<bool>,
    pub activation: Act,
    pub batch: usize,
    pub vae_head: Option<usize>,
    pub dropout: u32,
}

/// The dropout hash's threshold for dropping with probability `p` (`round(p·2³²)`, below
/// 2³²): 0 for none.
pub fn dropout_threshold(p: f64) -> u32 {
    (p.clamp(0.0, 1.0) * 4_294_967_296.0)
        .round()
        .min(f64::from(u32::MAX)) as u32
}

/// What a kept output is multiplied by under a dropout threshold: `1 / (1 − p)`.
fn keep_scale(threshold: u32) -> f32 {
    (1.0 / (1.0 - f64::from(threshold) / 4_294_967_296.0)) as f32
}

impl ChainShape {
    fn layers(&self) -> usize {
        self.widths.len().saturating_sub(1)
    }

    /// The VAE's latent size.
    pub fn latent(&self) -> Option<usize> {
        self.vae_head.map(|h| self.widths[h + 1] / 2)
    }

    /// Inputs and outputs of layer `l`.
    fn layer_io(&self, l: usize) -> (usize, usize) {
        let fin = match self.vae_head {
            Some(h) if l == h + 1 => self.widths[l] / 2,
            _ => self.widths[l],
        };
        (fin, self.widths[l + 1])
    }

    /// Trainable values of one network: every layer's weight, then its bias.
    pub fn parameters(&self) -> usize {
        (0..self.layers())
            .map(|l| {
                let (fin, fout) = self.layer_io(l);
                fin * fout + fout
            })
            .sum()
    }

    /// Where each layer's weight starts in a network's parameters (its bias follows it).
    fn param_offsets(&self) -> Vec<usize> {
        let mut offsets = Vec::with_capacity(self.layers());
        let mut at = 0;
        for l in 0..self.layers() {
            offsets.push(at);
            let (fin, fout) = self.layer_io(l);
            at += fin * fout + fout;
        }
        offsets
    }

    /// A network's parameters with each layer's weight stored `outputs × inputs` (the
    /// kernel's `transposed` copy; biases as they are).
    fn transposed(&self, params: &[f32]) -> Vec<f32> {
        let mut out = params.to_vec();
        for (l, &at) in self.param_offsets().iter().enumerate() {
            let (fin, fout) = self.layer_io(l);
            for i in 0..fin {
                for j in 0..fout {
                    out[at + j * fin + i] = params[at + i * fout + j];
                }
            }
        }
        out
    }

    /// Where each boundary's batch of values starts in a network's activations, then the
    /// VAE's sample `z` (after the last boundary).
    fn boundary_offsets(&self) -> Vec<usize> {
        let mut offsets = Vec::with_capacity(self.widths.len() + 1);
        let mut at = 0;
        for &w in &self.widths {
            offsets.push(at);
            at += self.batch * w;
        }
        offsets.push(at);
        offsets
    }

    /// Where each layer reads its input and writes its output in the activations.
    fn layer_offsets(&self) -> (Vec<usize>, Vec<usize>) {
        let b = self.boundary_offsets();
        let z_at = b[self.widths.len()];
        (0..self.layers())
            .map(|l| match self.vae_head {
                Some(h) if l == h + 1 => (z_at, b[l + 1]),
                _ => (b[l], b[l + 1]),
            })
            .unzip()
    }

    fn activations(&self) -> usize {
        self.batch * (self.widths.iter().sum::<usize>() + self.latent().unwrap_or(0))
    }

    /// Where each layer's output gradient (the loss's gradient with respect to its
    /// pre-activation outputs, `batch × outputs`) starts in a cube's share of the backward
    /// pass's buffer, then where the VAE's gradient for its sample `z` goes (`batch ×
    /// latent`), then the share's size. Every layer keeps its own, so that after the
    /// backward pass the weights' gradients can be summed over the whole batch from the
    /// layers' inputs and output gradients (see [`chain_adam`]).
    fn delta_offsets(&self) -> (Vec<usize>, usize, usize) {
        let mut offsets = Vec::with_capacity(self.layers());
        let mut at = 0;
        for l in 0..self.layers() {
            offsets.push(at);
            at += self.batch * self.layer_io(l).1;
        }
        let z_grad = at;
        (
            offsets,
            z_grad,
            at + self.batch * self.latent().unwrap_or(0),
        )
    }

    /// Why this shape cannot train here, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let l = self.layers();
        if l == 0 || self.activated.len() != l {
            return Err(format!(
                "a chain of {} widths needs {} activation flags, not {}",
                self.widths.len(),
                l,
                self.activated.len()
            ));
        }
        if self.widths.first() != self.widths.last() {
            return Err("the chain must end at its input width".into());
        }
        if self.widths.contains(&0) || self.batch == 0 {
            return Err("every width and the batch size must be positive".into());
        }
        if let Some(h) = self.vae_head
            && (h + 2 >= self.widths.len()
                || !self.widths[h + 1].is_multiple_of(2)
                || self.activated[h])
        {
            return Err(format!(
                "layer {h} cannot be a VAE's head: it needs a following layer, an even, \
                 unactivated output"
            ));
        }
        // Offsets are u32 in the kernel's configuration and indices stay below 2³² per buffer.
        if self.parameters() > u32::MAX as usize / 4 || self.activations() > u32::MAX as usize / 4 {
            return Err("the network is too large for the fused kernels".into());
        }
        Ok(())
    }

    /// The kernel's configuration for cubes of `slice` rows (the batch's rows split among
    /// `parts` cubes per network; the layout of a cube's activations is that of a batch of
    /// `slice` rows).
    fn config(
        &self,
        train: bool,
        units: u32,
        stage: u32,
        slice: usize,
        unroll: usize,
    ) -> KernelConfig {
        let mut config = self.sliced(slice).slice_config(train, units, stage);
        config.unroll = unroll as u32;
        config.full_batch = self.batch as u32;
        config.parts = self.batch.div_ceil(slice) as u32;
        config
    }

    /// This shape with batches of `rows` rows: one cube's slice of a split batch.
    fn sliced(&self, rows: usize) -> ChainShape {
        ChainShape {
            batch: rows,
            ..self.clone()
        }
    }

    fn slice_config(&self, train: bool, units: u32, stage: u32) -> KernelConfig {
        let as_u32 = |v: &[usize]| v.iter().map(|&x| x as u32).collect::<Vec<u32>>();
        let (ins, outs): (Vec<usize>, Vec<usize>) =
            (0..self.layers()).map(|l| self.layer_io(l)).unzip();
        let (in_offsets, out_offsets) = self.layer_offsets();
        let boundaries = self.boundary_offsets();
        let deltas = self.delta_offsets();
        let head = self.vae_head.unwrap_or(0);
        KernelConfig {
            fins: as_u32(&ins),
            fouts: as_u32(&outs),
            activated: self.activated.clone(),
            act: self.activation,
            batch: self.batch as u32,
            full_batch: self.batch as u32,
            parts: 1,
            param_offsets: as_u32(&self.param_offsets()),
            in_offsets: as_u32(&in_offsets),
            out_offsets: as_u32(&out_offsets),
            delta_offsets: as_u32(&deltas.0),
            z_grad_offset: deltas.1 as u32,
            output_offset: boundaries[self.widths.len() - 1] as u32,
            vae: self.vae_head.is_some(),
            head: head as u32,
            head_offset: boundaries[head + 1] as u32,
            z_offset: boundaries[self.widths.len()] as u32,
            latent: self.latent().unwrap_or(0) as u32,
            parameters: self.parameters() as u32,
            activations: self.activations() as u32,
            deltas: deltas.2 as u32,
            train,
            units,
            stage,
            dropout: if train { self.dropout } else { 0 },
            unroll: MAX_UNROLL as u32,
            adam_tile: ADAM_TILE as u32,
            adam_stage_values: ADAM_STAGE_VALUES as u32,
        }
    }

    /// Why this shape cannot train with cubes of `units` units and `stage` values of
    /// workgroup memory, if it cannot: every product's chunk must hold at least one input
    /// column of its padded rows (or one padded row of inputs).
    fn check_stage(&self, units: u32, stage: u32) -> Result<(), String> {
        let stage = stage as usize;
        if stage < units as usize {
            return Err(format!(
                "{stage} values of workgroup memory cannot hold the loss of {units} units"
            ));
        }
        for l in 0..self.layers() {
            let (fin, fout) = self.layer_io(l);
            let (_, groups, tile) = blocking(fout, self.batch as u32, units);
            let (_, below_groups, below_tile) = blocking(fin, self.batch as u32, units);
            let (_, grad_groups, grad_tile) = blocking(fout, fin as u32, units);
            if chunk_of(fin, groups * tile, stage) == 0
                || (l > 0 && chunk_of(fout, below_groups * below_tile, stage) == 0)
                || chunk_of(self.batch, grad_groups * grad_tile, stage) == 0
            {
                return Err(format!(
                    "layer {l} ({fin} → {fout}, batch {}) does not fit {} KiB of workgroup memory",
                    self.batch,
                    stage * 4 / 1024
                ));
            }
        }
        Ok(())
    }
}

/// Everything the kernel is specialised for (compile-time in the kernel: one compiled kernel
/// per network shape, activation and mode).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KernelConfig {
    fins: Vec<u32>,
    fouts: Vec<u32>,
    activated: Vec<bool>,
    act: Act,
    /// Rows of the batch one cube takes (its slice).
    batch: u32,
    /// Rows of a whole batch, split among `parts` cubes.
    full_batch: u32,
    parts: u32,
    param_offsets: Vec<u32>,
    in_offsets: Vec<u32>,
    out_offsets: Vec<u32>,
    /// Where each layer's output gradient starts in a cube's share of `delta`.
    delta_offsets: Vec<u32>,
    /// Where the VAE's gradient for its sample goes in a cube's share of `delta`.
    z_grad_offset: u32,
    output_offset: u32,
    vae: bool,
    head: u32,
    head_offset: u32,
    z_offset: u32,
    latent: u32,
    parameters: u32,
    activations: u32,
    /// The size of a cube's share of `delta`.
    deltas: u32,
    train: bool,
    units: u32,
    stage: u32,
    /// The dropout hash's threshold (0: none); compiled in only when training.
    dropout: u32,
    /// Most iterations of a product's inner loop unrolled into one block.
    unroll: u32,
    /// Parameters a cube of [`chain_adam`] updates.
    adam_tile: u32,
    /// Most values of a round [`chain_adam`] stages ([`ADAM_STAGE_VALUES`]).
    adam_stage_values: u32,
}

impl KernelConfig {
    /// [`chain_adam`]'s first tile of layer `l` (the layers' tiles one after the other).
    fn adam_first_tile(&self, l: usize) -> usize {
        (0..l)
            .map(|k| adam_tiling(self.fins[k], self.fouts[k], self.adam_tile as usize).2)
            .sum()
    }

    /// [`chain_adam`]'s cubes per network.
    fn adam_tiles(&self) -> usize {
        self.adam_first_tile(self.fins.len())
    }

    /// Rows of the batch [`chain_adam`] stages at a time for layer `l`: the inputs and output
    /// gradients of its tile's rows and columns, [`ADAM_STAGE_VALUES`] at most.
    fn adam_round(&self, l: usize) -> usize {
        let (rows, cols, _) = adam_tiling(self.fins[l], self.fouts[l], self.adam_tile as usize);
        (self.adam_stage_values as usize / (rows + cols)).clamp(1, self.full_batch as usize)
    }

    /// [`chain_adam`]'s workgroup memory: the largest round of staged rows, or the largest
    /// tile with each row padded by one value (the transposed reads of a column then fall in
    /// different banks).
    fn adam_stage(&self) -> usize {
        (0..self.fins.len())
            .map(|l| {
                let (rows, cols, _) =
                    adam_tiling(self.fins[l], self.fouts[l], self.adam_tile as usize);
                (self.adam_round(l) * (rows + cols)).max(rows * (cols + 1))
            })
            .max()
            .unwrap_or(1)
    }
}

/// Register blocking of a phase over `width` columns with `span` items each (rows, or a
/// layer's inputs), for `units` units: `(cols, groups, tile)`. Unit `u < groups · cols` owns
/// column `u % cols` (and every `cols`-th after it, where the width exceeds the units) and
/// items `u / cols + r · groups` for `r < tile`, so each value it loads for its column serves
/// `tile` items.
fn blocking(width: usize, span: u32, units: u32) -> (usize, usize, usize) {
    let cols = width.min(units as usize);
    let groups = (units as usize / cols).min(span as usize).max(1);
    (cols, groups, (span as usize).div_ceil(groups))
}

/// The most of `len` (a divisor of it) that fit workgroup memory of `stage` values at `per`
/// values each; 0 when not even one does.
fn chunk_of(len: usize, per: usize, stage: usize) -> usize {
    (1..=len)
        .rev()
        .find(|d| len.is_multiple_of(*d) && d * per <= stage)
        .unwrap_or(0)
}

/// Parameters one cube of [`chain_adam`] updates: one a unit while a grid's tiles are few
/// (with four a unit, one network's 66 cubes left half of an H100 idle), four a unit from
/// [`ADAM_WIDE_CUBES`] tiles of 256 on (a grid of 16 reference networks: the cubes' fixed
/// work, staging and Adam's constants, then counts less).
const ADAM_TILE: usize = ADAM_UNITS as usize;
const ADAM_WIDE_TILE: usize = 4 * ADAM_UNITS as usize;

/// Tiles of 256 parameters in all networks from which [`chain_adam`] takes tiles of 1,024.
const ADAM_WIDE_CUBES: usize = 1024;

/// Most values a cube of [`chain_adam`] stages a round (rows of its tile's inputs and output
/// gradients) unless [`ChainTrainer::set_adam_stage_values`] says otherwise: 16 KiB of
/// workgroup memory, what WebGPU guarantees. Each unit holds its share of a round in
/// registers between the loads and the stores, so the round sets the registers: see
/// [`CUDA_ADAM_STAGE`].
pub const ADAM_STAGE_VALUES: usize = 4096;

/// The round the engine gives [`chain_adam`] on CUDA. On an H100, for a grid of 16 reference
/// networks, rounds of 4,096 values took 80 registers a unit (3 cubes a multiprocessor at
/// once, 29.4 µs a dispatch), 2,048 took 48 (5 cubes, 26.3 µs), 1,024 took 40 (6 cubes,
/// 26.8 µs). On the same GPU's Vulkan 2,048 made one network 8 % slower and the grid no
/// faster, so other devices keep [`ADAM_STAGE_VALUES`].
pub const CUDA_ADAM_STAGE: usize = 2048;

/// How [`chain_adam`] tiles a layer of `fin` inputs and `fout` outputs, its parameters seen as
/// `fin + 1` rows of `fout` (the weight's rows, then the bias): `(rows, cols, tiles)`, tiles of
/// `rows × cols` parameters (`tile` in all, 256 or 1,024; up to 32 columns, fewer for
/// narrower layers, so no unit idles there). A tile's column then holds 8 or more consecutive
/// inputs: its transposed copy fills whole 32-byte sectors. The bias row belongs to the last
/// row of tiles, as one of its rows where `fin` leaves room or as an extra row where the tiles
/// are full (see [`chain_adam`]): a tile of the bias alone cost as much as a full one (the
/// reference autoencoder, tiles of 1,024: 15 of its 66 tiles).
fn adam_tiling(fin: u32, fout: u32, tile: usize) -> (usize, usize, usize) {
    let (fin, fout) = (fin as usize, fout as usize);
    let cols = fout.next_power_of_two().min(32);
    let rows = tile / cols;
    (rows, cols, fin.div_ceil(rows).max(1) * fout.div_ceil(cols))
}

/// Whether [`chain_adam`]'s last row of tiles of a layer of `fin` inputs holds the bias as an
/// extra row (`fin` fills its tiles' rows).
fn adam_extra_bias(fin: u32, rows: usize) -> bool {
    (fin as usize).is_multiple_of(rows)
}

/// Most values a unit loads into registers before it stores them to workgroup memory in
/// [`stage_rows`] (all loads of a round are in flight together).
const STAGE_ROUND: usize = 8;

/// Copies `rows` rows of `width` values from `src` (the first at `at`, rows `stride` apart)
/// into workgroup memory, rows `stage_stride` apart. Every unit of the cube (`units` of them)
/// takes part: each loads its values of a round into registers (the loads independent, so
/// they wait for memory together, not one after another), then stores them.
#[cube]
fn stage_rows(
    src: &Array<f32>,
    stage: &mut SharedMemory<f32>,
    at: usize,
    stride: usize,
    #[comptime] rows: usize,
    #[comptime] width: usize,
    #[comptime] stage_stride: usize,
    #[comptime] units: usize,
) {
    let total = comptime![rows * width];
    let per_unit = comptime![total.div_ceil(units)];
    let round = comptime![per_unit.clamp(1, STAGE_ROUND)];
    let whole = comptime![total.is_multiple_of(units)];
    let tid = UNIT_POS as usize;
    for first in 0..comptime![per_unit.div_ceil(round)] {
        let mut values = Array::<f32>::new(round);
        #[unroll]
        for q in 0..round {
            let idx = (first * round + q) * units + tid;
            if whole || idx < total {
                values[q] = src[at + idx / width * stride + idx % width];
            }
        }
        #[unroll]
        for q in 0..round {
            let idx = (first * round + q) * units + tid;
            if whole || idx < total {
                stage[idx / width * stage_stride + idx % width] = values[q];
            }
        }
    }
}

/// A product's register tile: `acc[r] += Σₖ src[at + row_r · len + k] · weights[w_at + k ·
/// w_stride]` over the `len` inputs of the unit's rows `row_r = g + r · groups`. The batch's
/// rows pass through workgroup memory `chunk` inputs at a time. The inner loop runs in
/// blocks of `unroll` inputs, and a unit loads the next block's weights before it multiplies
/// by the current one's, so a block's loads are in flight together, and while it computes
/// (the first block's are issued before the chunk is staged). Written out like this, the
/// CUDA compiler cannot sink the loads next to their uses: left to itself it did, whenever
/// the kernel needed few registers, and each step of the reference network took 1.5× as
/// long on an H100. Every unit takes part (the chunks are copied between barriers); only
/// `active` ones accumulate.
#[cube]
#[allow(clippy::too_many_arguments)]
fn staged_product(
    acc: &mut Array<f32>,
    src: &Array<f32>,
    at: usize,
    stage: &mut SharedMemory<f32>,
    weights: &Array<f32>,
    w_at: usize,
    active: bool,
    g: usize,
    #[comptime] len: usize,
    #[comptime] w_stride: usize,
    #[comptime] batch: usize,
    #[comptime] groups: usize,
    #[comptime] tile: usize,
    #[comptime] chunk: usize,
    #[comptime] units: usize,
    #[comptime] most_unroll: usize,
) {
    let unroll = comptime![unroll_by(chunk, most_unroll)];
    let blocks = comptime![chunk / unroll];
    for c in 0..comptime![len / chunk] {
        let base = w_at + c * chunk * w_stride;
        let mut w = Array::<f32>::new(unroll);
        if active {
            #[unroll]
            for u in 0..unroll {
                w[u] = weights[base + u * w_stride];
            }
        }
        sync_cube();
        stage_rows(src, stage, at + c * chunk, len, batch, chunk, chunk, units);
        sync_cube();
        if active {
            for k_block in 0..blocks {
                let mut next = Array::<f32>::new(unroll);
                if k_block + 1 < blocks {
                    #[unroll]
                    for u in 0..unroll {
                        next[u] = weights[base + ((k_block + 1) * unroll + u) * w_stride];
                    }
                }
                #[unroll]
                for u in 0..unroll {
                    let k = k_block * unroll + u;
                    #[unroll]
                    for r in 0..tile {
                        acc[r] += stage[(g + r * groups) * chunk + k] * w[u];
                    }
                }
                #[unroll]
                for u in 0..unroll {
                    w[u] = next[u];
                }
            }
        }
    }
}

/// Most iterations of a product's inner loop that run as one unrolled block, by default
/// ([`CubePlan::unroll`]).
pub const MAX_UNROLL: usize = 16;

/// The unrolling on CUDA: on an H100, 32 took the reference network 42 ms for 10 epochs
/// alone and 96–106 ms in a grid of 16, against 54–55 and 114–125 ms with 16 (64 was no
/// faster). Through Vulkan on the same GPU 16 did better than 32 (`bench/device/fused_plans.sh`
/// with `FUSED_UNROLL`; docs/benchmarks.md).
pub const CUDA_UNROLL: usize = 32;

/// The unrolling for a software rasterizer (lavapipe): compiling the kernels unrolled 16
/// times took it minutes (a test of a few steps went from 12 s to 180 s), for nothing, as
/// it runs on the CPU.
pub const SOFTWARE_UNROLL: usize = 4;

/// How many iterations of a product's inner loop of `len` run as one unrolled block: the
/// largest power of two up to `most` that divides it. Unrolled, a unit issues the loads of
/// all iterations of a block before it needs the first, so they wait for memory together,
/// and addresses become offsets.
fn unroll_by(len: usize, most: usize) -> usize {
    (0..=most.max(1).ilog2())
        .rev()
        .map(|k| 1 << k)
        .find(|u| len.is_multiple_of(*u))
        .unwrap_or(1)
}

/// The "lowbias32" integer hash (wrapping arithmetic).
#[cube]
fn mix(x: u32) -> u32 {
    let mut h = x;
    h = h ^ (h >> 16u32);
    h *= 0x7feb_352du32;
    h = h ^ (h >> 15u32);
    h *= 0x846c_a68bu32;
    h ^ (h >> 16u32)
}

/// What dropout multiplies output `unit` (`layer·2¹⁶ + i`) of the row at `position` of the
/// epoch's order by at Adam step `step` of the network with `seed`: 0 when its hash falls
/// below `threshold`, else `keep`.
#[cube]
fn dropout_factor(
    seed: u32,
    step: u32,
    position: u32,
    unit: u32,
    threshold: u32,
    keep: f32,
) -> f32 {
    let h = mix(seed ^ mix(step ^ mix(position ^ mix(unit))));
    select(h < threshold, 0.0f32, keep)
}

#[cube]
pub(crate) fn activate(x: f32, #[comptime] act: Act) -> f32 {
    match act {
        Act::Relu => x.max(0.0f32),
        Act::LeakyRelu => select(x > 0.0f32, x, x * LEAKY_SLOPE),
        Act::Tanh => x.tanh(),
        Act::Gelu => 0.5f32 * x * (1.0f32 + Erf::erf(x * core::f32::consts::FRAC_1_SQRT_2)),
    }
}

/// The activation's derivative at pre-activation `z` whose activation is `a`.
#[cube]
fn activation_slope(z: f32, a: f32, #[comptime] act: Act) -> f32 {
    match act {
        Act::Relu => select(z > 0.0f32, 1.0f32, 0.0f32),
        Act::LeakyRelu => select(z > 0.0f32, 1.0f32, LEAKY_SLOPE),
        Act::Tanh => 1.0f32 - a * a,
        Act::Gelu => {
            let cdf = 0.5f32 * (1.0f32 + Erf::erf(z * core::f32::consts::FRAC_1_SQRT_2));
            // 1/√(2π)
            let pdf = 0.398_942_3f32 * (-0.5f32 * z * z).exp();
            cdf + z * pdf
        }
    }
}

/// Adam's update of parameter `p` (its second moment at `p + second`) with gradient `g`;
/// `step_size` and `eps_hat` carry the bias corrections. Returns the new value.
#[cube]
#[allow(clippy::too_many_arguments)]
fn adam_update(
    params: &mut Array<f32>,
    moments: &mut Array<f32>,
    p: usize,
    second: usize,
    g: f32,
    beta1: f32,
    beta2: f32,
    step_size: f32,
    eps_hat: f32,
) -> f32 {
    let m = beta1 * moments[p] + (1.0f32 - beta1) * g;
    let v = beta2 * moments[p + second] + (1.0f32 - beta2) * g * g;
    moments[p] = m;
    moments[p + second] = v;
    let value = params[p] - step_size * m / (v.sqrt() + eps_hat);
    params[p] = value;
    value
}

/// One training step (or, without `train`, batches' forward passes for the loss) of every
/// active network. Each network's batch is split among `parts` cubes of `batch` rows each
/// (cube `(net, slot)`: network `net`, slice `slot % parts` of step
/// `first_step + slot / parts`; a validation dispatch runs several steps' batches at once, a
/// training one a single step).
/// Buffers hold every network's part one after the other (`moments`: all first moments, then
/// all second moments; `acts`, `pre` and `delta`: one region per cube). `transposed` mirrors
/// `params` with each weight stored `outputs × inputs` (biases unused), kept in step by the
/// Adam phase, so the backward pass reads the weights along its units' inputs in order (one
/// memory transaction per warp instead of one per unit).
///
/// With one part, the cube sums the weights' gradients over its batch and applies Adam
/// itself (one dispatch per step). With several, each cube leaves its rows' layer inputs (in
/// `acts`) and output gradients (in `delta`, each layer its own) behind, and [`chain_adam`]
/// sums the gradients over the whole batch and applies Adam in a second dispatch: cubes
/// cannot wait for each other inside a dispatch (WGSL has no such barrier).
///
/// Launched unchecked: every index stays inside its buffer by construction (rows past a
/// short last batch read the batch-sized buffers' stale values, and their results are
/// discarded).
///
/// The units of a cube exchange values through device memory, so every phase ends with
/// `sync_storage` (WGSL's `storageBarrier`; `__syncthreads` on CUDA): `sync_cube` orders only
/// workgroup memory on WebGPU, and with it alone later phases read stale values.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn chain_step(
    x: &Array<f32>,
    order: &Array<u32>,
    noise: &Array<f32>,
    params: &mut Array<f32>,
    transposed: &mut Array<f32>,
    moments: &mut Array<f32>,
    acts: &mut Array<f32>,
    pre: &mut Array<f32>,
    delta: &mut Array<f32>,
    losses: &mut Array<f32>,
    active: &Array<u32>,
    dropout_seeds: &Array<u32>,
    n_rows: u32,
    first_step: u32,
    steps: u32,
    adam_step: u32,
    step_size: f32,
    beta1: f32,
    beta2: f32,
    eps_hat: f32,
    kl_weight: f32,
    keep: f32,
    #[comptime] cfg: KernelConfig,
) {
    let net = CUBE_POS_X as usize;
    let slot = CUBE_POS_Y as usize;
    let parts = comptime![cfg.parts as usize];
    let part = slot % parts;
    let step = first_step as usize + slot / parts;
    if active[net] == 0u32 || step >= steps as usize {
        terminate!();
    }
    let tid = UNIT_POS as usize;
    let units = CUBE_DIM as usize;
    let n_layers = comptime![cfg.fins.len()];
    let batch = comptime![cfg.batch as usize];
    let full_batch = comptime![cfg.full_batch as usize];
    let d = comptime![cfg.fins[0] as usize];
    let latent = comptime![cfg.latent as usize];
    let n_params = comptime![cfg.parameters as usize];
    let p_base = net * n_params;
    let second = CUBE_COUNT_X as usize * n_params;
    let cube = net * CUBE_COUNT_Y as usize + slot;
    let a_base = cube * comptime![cfg.activations as usize];
    let d_base = cube * comptime![cfg.deltas as usize];
    let out_at = a_base + comptime![cfg.output_offset as usize];
    let n = n_rows as usize;
    // Workgroup memory: each product's inputs in chunks, and the rows' losses' lanes.
    let mut stage = SharedMemory::<f32>::new(comptime![cfg.stage as usize]);

    // The whole batch's rows (the loss is its mean), and this cube's slice of them.
    let batch_start = step * full_batch;
    let batch_left = n - batch_start;
    let batch_rows = select(batch_left < full_batch, batch_left, full_batch);
    let before = part * batch;
    let r0 = batch_start + before;
    let slice_left = select(batch_rows > before, batch_rows - before, 0);
    let rows = select(slice_left < batch, slice_left, batch);

    // The batch's rows, in the network's order for this epoch.
    for idx in range_stepped(tid, rows * d, units) {
        let b = idx / d;
        let i = idx % d;
        let mut row = r0 + b;
        if comptime![cfg.train] {
            row = order[net * n + r0 + b] as usize;
        }
        acts[a_base + idx] = x[row * d + i];
    }
    sync_storage();

    // Forward.
    #[unroll]
    for l in 0..n_layers {
        let fin = comptime![cfg.fins[l] as usize];
        let fout = comptime![cfg.fouts[l] as usize];
        let w_at = p_base + comptime![cfg.param_offsets[l] as usize];
        let b_at = w_at + fin * fout;
        let in_at = a_base + comptime![cfg.in_offsets[l] as usize];
        let o_at = a_base + comptime![cfg.out_offsets[l] as usize];
        let activated = comptime![cfg.activated[l]];
        // Register blocking: a unit owns output column `j` for `tile` rows (`g`, `g + groups`,
        // …), so each weight it loads serves `tile` rows.
        // The batch's inputs pass through workgroup memory, `chunk` inputs of every row at a
        // time.
        let cols = comptime![blocking(fout, cfg.batch, cfg.units).0];
        let groups = comptime![blocking(fout, cfg.batch, cfg.units).1];
        let tile = comptime![blocking(fout, cfg.batch, cfg.units).2];
        let chunk = comptime![chunk_of(fin, groups * tile, cfg.stage as usize)];
        let working = tid < groups * cols;
        let g = tid / cols;
        for pass in 0..comptime![fout.div_ceil(cols)] {
            let j = pass * cols + tid % cols;
            let mut acc = Array::<f32>::new(tile);
            #[unroll]
            for r in 0..tile {
                acc[r] = 0.0f32;
            }
            staged_product(
                &mut acc,
                acts,
                in_at,
                &mut stage,
                params,
                w_at + j,
                working && j < fout,
                g,
                fin,
                fout,
                batch,
                groups,
                tile,
                chunk,
                comptime![cfg.units as usize],
                comptime![cfg.unroll as usize],
            );
            if working && j < fout {
                let bias = params[b_at + j];
                #[unroll]
                for r in 0..tile {
                    let b = g + r * groups;
                    if b < rows {
                        let z = acc[r] + bias;
                        pre[o_at + b * fout + j] = z;
                        if activated {
                            let mut a = activate(z, cfg.act);
                            if comptime![cfg.dropout > 0] {
                                a *= dropout_factor(
                                    dropout_seeds[net],
                                    adam_step,
                                    (r0 + b) as u32,
                                    comptime![l as u32 * 65_536u32] + j as u32,
                                    comptime![cfg.dropout],
                                    keep,
                                );
                            }
                            acts[o_at + b * fout + j] = a;
                        } else {
                            acts[o_at + b * fout + j] = z;
                        }
                    }
                }
            }
        }
        sync_storage();

        // The VAE's sample z = μ + exp(½·log σ²)·ε (μ when validating).
        if comptime![cfg.vae && l == cfg.head as usize] {
            let head_at = a_base + comptime![cfg.head_offset as usize];
            let z_at = a_base + comptime![cfg.z_offset as usize];
            for idx in range_stepped(tid, rows * latent, units) {
                let b = idx / latent;
                let j = idx % latent;
                let mu = acts[head_at + b * 2 * latent + j];
                let log_var = acts[head_at + b * 2 * latent + latent + j];
                let mut z = mu;
                if comptime![cfg.train] {
                    let e = noise[(net * n + r0 + b) * latent + j];
                    z = mu + (0.5f32 * log_var).exp() * e;
                }
                acts[z_at + idx] = z;
            }
            sync_storage();
        }
    }

    // Loss, and its gradient with respect to the output: the autoencoder's mean over the
    // batch's values (PyTorch's MSELoss), the VAE's ½·SSE per row.
    let mut scale = 2.0f32 / ((batch_rows * d) as f32);
    if comptime![cfg.vae] {
        scale = 1.0f32 / (batch_rows as f32);
    }
    // Each row's loss, written at the row's position in the pass (`sum_losses` adds them up
    // in an order fixed by the row count): [`LOSS_LANES`] units a row, lane `c` summing the
    // row's values `c, c + lanes, …` in order, the lanes' sums then added by a fixed tree.
    // The order depends on the row only, not on the plan: a network's losses (and so its
    // early stopping) are the same alone or in a grid of any size.
    let lanes = comptime![LOSS_LANES as usize];
    let lane = tid % lanes;
    let at_once = comptime![cfg.units as usize / LOSS_LANES as usize];
    #[unroll]
    for pass in 0..comptime![(cfg.batch as usize).div_ceil(at_once)] {
        let b = pass * at_once + tid / lanes;
        let mut sse = 0.0f32;
        let mut kl = 0.0f32;
        if b < rows {
            for i in range_stepped(lane, d, lanes) {
                let idx = b * d + i;
                let diff = acts[out_at + idx] - acts[a_base + idx];
                sse += diff * diff;
                if comptime![cfg.train] {
                    delta[d_base + comptime![cfg.delta_offsets[n_layers - 1] as usize] + idx] =
                        diff * scale;
                }
            }
            if comptime![cfg.vae] {
                let head_at = a_base + comptime![cfg.head_offset as usize];
                for j in range_stepped(lane, latent, lanes) {
                    let mu = acts[head_at + b * 2 * latent + j];
                    let log_var = acts[head_at + b * 2 * latent + latent + j];
                    kl += 1.0f32 + log_var - mu * mu - log_var.exp();
                }
            }
        }
        sync_cube();
        stage[tid] = sse;
        if comptime![cfg.vae] {
            stage[tid] = 0.5f32 * sse - 0.5f32 * kl_weight * kl;
        }
        sync_cube();
        tree_sum(&mut stage, tid - lane, lane, LOSS_LANES);
        if lane == 0 && b < rows {
            let mut loss = stage[tid];
            if comptime![!cfg.vae] {
                loss /= d as f32;
            }
            losses[net * n + r0 + b] = loss;
        }
    }

    if comptime![cfg.train] {
        sync_storage();

        // Backward, from the last layer down.
        #[unroll]
        for k in 0..n_layers {
            let l = comptime![n_layers - 1 - k];
            let fin = comptime![cfg.fins[l] as usize];
            let fout = comptime![cfg.fouts[l] as usize];
            let w_at = p_base + comptime![cfg.param_offsets[l] as usize];
            let in_at = a_base + comptime![cfg.in_offsets[l] as usize];
            let has_below = comptime![l > 0];
            let below_activated = comptime![l > 0 && cfg.activated[l - 1]];
            let after_sample = comptime![cfg.vae && l == cfg.head as usize + 1];
            // This layer's output gradient, and where the gradient for its input goes: the
            // layer below's output gradient, or the VAE's gradient for its sample.
            let cur = d_base + comptime![cfg.delta_offsets[l] as usize];
            let mut below = d_base + comptime![cfg.z_grad_offset as usize];
            if comptime![!after_sample] {
                below = d_base + comptime![cfg.delta_offsets[l.saturating_sub(1)] as usize];
            }

            // The gradient for the layer below, with this layer's weights before the update.
            // A unit owns input `i` for `tile` rows: each weight it loads serves them all.
            if has_below {
                let cols = comptime![blocking(fin, cfg.batch, cfg.units).0];
                let groups = comptime![blocking(fin, cfg.batch, cfg.units).1];
                let tile = comptime![blocking(fin, cfg.batch, cfg.units).2];
                let chunk = comptime![chunk_of(fout, groups * tile, cfg.stage as usize)];
                let working = tid < groups * cols;
                let g = tid / cols;
                for pass in 0..comptime![fin.div_ceil(cols)] {
                    let i = pass * cols + tid % cols;
                    let mut acc = Array::<f32>::new(tile);
                    #[unroll]
                    for r in 0..tile {
                        acc[r] = 0.0f32;
                    }
                    staged_product(
                        &mut acc,
                        delta,
                        cur,
                        &mut stage,
                        transposed,
                        w_at + i,
                        working && i < fin,
                        g,
                        fout,
                        fin,
                        batch,
                        groups,
                        tile,
                        chunk,
                        comptime![cfg.units as usize],
                        comptime![cfg.unroll as usize],
                    );
                    if working && i < fin {
                        #[unroll]
                        for r in 0..tile {
                            let b = g + r * groups;
                            if b < rows {
                                let at = b * fin + i;
                                let mut v = acc[r];
                                if below_activated {
                                    if comptime![cfg.dropout > 0] {
                                        // The stored output is the dropped one: the slope
                                        // reads the activation itself.
                                        let z = pre[in_at + at];
                                        v *= dropout_factor(
                                            dropout_seeds[net],
                                            adam_step,
                                            (r0 + b) as u32,
                                            comptime![(l.saturating_sub(1) as u32) * 65_536u32]
                                                + i as u32,
                                            comptime![cfg.dropout],
                                            keep,
                                        ) * activation_slope(z, activate(z, cfg.act), cfg.act);
                                    } else {
                                        v *= activation_slope(
                                            pre[in_at + at],
                                            acts[in_at + at],
                                            cfg.act,
                                        );
                                    }
                                }
                                delta[below + at] = v;
                            }
                        }
                    }
                }
                sync_storage();
            }

            // With the whole batch in this cube: this layer's gradient and Adam update (the
            // bias follows the weight); else `chain_adam` sums the gradient over the batch's
            // cubes. A unit owns output column `j` for `tile` inputs, so each gradient value
            // it loads serves them all; the first group also takes the bias.
            // The layer's inputs pass through workgroup memory, `chunk` rows at a time (each
            // row padded to `groups · tile` values, the inputs a column's units cover). The
            // sum runs over the batch's rows only: past them the buffers hold stale values,
            // or nothing ever written (CUDA does not clear new buffers).
            if comptime![cfg.parts == 1] {
                let cols = comptime![blocking(fout, fin as u32, cfg.units).0];
                let groups = comptime![blocking(fout, fin as u32, cfg.units).1];
                let tile = comptime![blocking(fout, fin as u32, cfg.units).2];
                let padded = comptime![groups * tile];
                let chunk = comptime![chunk_of(cfg.batch as usize, padded, cfg.stage as usize)];
                let working = tid < groups * cols;
                let g = tid / cols;
                for pass in 0..comptime![fout.div_ceil(cols)] {
                    let j = pass * cols + tid % cols;
                    let mut grad = Array::<f32>::new(tile);
                    #[unroll]
                    for q in 0..tile {
                        grad[q] = 0.0f32;
                    }
                    let mut grad_bias = 0.0f32;
                    for c in 0..comptime![cfg.batch as usize / chunk] {
                        sync_cube();
                        stage_rows(
                            acts,
                            &mut stage,
                            in_at + c * chunk * fin,
                            fin,
                            chunk,
                            fin,
                            padded,
                            comptime![cfg.units as usize],
                        );
                        sync_cube();
                        if working && j < fout {
                            let unroll = comptime![unroll_by(chunk, cfg.unroll as usize)];
                            for b_block in 0..comptime![chunk / unroll] {
                                #[unroll]
                                for u in 0..unroll {
                                    let bb = b_block * unroll + u;
                                    let b = c * chunk + bb;
                                    // The same for every unit of the cube: no divergence.
                                    if b < rows {
                                        let dv = delta[cur + b * fout + j];
                                        grad_bias += dv;
                                        #[unroll]
                                        for q in 0..tile {
                                            grad[q] += dv * stage[bb * padded + g + q * groups];
                                        }
                                    }
                                }
                            }
                        }
                    }
                    if working && j < fout {
                        #[unroll]
                        for q in 0..tile {
                            let i = g + q * groups;
                            if i < fin {
                                let value = adam_update(
                                    params,
                                    moments,
                                    w_at + i * fout + j,
                                    second,
                                    grad[q],
                                    beta1,
                                    beta2,
                                    step_size,
                                    eps_hat,
                                );
                                transposed[w_at + j * fin + i] = value;
                            }
                        }
                        if g == 0 {
                            adam_update(
                                params,
                                moments,
                                w_at + fin * fout + j,
                                second,
                                grad_bias,
                                beta1,
                                beta2,
                                step_size,
                                eps_hat,
                            );
                        }
                    }
                }
                sync_storage();
            }

            // Through the VAE's sampling: the gradient for z (in `below`) becomes the head's
            // output gradient for [μ | log σ²], with the KL term's.
            if after_sample {
                let head_delta = d_base + comptime![cfg.delta_offsets[cfg.head as usize] as usize];
                let head_at = a_base + comptime![cfg.head_offset as usize];
                let per_row = kl_weight / (batch_rows as f32);
                for idx in range_stepped(tid, rows * latent, units) {
                    let b = idx / latent;
                    let j = idx % latent;
                    let mu = acts[head_at + b * 2 * latent + j];
                    let log_var = acts[head_at + b * 2 * latent + latent + j];
                    let dz = delta[below + idx];
                    let e = noise[(net * n + r0 + b) * latent + j];
                    let sigma = (0.5f32 * log_var).exp();
                    delta[head_delta + b * 2 * latent + j] = dz + per_row * mu;
                    delta[head_delta + b * 2 * latent + latent + j] =
                        dz * e * 0.5f32 * sigma + per_row * 0.5f32 * (sigma * sigma - 1.0f32);
                }
                sync_storage();
            }
        }
    } else {
        sync_storage();
    }
}

/// One unit's share of a round of [`chain_adam`]'s staging, loaded into `values` (value `q`
/// is `idx = q · 256 + unit` of the round's `round × span` values, row-major): columns
/// `first .. first + span` of the `width`-wide rows `r0 ..` of the batch, row `r` held by cube
/// `first_cube + r / slice` (regions of `region` values, this buffer's rows at `offset`).
/// Past the batch's rows or the row's width a value is `pad` (the bias row's input, 1, or 0).
/// The loads are independent, so they wait for memory together; [`store_tile_rows`] stores
/// them once every buffer's are issued.
#[cube]
#[allow(clippy::too_many_arguments)]
fn gather_tile_rows(
    values: &mut Array<f32>,
    src: &Array<f32>,
    first_cube: usize,
    offset: usize,
    first: usize,
    width: usize,
    pad: f32,
    r0: usize,
    batch_rows: usize,
    #[comptime] region: usize,
    #[comptime] slice: usize,
    #[comptime] span: usize,
    #[comptime] round: usize,
) {
    let unit = UNIT_POS as usize;
    #[unroll]
    for q in 0..comptime![(round * span).div_ceil(ADAM_UNITS as usize)] {
        let idx = q * comptime![ADAM_UNITS as usize] + unit;
        let r = r0 + idx / span;
        let column = first + idx % span;
        values[q] = pad;
        if r < batch_rows && column < width && idx < comptime![round * span] {
            values[q] =
                src[(first_cube + r / slice) * region + offset + r % slice * width + column];
        }
    }
}

/// Stores one unit's share of a round gathered by [`gather_tile_rows`] (`len` values in
/// all) into workgroup memory from `at` on.
#[cube]
fn store_tile_rows(
    stage: &mut SharedMemory<f32>,
    values: &Array<f32>,
    #[comptime] at: usize,
    #[comptime] len: usize,
) {
    let unit = UNIT_POS as usize;
    #[unroll]
    for q in 0..comptime![len.div_ceil(ADAM_UNITS as usize)] {
        let idx = q * comptime![ADAM_UNITS as usize] + unit;
        if idx < len {
            stage[at + idx] = values[q];
        }
    }
}

/// The second dispatch of a step whose batch was split among several cubes per network: it
/// sums each parameter's gradient over the whole batch, from the layers' inputs (`acts`) and
/// output gradients (`delta`) the step's cubes left behind, and applies Adam, keeping
/// `transposed` in step (see [`chain_step`]).
///
/// Cube `(t, net)` takes tile `t` of network `net`'s parameters (see [`adam_tiling`]): a block
/// of a layer's weight rows (its bias as the last row, whose input is 1) and columns. Its
/// units stage the batch's rows of the tile's inputs and output gradients through workgroup
/// memory, a round of rows at a time, and each sums its parameters' gradients over the rows in
/// the batch's order (the order a cube holding the whole batch sums in). Each updates its
/// parameters, keeps the new values in workgroup memory, then the cube writes the weights'
/// transposed copies along the inputs, so both the reads and the transposed writes take
/// whole memory transactions (one unit per parameter wrote the copy a row apart per unit: a
/// transaction per value).
///
/// Rows past a short last batch are neither staged nor summed (their cubes wrote nothing
/// there this step).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn chain_adam(
    params: &mut Array<f32>,
    transposed: &mut Array<f32>,
    moments: &mut Array<f32>,
    acts: &Array<f32>,
    delta: &Array<f32>,
    active: &Array<u32>,
    n_rows: u32,
    step: u32,
    step_size: f32,
    beta1: f32,
    beta2: f32,
    eps_hat: f32,
    #[comptime] cfg: KernelConfig,
) {
    let net = CUBE_POS_Y as usize;
    if active[net] == 0u32 {
        terminate!();
    }
    let t = CUBE_POS_X as usize;
    let unit = UNIT_POS as usize;
    let n_params = comptime![cfg.parameters as usize];
    let base = net * n_params;
    let second = CUBE_COUNT_Y as usize * n_params;
    let mut stage = SharedMemory::<f32>::new(comptime![cfg.adam_stage()]);
    let slice = comptime![cfg.batch as usize];
    let parts = comptime![cfg.parts as usize];
    let full_batch = comptime![cfg.full_batch as usize];
    let batch_start = step as usize * full_batch;
    let batch_left = n_rows as usize - batch_start;
    let batch_rows = select(batch_left < full_batch, batch_left, full_batch);
    #[unroll]
    for l in 0..comptime![cfg.fins.len()] {
        let at = base + comptime![cfg.param_offsets[l] as usize];
        let fin = comptime![cfg.fins[l] as usize];
        let fout = comptime![cfg.fouts[l] as usize];
        let in_offset = comptime![cfg.in_offsets[l] as usize];
        let delta_offset = comptime![cfg.delta_offsets[l] as usize];
        let first = comptime![cfg.adam_first_tile(l)];
        let tile = comptime![cfg.adam_tile as usize];
        let rows = comptime![adam_tiling(cfg.fins[l], cfg.fouts[l], tile).0];
        let cols = comptime![adam_tiling(cfg.fins[l], cfg.fouts[l], tile).1];
        let count = comptime![adam_tiling(cfg.fins[l], cfg.fouts[l], tile).2];
        let extra_bias = comptime![adam_extra_bias(cfg.fins[l], rows)];
        let round = comptime![cfg.adam_round(l)];
        // The same for every unit of the cube: the barriers below are reached by all or none.
        if t >= first && t < first + count {
            let col_tiles = comptime![fout.div_ceil(cols)];
            let i0 = (t - first) / col_tiles * rows;
            let j0 = (t - first) % col_tiles * cols;
            // The gradient over the batch's rows, a round of rows at a time: row `r` of the
            // batch is row `r % slice` of part `r / slice`, held by that part's cube. Unit
            // `(set, jj)` sums column `jj` of the tile's rows `span·set .. span·set + span`
            // over every row of the batch in its order, as a cube holding the whole batch sums
            // (each output gradient it reads serves `span` parameters, and the inputs of a row
            // are broadcast reads): a network's gradients do not depend on how its batch is
            // split, nor on the tile, so it trains the same alone or in a grid of any size.
            // (Row groups summed apart and added up after, 4 or 8 a tile, tied the sums to the
            // tile; blocks of 4 × 4 parameters a unit took 25 % longer for a grid of 16 on an
            // H100: more registers, fewer cubes at once.)
            let span = comptime![tile / ADAM_UNITS as usize];
            let jj = unit % cols;
            let first_row = unit / cols * span;
            let mut partial = Array::<f32>::new(span);
            #[unroll]
            for e in 0..span {
                partial[e] = 0.0f32;
            }
            // The bias's sum where it is an extra row (its input is 1).
            let mut bias = 0.0f32;
            for r0 in range_stepped(0, batch_rows, round) {
                sync_cube();
                // Each unit loads its values of a round into registers first (the loads wait
                // for memory together), then stores them.
                let x_loads = comptime![(round * rows).div_ceil(ADAM_UNITS as usize)];
                let mut xs = Array::<f32>::new(x_loads);
                gather_tile_rows(
                    &mut xs,
                    acts,
                    net * parts,
                    in_offset,
                    i0,
                    fin,
                    1.0f32,
                    r0,
                    batch_rows,
                    comptime![cfg.activations as usize],
                    slice,
                    rows,
                    round,
                );
                let d_loads = comptime![(round * cols).div_ceil(ADAM_UNITS as usize)];
                let mut ds = Array::<f32>::new(d_loads);
                gather_tile_rows(
                    &mut ds,
                    delta,
                    net * parts,
                    delta_offset,
                    j0,
                    fout,
                    0.0f32,
                    r0,
                    batch_rows,
                    comptime![cfg.deltas as usize],
                    slice,
                    cols,
                    round,
                );
                store_tile_rows(&mut stage, &xs, comptime![0usize], comptime![round * rows]);
                store_tile_rows(
                    &mut stage,
                    &ds,
                    comptime![round * rows],
                    comptime![round * cols],
                );
                sync_cube();
                let here = select(batch_rows - r0 < round, batch_rows - r0, round);
                for b in 0..here {
                    let dv = stage[comptime![round * rows] + b * cols + jj];
                    #[unroll]
                    for e in 0..span {
                        partial[e] += dv * stage[b * rows + first_row + e];
                    }
                    if comptime![extra_bias] {
                        bias += dv;
                    }
                }
            }
            sync_cube();
            // Adam, each unit over its own parameters (a warp's along a row: whole
            // transactions); the new values kept in workgroup memory for the transposed copy.
            let j = j0 + jj;
            #[unroll]
            for e in 0..span {
                let ii = first_row + e;
                let i = i0 + ii;
                if i <= fin && j < fout {
                    stage[ii * (cols + 1) + jj] = adam_update(
                        params,
                        moments,
                        at + i * fout + j,
                        second,
                        partial[e],
                        beta1,
                        beta2,
                        step_size,
                        eps_hat,
                    );
                }
            }
            // The last row of tiles also holds the bias where its rows are full.
            if extra_bias && i0 + rows >= fin && first_row == 0 && j < fout {
                adam_update(
                    params,
                    moments,
                    at + fin * fout + j,
                    second,
                    bias,
                    beta1,
                    beta2,
                    step_size,
                    eps_hat,
                );
            }
            sync_cube();
            // The weights' transposed copy, a unit per weight, in columns of `rows` inputs
            // (the bias row has none).
            #[unroll]
            for k in 0..span {
                let idx = k * comptime![ADAM_UNITS as usize] + unit;
                let tj = idx / rows;
                let ti = idx % rows;
                if i0 + ti < fin && j0 + tj < fout {
                    transposed[at + (j0 + tj) * fin + i0 + ti] = stage[ti * (cols + 1) + tj];
                }
            }
        }
    }
}

/// Each network's summed loss over a pass (cube `net`): the rows' losses `chain_step` left at
/// their positions, added in an order fixed by the row count alone (unit `u` sums rows
/// `u, u + 256, …` in order, then a fixed tree over the units), so the sum does not depend on
/// the plan either, and the host reads one value a network instead of every row's.
#[cube(launch_unchecked)]
fn sum_losses(losses: &Array<f32>, sums: &mut Array<f32>, n_rows: u32) {
    let net = CUBE_POS_X as usize;
    let unit = UNIT_POS as usize;
    let n = n_rows as usize;
    let mut stage = SharedMemory::<f32>::new(comptime![SUM_UNITS as usize]);
    let mut sum = 0.0f32;
    for r in range_stepped(unit, n, comptime![SUM_UNITS as usize]) {
        sum += losses[net * n + r];
    }
    stage[unit] = sum;
    sync_cube();
    tree_sum(&mut stage, 0, unit, SUM_UNITS);
    if unit == 0 {
        sums[net] = stage[0];
    }
}

/// Adds the `width` values at `stage[at ..]` into `stage[at]` by a fixed tree (halves added
/// pairwise, `width` a power of two); `lane` is this unit's place among them. Every unit of
/// the cube calls it (it ends each level with a barrier), after the values are stored and a
/// barrier.
#[cube]
fn tree_sum(stage: &mut SharedMemory<f32>, at: usize, lane: usize, #[comptime] width: u32) {
    #[unroll]
    for level in 0..comptime![width.ilog2()] {
        let stride = comptime![(width >> (level + 1)) as usize];
        if lane < stride {
            let other = stage[at + lane + stride];
            stage[at + lane] += other;
        }
        sync_cube();
    }
}

/// Units of [`sum_losses`]' cube.
const SUM_UNITS: u32 = 256;

/// Copies the parameters of every network whose flag is set (cube `(block, net)`: 256 of
/// network `net`'s `n_params` values) from `from` to `to`: the current weights into the
/// best ones or a snapshot, a snapshot into the best ones. A network's best weights stay on
/// the device, read back once when training ends.
#[cube(launch_unchecked)]
fn keep_networks(
    from: &Array<f32>,
    to: &mut Array<f32>,
    flags: &Array<u32>,
    #[comptime] n_params: usize,
) {
    let net = CUBE_POS_Y as usize;
    if flags[net] == 0u32 {
        terminate!();
    }
    let i = CUBE_POS_X as usize * CUBE_DIM as usize + UNIT_POS as usize;
    if i < n_params {
        to[net * n_params + i] = from[net * n_params + i];
    }
}

/// Sets the first `len` values of `values` to 0 (units striding over them by the launch's
/// size).
#[cube(launch_unchecked)]
fn zero_values(values: &mut Array<f32>, len: u32) {
    let stride = CUBE_COUNT_X as usize * CUBE_DIM as usize;
    let first = CUBE_POS_X as usize * CUBE_DIM as usize + UNIT_POS as usize;
    for i in range_stepped(first, len as usize, stride) {
        values[i] = 0.0f32;
    }
}

/// Units of [`zero_values`]' cubes.
const ZERO_UNITS: u32 = 256;

pub(crate) use forexgpt_device::cube::array_arg;

/// Adam's constants (PyTorch's defaults but for the learning rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConstants {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl AdamConstants {
    /// Adam's bias corrections at step `t` (1-based), folded as burn does, in f32: the step
    /// size `lr·√(1−β₂ᵗ)/(1−β₁ᵗ)` and `ε·√(1−β₂ᵗ)`. Computed once a step on the host (each
    /// of the kernels' units computing them took two `powf` each).
    pub fn scales(&self, t: u32) -> (f32, f32) {
        let t = t.max(1) as f32;
        let correction2 = (1.0f32 - self.beta2.powf(t)).sqrt();
        (
            self.lr * correction2 / (1.0f32 - self.beta1.powf(t)),
            self.eps * correction2,
        )
    }

    pub fn with_lr(lr: f32) -> AdamConstants {
        AdamConstants {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Where a trainer's time went: dispatches queued, the host's time queuing them (and
/// submitting them at flushes), and its time waiting for the device's results. Queuing
/// close to the total means the host bounds the steps; waiting close to it, the device.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrainerTiming {
    pub dispatches: u64,
    pub queuing: std::time::Duration,
    pub waiting: std::time::Duration,
}

/// The read-back of a pass's losses, queued behind its steps ([`ChainTrainer::queue_epoch`],
/// [`ChainTrainer::queue_validation`]) and taken by [`ChainTrainer::losses`]: the host can
/// queue more work before it waits for these values, and on CUDA waits only until they are
/// ready (cubecl's wgpu waits for everything submitted by then). It borrows the
/// [`LossReader`] that queued it.
#[must_use = "the losses are read by `ChainTrainer::losses`"]
pub struct PendingLosses<'r> {
    /// `None` for a pass over no rows (its sums are 0).
    read: Option<ReadFuture<'r>>,
    active: Vec<bool>,
    /// The rows each sum is divided by (a mean per row).
    rows: f64,
}

type ReadFuture<'r> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<Vec<cubecl::bytes::Bytes>, cubecl::server::ServerError>,
            > + Send
            + 'r,
    >,
>;

/// What queues the read-backs of a trainer's losses ([`ChainTrainer::reader`]): a handle
/// on its device apart from the trainer, so that reads pending on it leave the trainer free
/// to queue more steps.
pub struct LossReader<R: Runtime> {
    client: ComputeClient<R>,
}

/// A grid of networks of one [`ChainShape`] training together on one device: the training
/// and validation rows, every network's parameters and Adam moments stay on the device.
pub struct ChainTrainer<R: Runtime> {
    client: ComputeClient<R>,
    shape: ChainShape,
    nets: usize,
    train: Handle,
    n_train: usize,
    validation: Handle,
    n_validation: usize,
    params: Handle,
    transposed: Handle,
    moments: Handle,
    acts: Handle,
    pre: Handle,
    delta: Handle,
    /// Each network's dropout seed (see the module's docs).
    dropout_seeds: Handle,
    /// Each network's parameters as [`ChainTrainer::keep_snapshot`] last kept them.
    best: Handle,
    /// Two slots of every network's parameters as [`ChainTrainer::snapshot`] took them
    /// (allocated at the first), so that an epoch's weights can be kept after the next
    /// epoch is queued.
    snapshots: Option<[Handle; 2]>,
    adam_steps: u32,
    units: u32,
    stage: u32,
    /// Rows of a batch each cube takes, and the cubes a batch is split among.
    slice: usize,
    parts: usize,
    /// Cubes per network the activations are laid out for (a validation dispatch runs
    /// `slots / parts` batches at once).
    slots: usize,
    /// The products' unrolling ([`CubePlan::unroll`]).
    unroll: usize,
    /// [`chain_adam`]'s tile when not its default (tests).
    adam_tile: Option<usize>,
    /// [`chain_adam`]'s staged values a round when not [`ADAM_STAGE_VALUES`].
    adam_stage_values: Option<usize>,
    acts_len: usize,
    delta_len: usize,
    timing: TrainerTiming,
}

/// How a step is laid out on the device: each network's batch is split into slices of
/// `rows_per_cube` rows, one cube of `units` units each (capped at what the device allows);
/// the products' inner loops run in blocks of up to `unroll` inputs (a power of two; see
/// [`MAX_UNROLL`] and [`SOFTWARE_UNROLL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CubePlan {
    pub rows_per_cube: usize,
    pub units: u32,
    pub unroll: usize,
}

/// Cubes the default plan spreads a step over, all networks together: about one per
/// streaming multiprocessor of an H100 (132), where the sweep of `bench/device/fused_plans.sh`
/// found the fastest plans for one network (32 cubes of 2 rows) and for a grid of 16 (8 cubes
/// of 8 rows each), through CUDA and Vulkan alike.
pub const TARGET_CUBES: usize = 128;

/// Most cubes the default plan splits one network's batch among.
pub const MAX_PARTS: usize = 32;

/// Units of each cube of the default plan: with a few rows per cube, 256 units were faster
/// than 1,024 on the H100 (fewer idle units per phase), through CUDA and Vulkan.
pub const SPLIT_UNITS: u32 = 256;

impl CubePlan {
    /// The default plan for `networks` networks training together in batches of `batch`
    /// rows: each batch split into slices of a power of two of rows (at least 2) so that a
    /// step runs about [`TARGET_CUBES`] cubes of [`SPLIT_UNITS`] units, at most
    /// [`MAX_PARTS`] per network. One network in batches of 64: 32 cubes of 2 rows; a grid of
    /// 16: 8 cubes of 8 rows each.
    pub fn for_grid(batch: usize, networks: usize) -> CubePlan {
        let batch = batch.max(1);
        let rows = (batch * networks.max(1))
            .div_ceil(TARGET_CUBES)
            .next_power_of_two()
            .max(2)
            .max(batch.div_ceil(MAX_PARTS))
            .min(batch);
        CubePlan {
            rows_per_cube: rows,
            units: SPLIT_UNITS,
            unroll: MAX_UNROLL,
        }
    }

    /// The whole batch in one cube of [`MAX_CUBE_UNITS`] units (Adam applied in the same
    /// dispatch): the layout before batches were split, 3–5× slower on the H100.
    pub fn whole_batch(batch: usize) -> CubePlan {
        CubePlan {
            rows_per_cube: batch.max(1),
            units: MAX_CUBE_UNITS,
            unroll: MAX_UNROLL,
        }
    }
}

/// Most activation values (per buffer) a validation dispatch lays out for its batches run
/// together (64 MiB of f32); at least one step's batch always runs.
const MAX_VALIDATION_VALUES: usize = 16 << 20;

/// Units of the cubes that apply Adam after a split step.
const ADAM_UNITS: u32 = 256;

fn server_error(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

impl<R: Runtime> ChainTrainer<R> {
    /// Uploads the rows (`n × width`, row-major) and each network's initial parameters (in
    /// [`ChainShape`]'s layout) to `device`, with the default [`CubePlan`].
    pub fn new(
        device: &R::Device,
        shape: ChainShape,
        train: &[f32],
        validation: &[f32],
        initial: &[Vec<f32>],
    ) -> Result<ChainTrainer<R>, String> {
        let plan = CubePlan::for_grid(shape.batch, initial.len());
        Self::with_plan(device, shape, train, validation, initial, plan)
    }

    /// As [`ChainTrainer::new`], with the steps laid out by `plan`.
    pub fn with_plan(
        device: &R::Device,
        shape: ChainShape,
        train: &[f32],
        validation: &[f32],
        initial: &[Vec<f32>],
        plan: CubePlan,
    ) -> Result<ChainTrainer<R>, String> {
        shape.check()?;
        let d = shape.widths[0];
        let nets = initial.len();
        if nets == 0 {
            return Err("no network to train".into());
        }
        if let Some(bad) = initial.iter().position(|p| p.len() != shape.parameters()) {
            return Err(format!(
                "network {bad} has {} parameters, its shape needs {}",
                initial[bad].len(),
                shape.parameters()
            ));
        }
        if !train.len().is_multiple_of(d) || !validation.len().is_multiple_of(d) || train.is_empty()
        {
            return Err(format!("the rows are not whole rows of {d} values"));
        }
        let client = R::client(device);
        let hardware = &client.properties().hardware;
        let Some(units) = cube_units(hardware.max_units_per_cube.min(plan.units)) else {
            return Err(format!(
                "the device runs at most {} threads per workgroup (the plan {}); the fused \
                 kernels need {MIN_CUBE_UNITS}",
                hardware.max_units_per_cube, plan.units
            ));
        };
        let slice = plan.rows_per_cube.clamp(1, shape.batch);
        let parts = shape.batch.div_ceil(slice);
        let (max_x, max_y) = (
            hardware.max_cube_count.0 as usize,
            hardware.max_cube_count.1 as usize,
        );
        if nets > max_x.min(max_y) || parts > max_y {
            return Err(format!(
                "{nets} networks of {parts} workgroups each at once; the device runs at most \
                 {max_x} × {max_y} workgroups per launch"
            ));
        }
        let stage = stage_values(hardware.max_shared_memory_size);
        let sliced = shape.sliced(slice);
        sliced.check_stage(units, stage)?;
        let n_validation = validation.len() / d;
        let validation_steps = n_validation.div_ceil(shape.batch).max(1);
        let per_step = nets * parts * sliced.activations();
        let together = (MAX_VALIDATION_VALUES / per_step.max(1))
            .clamp(1, validation_steps)
            .min(max_y / parts);
        let slots = parts * together;
        let flat: Vec<f32> = initial.iter().flatten().copied().collect();
        let transposed: Vec<f32> = initial.iter().flat_map(|p| shape.transposed(p)).collect();
        let uploading = std::time::Instant::now();
        // The register tiles run past a batch's last row (and a weight-gradient tile past a
        // row's last input) by less than one group of units: this much slack at the end of
        // the batch-sized buffers keeps the last network's reads inside them.
        let slack = units as usize * shape.widths.iter().copied().max().unwrap_or(0);
        let acts_len = nets * slots * sliced.activations() + slack;
        let delta_len = nets * parts * sliced.delta_offsets().2 + slack;
        let mut trainer = ChainTrainer {
            train: client.create_from_slice(f32::as_bytes(train)),
            validation: client.create_from_slice(f32::as_bytes(validation)),
            params: client.create_from_slice(f32::as_bytes(&flat)),
            transposed: client.create_from_slice(f32::as_bytes(&transposed)),
            // Zeros and a copy of the parameters, set on the device below, not uploaded.
            moments: client.empty(4 * 2 * flat.len()),
            // Scratch, written before it is read: allocated, not uploaded (a grid's validation
            // buffers take up to 2 × 64 MiB, which took ~0.5 s to upload as zeros on an H100).
            acts: client.empty(4 * acts_len),
            pre: client.empty(4 * acts_len),
            delta: client.empty(4 * delta_len),
            dropout_seeds: client.create_from_slice(u32::as_bytes(&vec![0u32; nets])),
            best: client.empty(4 * flat.len()),
            snapshots: None,
            n_train: train.len() / d,
            n_validation,
            client,
            shape,
            nets,
            adam_steps: 0,
            units,
            stage,
            slice,
            parts,
            slots,
            unroll: floor_power_of_two(plan.unroll.clamp(1, 64) as u32) as usize,
            adam_tile: None,
            adam_stage_values: None,
            acts_len,
            delta_len,
            timing: TrainerTiming::default(),
        };
        trainer.zero_moments();
        let (params, best) = (trainer.params.clone(), trainer.best.clone());
        trainer.copy_networks(&params, &best, &vec![true; nets])?;
        tracing::debug!(
            networks = nets,
            uploaded_bytes = 4 * (train.len() + validation.len() + 2 * flat.len()),
            uploading_ms = uploading.elapsed().as_secs_f64() * 1e3,
            "fused trainer: rows and initial weights uploaded"
        );
        Ok(trainer)
    }

    pub fn networks(&self) -> usize {
        self.nets
    }

    /// Each network's dropout seed (all 0 until set): what makes networks of one grid drop
    /// different units, and a network drop the same units alone as in a grid.
    pub fn set_dropout_seeds(&mut self, seeds: &[u32]) -> Result<(), String> {
        if seeds.len() != self.nets {
            return Err(format!(
                "{} dropout seeds for {} networks",
                seeds.len(),
                self.nets
            ));
        }
        self.dropout_seeds = self.client.create_from_slice(u32::as_bytes(seeds));
        Ok(())
    }

    /// Where this trainer's time went so far.
    pub fn timing(&self) -> TrainerTiming {
        self.timing
    }

    /// The units (threads) each cube runs with on this device.
    pub fn units(&self) -> u32 {
        self.units
    }

    /// The cubes (workgroups) each network's batch is split among.
    pub fn cubes_per_network(&self) -> usize {
        self.parts
    }

    fn steps(&self, rows: usize) -> usize {
        rows.div_ceil(self.shape.batch)
    }

    /// Queues the steps of one pass over `rows` rows (training with `orders` and, for a VAE,
    /// its `noise`; else the validation loss) and the read-back of each network's summed
    /// loss (per value for the autoencoder, per row for the VAE); `None` when `cancelled`
    /// says so between dispatches.
    #[allow(clippy::too_many_arguments)]
    fn queue_pass<'r>(
        &mut self,
        reader: &'r LossReader<R>,
        orders: Option<(&[u32], Option<&[f32]>)>,
        active: &[bool],
        adam: AdamConstants,
        kl_weight: f32,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<PendingLosses<'r>>, String> {
        let train = orders.is_some();
        let (orders, noise) = orders.map_or((None, None), |(o, n)| (Some(o), n));
        let (x, rows) = if train {
            (&self.train, self.n_train)
        } else {
            (&self.validation, self.n_validation)
        };
        if rows == 0 {
            return Ok(Some(PendingLosses {
                read: None,
                active: active.to_vec(),
                rows: 1.0,
            }));
        }
        let steps = self.steps(rows);
        let order = match orders {
            Some(o) => {
                if o.len() != self.nets * rows || o.iter().any(|&r| r as usize >= rows) {
                    return Err(format!(
                        "the row orders must be {} rows below {rows} per network",
                        rows
                    ));
                }
                self.client.create_from_slice(u32::as_bytes(o))
            }
            None => self.client.create_from_slice(u32::as_bytes(&[0u32])),
        };
        let order_len = orders.map_or(1, <[u32]>::len);
        let latent = self.shape.latent().unwrap_or(0);
        let (noise, noise_len) = match noise {
            Some(values) if train && latent > 0 => {
                if values.len() != self.nets * rows * latent
                    || !values.iter().all(|v| v.is_finite())
                {
                    return Err(format!(
                        "the VAE's noise must be {} finite values per network",
                        rows * latent
                    ));
                }
                (
                    self.client.create_from_slice(f32::as_bytes(values)),
                    values.len(),
                )
            }
            None if train && latent > 0 => return Err("a VAE trains with noise".into()),
            _ => (self.client.create_from_slice(f32::as_bytes(&[0.0f32])), 1),
        };
        let flags: Vec<u32> = active.iter().map(|&a| u32::from(a)).collect();
        if flags.len() != self.nets {
            return Err(format!(
                "{} activity flags for {} networks",
                flags.len(),
                self.nets
            ));
        }
        let active_handle = self.client.create_from_slice(u32::as_bytes(&flags));
        let parts = self.parts;
        // Each row's loss at its position in the pass, summed by `sum_losses`; allocated, not
        // uploaded: every active network's rows are written, the others' sums are not used.
        let losses_len = self.nets * rows;
        let losses = self.client.empty(4 * losses_len);
        let mut config = self
            .shape
            .config(train, self.units, self.stage, self.slice, self.unroll);
        config.adam_tile = match self.adam_tile {
            Some(tile) => tile as u32,
            None if self.nets * config.adam_tiles() >= ADAM_WIDE_CUBES => ADAM_WIDE_TILE as u32,
            None => ADAM_TILE as u32,
        };
        if let Some(values) = self.adam_stage_values {
            config.adam_stage_values = values as u32;
        }
        let x_len = rows * self.shape.widths[0];
        let p_len = self.nets * self.shape.parameters();
        // A training dispatch runs one step; a validation one as many batches as the
        // activations are laid out for.
        let per_dispatch = if train { 1 } else { self.slots / parts };
        let adam_cubes = config.adam_tiles() as u32;
        let queuing = std::time::Instant::now();
        let mut dispatches = 0u64;
        for (k, first) in (0..steps).step_by(per_dispatch).enumerate() {
            if k.is_multiple_of(STEPS_PER_FLUSH) {
                if cancelled() {
                    return Ok(None);
                }
                self.client
                    .flush()
                    .map_err(|e| server_error("running the fused training kernel", e))?;
            }
            if train {
                self.adam_steps += 1;
            }
            let (step_size, eps_hat) = adam.scales(self.adam_steps);
            let cubes = (per_dispatch.min(steps - first) * parts) as u32;
            // SAFETY: the kernels' indices stay inside the buffers bound here (see
            // `chain_step` and `chain_adam`): every buffer is sized from the same shape, plan
            // and network count the configuration is compiled for, a dispatch runs at most
            // the cubes the activations are laid out for, and the orders were checked above.
            #[allow(unsafe_code)]
            unsafe {
                chain_step::launch_unchecked::<R>(
                    &self.client,
                    CubeCount::Static(self.nets as u32, cubes, 1),
                    CubeDim::new_1d(self.units),
                    array_arg::<R>(x, x_len),
                    array_arg::<R>(&order, order_len),
                    array_arg::<R>(&noise, noise_len),
                    array_arg::<R>(&self.params, p_len),
                    array_arg::<R>(&self.transposed, p_len),
                    array_arg::<R>(&self.moments, 2 * p_len),
                    array_arg::<R>(&self.acts, self.acts_len),
                    array_arg::<R>(&self.pre, self.acts_len),
                    array_arg::<R>(&self.delta, self.delta_len),
                    array_arg::<R>(&losses, losses_len),
                    array_arg::<R>(&active_handle, self.nets),
                    array_arg::<R>(&self.dropout_seeds, self.nets),
                    rows as u32,
                    first as u32,
                    steps as u32,
                    self.adam_steps,
                    step_size,
                    adam.beta1,
                    adam.beta2,
                    eps_hat,
                    kl_weight,
                    keep_scale(self.shape.dropout),
                    config.clone(),
                );
                dispatches += 1;
                if train && parts > 1 {
                    chain_adam::launch_unchecked::<R>(
                        &self.client,
                        CubeCount::Static(adam_cubes, self.nets as u32, 1),
                        CubeDim::new_1d(ADAM_UNITS),
                        array_arg::<R>(&self.params, p_len),
                        array_arg::<R>(&self.transposed, p_len),
                        array_arg::<R>(&self.moments, 2 * p_len),
                        array_arg::<R>(&self.acts, self.acts_len),
                        array_arg::<R>(&self.delta, self.delta_len),
                        array_arg::<R>(&active_handle, self.nets),
                        rows as u32,
                        first as u32,
                        step_size,
                        adam.beta1,
                        adam.beta2,
                        eps_hat,
                        config.clone(),
                    );
                    dispatches += 1;
                }
            }
        }
        let sums = self.client.empty(4 * self.nets);
        // SAFETY: `losses` holds `nets × rows` values and `sums` `nets`; cube `net < nets`
        // reads `net · rows + r` for `r < rows` and writes `net`.
        #[allow(unsafe_code)]
        unsafe {
            sum_losses::launch_unchecked::<R>(
                &self.client,
                CubeCount::Static(self.nets as u32, 1, 1),
                CubeDim::new_1d(SUM_UNITS),
                array_arg::<R>(&losses, losses_len),
                array_arg::<R>(&sums, self.nets),
                rows as u32,
            );
        }
        self.client
            .flush()
            .map_err(|e| server_error("running the fused training kernel", e))?;
        // Queued now, behind this pass's steps. On CUDA it waits on a fence recorded here, so
        // waiting for it later does not wait for what is queued after; cubecl's wgpu waits
        // for the device's latest submission.
        let read = Some(Box::pin(reader.client.read_async(vec![sums])) as ReadFuture<'r>);
        self.timing.dispatches += dispatches;
        self.timing.queuing += queuing.elapsed();
        Ok(Some(PendingLosses {
            read,
            active: active.to_vec(),
            rows: rows.max(1) as f64,
        }))
    }

    /// Waits for a queued pass's losses: each network's mean loss per row (0 for the
    /// networks that sat the pass out).
    pub fn losses(&mut self, pending: PendingLosses<'_>) -> Result<Vec<f64>, String> {
        let Some(read) = pending.read else {
            return Ok(vec![0.0; pending.active.len()]);
        };
        let waiting = std::time::Instant::now();
        let bytes =
            cubecl::future::block_on(read).map_err(|e| server_error("reading the losses", e))?;
        self.timing.waiting += waiting.elapsed();
        let bytes = bytes.first().ok_or("the device returned no losses")?;
        Ok(f32::from_bytes(bytes)
            .iter()
            .zip(&pending.active)
            .map(|(&sum, &on)| {
                if on {
                    f64::from(sum) / pending.rows
                } else {
                    0.0
                }
            })
            .collect())
    }

    /// One epoch: every active network's steps over the training rows in its order
    /// (`orders` holds `networks × rows` row indices; a VAE's `noise` holds
    /// `networks × rows × latent` standard normal draws, by position in the epoch, and
    /// `kl_weight` is the epoch's). Returns each network's mean training loss (the batches'
    /// losses weighted by their rows, as burn's path reports it), or `None` when cancelled
    /// between dispatches (the networks are then mid-epoch).
    pub fn epoch(
        &mut self,
        orders: &[u32],
        noise: Option<&[f32]>,
        active: &[bool],
        adam: AdamConstants,
        kl_weight: f32,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<Vec<f64>>, String> {
        let reader = self.reader();
        match self.queue_epoch(&reader, orders, noise, active, adam, kl_weight, cancelled)? {
            Some(pending) => self.losses(pending).map(Some),
            None => Ok(None),
        }
    }

    /// [`ChainTrainer::epoch`] without waiting: its steps and the read-back of its losses
    /// (by `reader`) are queued, and [`ChainTrainer::losses`] takes them; more can be queued
    /// first.
    #[allow(clippy::too_many_arguments)]
    pub fn queue_epoch<'r>(
        &mut self,
        reader: &'r LossReader<R>,
        orders: &[u32],
        noise: Option<&[f32]>,
        active: &[bool],
        adam: AdamConstants,
        kl_weight: f32,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<PendingLosses<'r>>, String> {
        self.queue_pass(
            reader,
            Some((orders, noise)),
            active,
            adam,
            kl_weight,
            cancelled,
        )
    }

    /// Each network's mean loss over the validation rows (a VAE's at `kl_weight`, with its
    /// posterior mean as the sample); inactive networks read 0.
    pub fn validation_loss(&mut self, active: &[bool], kl_weight: f32) -> Result<Vec<f64>, String> {
        let reader = self.reader();
        let pending = self.queue_validation(&reader, active, kl_weight)?;
        self.losses(pending)
    }

    /// [`ChainTrainer::validation_loss`] without waiting (see [`ChainTrainer::queue_epoch`]).
    pub fn queue_validation<'r>(
        &mut self,
        reader: &'r LossReader<R>,
        active: &[bool],
        kl_weight: f32,
    ) -> Result<PendingLosses<'r>, String> {
        self.queue_pass(
            reader,
            None,
            active,
            AdamConstants::with_lr(0.0),
            kl_weight,
            &|| false,
        )?
        .ok_or_else(|| "a validation pass is never cancelled".into())
    }

    /// A reader for [`ChainTrainer::queue_epoch`] and [`ChainTrainer::queue_validation`].
    pub fn reader(&self) -> LossReader<R> {
        LossReader {
            client: self.client.clone(),
        }
    }

    /// Fills the scratch buffers (activations, pre-activations, the backward pass's
    /// gradients) with `value`; the Adam moments and the best weights too, which are then set
    /// again on the device as a new trainer sets them (zeros, a copy of the parameters). With
    /// NaN, tests show that no step reads a scratch value it did not write first, and that
    /// the moments and best weights are set whole: new buffers are not cleared on CUDA, and
    /// memory reused from the runtime's pool holds whatever was there (a new wgpu buffer
    /// reads zeros, so lavapipe alone would not tell).
    #[doc(hidden)]
    pub fn fill_scratch(&mut self, value: f32) -> Result<(), String> {
        let filled = |len: usize| {
            self.client
                .create_from_slice(f32::as_bytes(&vec![value; len]))
        };
        let p_len = self.nets * self.shape.parameters();
        self.acts = filled(self.acts_len);
        self.pre = filled(self.acts_len);
        self.delta = filled(self.delta_len);
        self.moments = filled(2 * p_len);
        self.best = filled(p_len);
        self.zero_moments();
        let (params, best) = (self.params.clone(), self.best.clone());
        self.copy_networks(&params, &best, &vec![true; self.nets])
    }

    /// Queues the zeroing of every network's Adam moments (a new trainer's: uploading 2 ×
    /// the parameters' zeros, with the best weights' copy, took ~20 of a grid of 16's 45 ms
    /// of set-up on an H100).
    fn zero_moments(&mut self) {
        let len = 2 * self.nets * self.shape.parameters();
        let cubes = len.div_ceil(ZERO_UNITS as usize).clamp(1, 1024) as u32;
        // SAFETY: `moments` holds `len` values and the kernel writes indices below `len` only.
        #[allow(unsafe_code)]
        unsafe {
            zero_values::launch_unchecked::<R>(
                &self.client,
                CubeCount::Static(cubes, 1, 1),
                CubeDim::new_1d(ZERO_UNITS),
                array_arg::<R>(&self.moments, len),
                len as u32,
            );
        }
    }

    /// Copies the current parameters of the networks marked in `which` into snapshot `slot`
    /// (0 or 1), queued behind the steps so far: with the epochs queued one ahead of the
    /// host's reading their losses, epoch `e`'s weights wait in slot `e % 2` until the host
    /// knows whether to keep them ([`ChainTrainer::keep_snapshot`], queued before epoch
    /// `e + 2` takes the slot again).
    pub fn snapshot(&mut self, slot: usize, which: &[bool]) -> Result<(), String> {
        let slots = match &self.snapshots {
            Some(slots) => slots.clone(),
            None => {
                let bytes = 4 * self.nets * self.shape.parameters();
                let slots = [self.client.empty(bytes), self.client.empty(bytes)];
                self.snapshots = Some(slots.clone());
                slots
            }
        };
        let params = self.params.clone();
        self.copy_networks(&params, &slots[slot % 2], which)
    }

    /// Keeps the networks marked in `which` as snapshot `slot` holds them, for
    /// [`ChainTrainer::best_parameters`]; each must have been taken into that slot by
    /// [`ChainTrainer::snapshot`].
    pub fn keep_snapshot(&mut self, slot: usize, which: &[bool]) -> Result<(), String> {
        if !which.iter().any(|&k| k) {
            return Ok(());
        }
        let Some(slots) = self.snapshots.clone() else {
            return Err("no snapshot was taken".into());
        };
        let best = self.best.clone();
        self.copy_networks(&slots[slot % 2], &best, which)
    }

    /// Queues the copy of the networks marked in `which` from `from` to `to` (buffers of
    /// every network's parameters).
    fn copy_networks(&mut self, from: &Handle, to: &Handle, which: &[bool]) -> Result<(), String> {
        if which.len() != self.nets {
            return Err(format!("{} flags for {} networks", which.len(), self.nets));
        }
        if !which.iter().any(|&k| k) {
            return Ok(());
        }
        let flags: Vec<u32> = which.iter().map(|&k| u32::from(k)).collect();
        let flags = self.client.create_from_slice(u32::as_bytes(&flags));
        let n_params = self.shape.parameters();
        let p_len = self.nets * n_params;
        // SAFETY: `from` and `to` hold `nets × n_params` values (the parameters, the best
        // ones and the snapshots are all allocated so) and the kernel touches
        // `net · n_params + i` for `net < nets` (the cube count's y) and `i < n_params` only;
        // `flags` holds `nets` values.
        #[allow(unsafe_code)]
        unsafe {
            keep_networks::launch_unchecked::<R>(
                &self.client,
                CubeCount::Static(n_params.div_ceil(256) as u32, self.nets as u32, 1),
                CubeDim::new_1d(256),
                array_arg::<R>(from, p_len),
                array_arg::<R>(to, p_len),
                array_arg::<R>(&flags, self.nets),
                n_params,
            );
        }
        Ok(())
    }

    /// Every network's parameters as [`ChainTrainer::keep_snapshot`] last kept them (its
    /// initial ones if never), read back from the device: a grid whose networks improve
    /// every epoch read 3.3 MB back an epoch before they stayed on the device (16 reference
    /// networks), each read waiting for the device to drain.
    pub fn best_parameters(&self) -> Result<Vec<Vec<f32>>, String> {
        self.read_networks(&self.best, "reading the best weights")
    }

    /// Makes [`chain_adam`] take tiles of 1,024 parameters (`wide`) or 256, whatever the
    /// grid's size (by default 1,024 only from [`ADAM_WIDE_CUBES`] tiles of 256 on), so that
    /// tests cover both on small grids.
    #[doc(hidden)]
    pub fn set_wide_adam_tiles(&mut self, wide: bool) {
        self.adam_tile = Some(if wide { ADAM_WIDE_TILE } else { ADAM_TILE });
    }

    /// Makes [`chain_adam`] stage at most `values` values a round (rows of its tile's inputs
    /// and output gradients; by default and at most [`ADAM_STAGE_VALUES`], at least 64):
    /// fewer values a round hold fewer registers ([`CUDA_ADAM_STAGE`]). The sums do not
    /// depend on it.
    pub fn set_adam_stage_values(&mut self, values: usize) {
        self.adam_stage_values = Some(values.clamp(64, ADAM_STAGE_VALUES));
    }

    /// Every network's parameters, read back from the device.
    pub fn parameters(&self) -> Result<Vec<Vec<f32>>, String> {
        self.read_networks(&self.params, "reading the weights")
    }

    /// A buffer of every network's parameters, read back and split by network.
    fn read_networks(&self, handle: &Handle, what: &str) -> Result<Vec<Vec<f32>>, String> {
        let bytes = self
            .client
            .read_one(handle.clone())
            .map_err(|e| server_error(what, e))?;
        Ok(f32::from_bytes(&bytes)
            .chunks(self.shape.parameters())
            .map(<[f32]>::to_vec)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_plan_spreads_a_step_over_about_128_cubes() {
        let plan = |batch, nets| {
            let p = CubePlan::for_grid(batch, nets);
            assert_eq!(p.units, 256);
            p.rows_per_cube
        };
        // The sweep's winners on the H100: one network, and a grid of 16.
        assert_eq!(plan(64, 1), 2);
        assert_eq!(plan(64, 16), 8);
        // At least 2 rows a cube, at most the batch, at most 32 cubes a network.
        assert_eq!(plan(64, 4), 2);
        assert_eq!(plan(3, 1), 2);
        assert_eq!(plan(1, 1), 1);
        assert_eq!(plan(1024, 1), 32);
        assert_eq!(plan(64, 100), 64);
    }

    #[test]
    fn cubes_and_staging_take_the_largest_power_of_two_the_device_allows() {
        assert_eq!(cube_units(1024), Some(1024));
        assert_eq!(cube_units(1536), Some(1024));
        assert_eq!(cube_units(1000), Some(512));
        assert_eq!(cube_units(256), Some(256));
        assert_eq!(cube_units(MIN_CUBE_UNITS - 1), None);
        // 48 KiB (NVIDIA) is capped at 32 KiB; 16 KiB (WebGPU's minimum) gives 4,096 values.
        assert_eq!(stage_values(49_152), MAX_STAGE);
        assert_eq!(stage_values(16_384), 4096);
        assert_eq!(stage_values(12_000), 2048);
        assert_eq!(stage_values(0), 0);
    }
}
