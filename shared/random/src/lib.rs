//! The seeded random generator behind every reproducible draw in the workbench: forest
//! bootstraps and per-node feature draws (the CUDA tree builder computes the same stream in
//! `grow_trees.cu`), neural network initialisation, batch order and VAE noise, and the
//! synthetic data of tests and benchmarks. A crate of its own, without dependencies, so that
//! the numeric crates use it without pulling in the store, CSV or time handling.

/// SplitMix64 (Steele, Lea and Flood, 2014): one 64-bit state, a Weyl step and a mixing
/// function. Small and fast; its streams for different seeds are what the model files'
/// reproducibility rests on, so its output must never change.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The current state: `SplitMix64::new(rng.state())` continues the same stream.
    pub fn state(&self) -> u64 {
        self.0
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_never_changes() {
        // The reference implementation's first outputs for seed 0 (Vigna's splitmix64.c).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let resumed = SplitMix64::new(rng.state()).next_u64();
        assert_eq!(resumed, rng.next_u64());
        let u = SplitMix64::new(7).uniform();
        assert!(u > 0.0 && u < 1.0);
    }
}
