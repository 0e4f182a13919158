//! Forward passes of many small dense networks in one dispatch: the inference side of the
//! fused kernels, for an ensemble of neural-encoder models (one CubeCL source for CUDA and
//! wgpu: Vulkan, Metal, DX12).
//!
//! Each member is a chain `widths[0] → … → widths[L]` (the activation after every layer but
//! the last) that reads the same raw rows through its own standardisation
//! `(x − shift) · inv_scale`. An autoencoder model with a linear regressor is such a chain
//! once the regressor is folded into the latent layer (both are affine, so their product is
//! one layer): the whole model, scaler to forecast, runs in one pass.
//!
//! Cube `(member, block)` runs rows `block · rows_per_cube …` of one member through every
//! layer, the activations in workgroup memory (two buffers, swapped per layer), each unit
//! computing outputs `(row, column)` in turn; the weights are read from device memory, in
//! columns, so neighbouring units read neighbouring weights. Members' parameters stay on the
//! device ([`ForwardEnsemble`]); a call uploads only its rows and reads back the outputs.
//!
//! Numerics: f32, each output's sum over its inputs in order (deterministic on a device).

use cubecl::prelude::*;
use cubecl::server::Handle;

use crate::fused_mlp::{Act, activate, array_arg, stage_values};

/// Most rows a cube takes: enough to amortise the weight reads over a batch of bars, few
/// enough that a forecast of one bar does not wait on idle rows.
pub const MAX_ROWS_PER_CUBE: usize = 16;

/// Units (threads) per cube, capped at what the device allows.
pub const FORWARD_UNITS: u32 = 256;

/// Most rows one dispatch takes (bounds the rows' and outputs' device buffers).
pub const MAX_ROWS_PER_DISPATCH: usize = 65_536;

/// The members' common shape: boundary widths, the activation between layers (none after
/// the last).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ForwardShape {
    pub widths: Vec<usize>,
    pub activation: Act,
}

impl ForwardShape {
    fn layers(&self) -> usize {
        self.widths.len().saturating_sub(1)
    }

    /// Inputs each member reads.
    pub fn inputs(&self) -> usize {
        self.widths.first().copied().unwrap_or(0)
    }

    /// Outputs each member gives.
    pub fn outputs(&self) -> usize {
        self.widths.last().copied().unwrap_or(0)
    }

    /// Values of one member's parameters: every layer's `inputs × outputs` weight (row-major,
    /// burn's `Linear` layout), then its bias.
    pub fn parameters(&self) -> usize {
        self.widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }

    fn param_offsets(&self) -> Vec<usize> {
        let mut at = 0;
        self.widths
            .windows(2)
            .map(|w| {
                let here = at;
                at += w[0] * w[1] + w[1];
                here
            })
            .collect()
    }

    fn check(&self) -> Result<(), String> {
        if self.layers() == 0 {
            return Err("a chain needs at least one layer".into());
        }
        if self.widths.contains(&0) {
            return Err(format!("a layer of width 0 in {:?}", self.widths));
        }
        Ok(())
    }

    /// The widest boundary: the values a row needs in each activation buffer.
    fn span(&self) -> usize {
        self.widths.iter().copied().max().unwrap_or(0)
    }

    /// The rows a cube takes with `stage` values of workgroup memory (two buffers of a row
    /// per boundary's widest), or why the shape does not fit.
    fn rows_per_cube(&self, stage: usize) -> Result<usize, String> {
        let span = self.span();
        let rows = stage / (2 * span).max(1);
        if rows == 0 {
            return Err(format!(
                "a layer {span} wide does not fit {} KiB of workgroup memory twice",
                stage * 4 / 1024
            ));
        }
        Ok(rows.min(MAX_ROWS_PER_CUBE))
    }

    fn config(&self, rows: usize) -> ForwardConfig {
        let as_u32 = |v: &[usize]| v.iter().map(|&x| x as u32).collect::<Vec<u32>>();
        ForwardConfig {
            widths: as_u32(&self.widths),
            param_offsets: as_u32(&self.param_offsets()),
            parameters: self.parameters() as u32,
            span: self.span() as u32,
            rows: rows as u32,
            act: self.activation,
        }
    }
}

/// What the forward kernel is compiled for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ForwardConfig {
    widths: Vec<u32>,
    param_offsets: Vec<u32>,
    parameters: u32,
    /// The widest boundary: the stride of a row in workgroup memory.
    span: u32,
    /// Rows per cube.
    rows: u32,
    act: Act,
}

