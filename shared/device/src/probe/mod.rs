//! Finding out what the machine has, without letting any backend panic.

mod cpu;
pub mod cuda_driver;
pub mod wgpu_adapters;

pub use cpu::probe_cpu;
pub use cuda_driver::probe_cuda;
pub use wgpu_adapters::probe_wgpu;
