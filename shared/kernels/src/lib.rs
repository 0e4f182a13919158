//! Our own GPU kernels and their host glue, apart from the device manager (the way candle keeps
//! candle-kernels apart from candle-core): the device crate finds and places devices, this one
//! holds the algorithms that run on them.
//!
//! - [`cublas`]: float64 `XᵀX` / `XᵀY` through cuBLAS, rows streamed through pinned buffers
//!   (linear models and PCA on CUDA).
//! - [`cuda_grow`]: random-forest trees grown on the GPU, one thread block per tree, with the
//!   CPU builder's algorithm and random streams (`src/kernels/grow_trees.cu`).
//! - [`cuda_walk`]: a forest's batched prediction walk, rows binned on the device.
//! - `fused_mlp` (CubeCL, CUDA and wgpu): whole Adam steps of small dense networks, one
//!   workgroup per network, a grid of networks per launch (the autoencoder's training).
//! - `fused_forward` (CubeCL, CUDA and wgpu): forward passes of many small networks in one
//!   dispatch, members resident on the device (an ensemble of autoencoder models).
//! - [`gram`] (CubeCL, wgpu): `ZᵀZ` of tall float32 data streamed through mapped staging
//!   buffers of our own (the linear models and PCA on wgpu).
//! - `tree_grow` (CubeCL, any runtime; used on wgpu): a forest's split search a level at a
//!   time over per-feature sorted row lists, close calls left to the host's float64.
//! - `tree_walk` (CubeCL, CUDA and wgpu): a forest's prediction walk, a unit per row, the
//!   trees resident on the device (the forest's walk on wgpu).
//!
//! Every entry point takes a resolved [`forexgpt_device::ComputeDevice`] and answers with a
//! [`forexgpt_device::DeviceError`] the placement layer can fall back on. Builds without the
//! `cuda` feature keep the same API and answer "not built with cuda support".

use forexgpt_device::DeviceError;
use forexgpt_protocol::BackendKind;

pub mod cublas;
#[cfg(feature = "cuda")]
mod cuda_common;
pub mod cuda_grow;
pub mod cuda_walk;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod fused_forward;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod fused_mlp;
pub mod gram;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod tree_grow;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod tree_walk;

/// What every entry point answers in a build without the `cuda` feature.
#[cfg_attr(feature = "cuda", allow(dead_code))]
pub(crate) const NOT_BUILT: DeviceError = DeviceError::NotBuilt(BackendKind::Cuda);
