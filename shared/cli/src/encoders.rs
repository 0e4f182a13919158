//! `train`'s encoder arguments: which encoders, PCA's settings, and the autoencoder's and
//! VAE's network and training settings.

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use forexgpt_protocol::{Activation, EncoderSpec, NeuralEncoderSpec};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderKind {
    None,
    Pca,
    /// Autoencoder (our fused kernels on a GPU, burn on the CPU).
    Ae,
    /// Variational autoencoder (our fused kernels on a GPU, burn on the CPU).
    Vae,
}

#[derive(Args, Debug)]
pub struct EncoderArgs {
    /// Encoders to try, comma separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "none")]
    encoder: Vec<EncoderKind>,
    /// PCA components.
    #[arg(long, default_value_t = 16)]
    components: usize,
    /// Whiten the PCA components (unit variance).
    #[arg(long)]
    whiten: bool,
    /// Autoencoder / VAE: latent size.
    #[arg(long, default_value_t = 16)]
    latent: usize,
    /// Autoencoder / VAE: hidden layer widths of the encoder, comma separated (the decoder
    /// mirrors them).
    #[arg(long, value_delimiter = ',', default_value = "128,64")]
    hidden: Vec<usize>,
    #[arg(long, value_enum, default_value = "relu")]
    activation: Activation,
    /// Dropout after each hidden layer while training.
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    /// Training epochs (at most; see --patience).
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Stop after this many epochs without a better validation loss (0: never stop early).
    #[arg(long, default_value_t = 10)]
    patience: usize,
    /// Seeds the initial weights, batch order and dropout; several, comma separated, train one
    /// network each (an ensemble; on a GPU they train together in the same launches).
    #[arg(long, value_delimiter = ',', default_value = "42")]
    seed: Vec<u64>,
    /// VAE: weight of the KL term.
    #[arg(long, default_value_t = 1.0)]
    kl_weight: f64,
    /// VAE: epochs over which the KL weight rises from 0.
    #[arg(long, default_value_t = 10)]
    kl_warmup: usize,
}

impl EncoderArgs {
    fn network(&self, seed: u64) -> NeuralEncoderSpec {
        NeuralEncoderSpec {
            hidden: self.hidden.clone(),
            latent: self.latent,
            activation: self.activation,
            dropout: self.dropout,
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.lr,
            patience: (self.patience > 0).then_some(self.patience),
            seed,
        }
    }

    /// The encoder specs to train, checked.
    pub fn specs(&self) -> Result<Vec<EncoderSpec>> {
        let neural = self
            .encoder
            .iter()
            .any(|e| matches!(e, EncoderKind::Ae | EncoderKind::Vae));
        let mut seen = std::collections::HashSet::new();
        let seeds: Vec<u64> = self
            .seed
            .iter()
            .copied()
            .filter(|s| seen.insert(*s))
            .collect();
        if seeds.is_empty() {
            bail!("--seed needs at least one seed");
        }
        if neural && let Err(e) = self.network(seeds[0]).check() {
            bail!("autoencoder settings: {e}");
        }
        let mut specs = Vec::new();
        for e in &self.encoder {
            match e {
                EncoderKind::None => specs.push(EncoderSpec::None),
                EncoderKind::Pca => specs.push(EncoderSpec::Pca {
                    n_components: self.components,
                    whiten: self.whiten,
                }),
                EncoderKind::Ae => {
                    specs.extend(seeds.iter().map(|&seed| EncoderSpec::Autoencoder {
                        net: self.network(seed),
                    }))
                }
                EncoderKind::Vae => specs.extend(seeds.iter().map(|&seed| EncoderSpec::Vae {
                    net: self.network(seed),
                    kl_weight: self.kl_weight,
                    kl_warmup_epochs: self.kl_warmup,
                })),
            }
        }
        Ok(specs)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        encoders: EncoderArgs,
    }

    fn specs(args: &[&str]) -> Vec<EncoderSpec> {
        let mut all = vec!["train"];
        all.extend(args);
        Cli::parse_from(all).encoders.specs().unwrap()
    }

    #[test]
    fn seeds_make_one_network_each_and_pca_once() {
        let s = specs(&["--encoder", "pca,ae,vae", "--seed", "1,2,1,3"]);
        let labels: Vec<String> = s.iter().map(EncoderSpec::label).collect();
        assert_eq!(
            labels,
            [
                "pca16", "ae16s1", "ae16s2", "ae16s3", "vae16s1", "vae16s2", "vae16s3"
            ]
        );
        assert_eq!(specs(&["--encoder", "ae"])[0].label(), "ae16");
    }
}