/// Every member's outputs for rows `block · rows … ` of `x` (`n_rows × inputs`): `out` holds
/// `n_rows × members × outputs`, row after row, member after member.
///
/// Launched unchecked: cubes are dispatched for `n_rows` rows only (`CUBE_COUNT_Y` blocks),
/// every member's buffers are sized from the shape the configuration is compiled for, and a
/// cube's last block stops at `n_rows`.
#[cube(launch_unchecked)]
fn chain_forward(
    x: &Array<f32>,
    shift: &Array<f32>,
    inv_scale: &Array<f32>,
    params: &Array<f32>,
    out: &mut Array<f32>,
    n_rows: u32,
    #[comptime] cfg: ForwardConfig,
) {
    let member = CUBE_POS_X as usize;
    let members = CUBE_COUNT_X as usize;
    let tid = UNIT_POS as usize;
    let units = CUBE_DIM as usize;
    let per_cube = comptime![cfg.rows as usize];
    let span = comptime![cfg.span as usize];
    let n_layers = comptime![cfg.widths.len() - 1];
    let d = comptime![cfg.widths[0] as usize];
    let r0 = CUBE_POS_Y as usize * per_cube;
    let left = n_rows as usize - r0;
    let rows = select(left < per_cube, left, per_cube);
    let mut a = SharedMemory::<f32>::new(comptime![2 * cfg.rows as usize * cfg.span as usize]);

    // The rows, standardised by this member's scaler.
    for idx in range_stepped(tid, rows * d, units) {
        let r = idx / d;
        let i = idx % d;
        a[r * span + i] = (x[(r0 + r) * d + i] - shift[member * d + i]) * inv_scale[member * d + i];
    }
    sync_cube();

    #[unroll]
    for l in 0..n_layers {
        let fin = comptime![cfg.widths[l] as usize];
        let fout = comptime![cfg.widths[l + 1] as usize];
        let below = comptime![(l % 2) * cfg.rows as usize * cfg.span as usize];
        let above = comptime![((l + 1) % 2) * cfg.rows as usize * cfg.span as usize];
        let w_at =
            member * comptime![cfg.parameters as usize] + comptime![cfg.param_offsets[l] as usize];
        let b_at = w_at + fin * fout;
        for idx in range_stepped(tid, rows * fout, units) {
            let r = idx / fout;
            let j = idx % fout;
            let mut acc = params[b_at + j];
            for i in 0..fin {
                acc += a[below + r * span + i] * params[w_at + i * fout + j];
            }
            if comptime![l + 1 == n_layers] {
                out[((r0 + r) * members + member) * fout + j] = acc;
            } else {
                a[above + r * span + j] = activate(acc, cfg.act);
            }
        }
        sync_cube();
    }
}

/// One member of an ensemble: its standardisation of the raw inputs and its parameters in
/// [`ForwardShape::parameters`]' layout.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardMember {
    /// Subtracted from each input column (`inputs` values).
    pub shift: Vec<f32>,
    /// Multiplies each shifted input column (`inputs` values; 0 for a column the member
    /// does not read).
    pub inv_scale: Vec<f32>,
    pub params: Vec<f32>,
}

/// Members of one shape resident on a device: each call uploads its rows, runs every member
/// over them in one dispatch (per [`MAX_ROWS_PER_DISPATCH`] rows) and reads the outputs back.
pub struct ForwardEnsemble<R: Runtime> {
    client: ComputeClient<R>,
    shape: ForwardShape,
    members: usize,
    shift: Handle,
    inv_scale: Handle,
    params: Handle,
    units: u32,
    rows_per_cube: usize,
    max_blocks: usize,
}

impl<R: Runtime> ForwardEnsemble<R> {
    /// Uploads `members` (all of `shape`) to `device`.
    pub fn new(
        device: &R::Device,
        shape: ForwardShape,
        members: &[ForwardMember],
    ) -> Result<ForwardEnsemble<R>, String> {
        shape.check()?;
        let d = shape.inputs();
        let n_params = shape.parameters();
        if members.is_empty() {
            return Err("no member to run".into());
        }
        for (k, m) in members.iter().enumerate() {
            if m.shift.len() != d || m.inv_scale.len() != d || m.params.len() != n_params {
                return Err(format!(
                    "member {k} has {} shifts, {} scales and {} parameters; the shape needs \
                     {d}, {d} and {n_params}",
                    m.shift.len(),
                    m.inv_scale.len(),
                    m.params.len()
                ));
            }
            let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
            if !(finite(&m.shift) && finite(&m.inv_scale) && finite(&m.params)) {
                return Err(format!("member {k} holds a value that is not finite"));
            }
        }
        let client = R::client(device);
        let hardware = &client.properties().hardware;
        let units = hardware.max_units_per_cube.min(FORWARD_UNITS);
        if units < 32 {
            return Err(format!(
                "the device runs at most {} threads per workgroup; the forward kernel needs 32",
                hardware.max_units_per_cube
            ));
        }
        let (max_x, max_y) = (
            hardware.max_cube_count.0 as usize,
            hardware.max_cube_count.1 as usize,
        );
        if members.len() > max_x {
            return Err(format!(
                "{} members at once; the device runs at most {max_x} workgroups across",
                members.len()
            ));
        }
        let rows_per_cube =
            shape.rows_per_cube(stage_values(hardware.max_shared_memory_size) as usize)?;
        let flat = |f: fn(&ForwardMember) -> &Vec<f32>| -> Vec<f32> {
            members.iter().flat_map(|m| f(m).iter().copied()).collect()
        };
        Ok(ForwardEnsemble {
            shift: client.create_from_slice(f32::as_bytes(&flat(|m| &m.shift))),
            inv_scale: client.create_from_slice(f32::as_bytes(&flat(|m| &m.inv_scale))),
            params: client.create_from_slice(f32::as_bytes(&flat(|m| &m.params))),
            client,
            shape,
            members: members.len(),
            units,
            rows_per_cube,
            max_blocks: max_y,
        })
    }

    pub fn members(&self) -> usize {
        self.members
    }

    pub fn shape(&self) -> &ForwardShape {
        &self.shape
    }

    /// Every member's outputs for `rows` (`n × inputs`, row-major): `n × members × outputs`,
    /// row after row, member after member.
    pub fn run(&self, rows: &[f32]) -> Result<Vec<f32>, String> {
        let d = self.shape.inputs();
        let h = self.shape.outputs();
        if !rows.len().is_multiple_of(d) {
            return Err(format!("the rows are not whole rows of {d} values"));
        }
        let n = rows.len() / d;
        let mut result = Vec::with_capacity(n * self.members * h);
        let chunk = MAX_ROWS_PER_DISPATCH.min(self.max_blocks * self.rows_per_cube);
        let config = self.shape.config(self.rows_per_cube);
        let p_len = self.members * self.shape.parameters();
        for start in (0..n).step_by(chunk.max(1)) {
            let count = chunk.min(n - start);
            let x = self
                .client
                .create_from_slice(f32::as_bytes(&rows[start * d..(start + count) * d]));
            let out_len = count * self.members * h;
            let out = self.client.empty(out_len * 4);
            let blocks = count.div_ceil(self.rows_per_cube) as u32;
            // SAFETY: `chain_forward` indexes `x` below `count · d`, `shift` and `inv_scale`
            // below `members · d`, `params` below `members · parameters` and `out` below
            // `count · members · outputs`: the lengths bound here. Blocks cover `count` rows
            // and each cube stops at the last of them.
            #[allow(unsafe_code)]
            unsafe {
                chain_forward::launch_unchecked::<R>(
                    &self.client,
                    CubeCount::Static(self.members as u32, blocks, 1),
                    CubeDim::new_1d(self.units),
                    array_arg::<R>(&x, count * d),
                    array_arg::<R>(&self.shift, self.members * d),
                    array_arg::<R>(&self.inv_scale, self.members * d),
                    array_arg::<R>(&self.params, p_len),
                    array_arg::<R>(&out, out_len),
                    count as u32,
                    config.clone(),
                );
            }
            let bytes = self
                .client
                .read_one(out)
                .map_err(|e| format!("reading the ensemble's outputs: {e}"))?;
            result.extend_from_slice(f32::from_bytes(&bytes));
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_per_cube_fill_workgroup_memory_up_to_the_cap() {
        let shape = ForwardShape {
            widths: vec![128, 128, 64, 3],
            activation: Act::Relu,
        };
        assert_eq!(
            shape.parameters(),
            128 * 128 + 128 + 128 * 64 + 64 + 64 * 3 + 3
        );
        // 16 KiB (WebGPU's guarantee): 4,096 values, two buffers of 128 per row.
        assert_eq!(shape.rows_per_cube(4096), Ok(16));
        let wide = ForwardShape {
            widths: vec![2048, 8],
            activation: Act::Relu,
        };
        assert_eq!(wide.rows_per_cube(4096), Ok(1));
        let too_wide = ForwardShape {
            widths: vec![4096, 8],
            activation: Act::Relu,
        };
        assert!(
            too_wide
                .rows_per_cube(4096)
                .unwrap_err()
                .contains("4096 wide")
        );
    }
}
