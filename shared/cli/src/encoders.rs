//! `train`'s encoder arguments: which encoders, PCA's settings, and the autoencoder's and
//! VAE's network and training settings.

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use forexgpt_protocol::{Activation, EncoderSpec, NeuralEncoderSpec};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderKind {
    None,
    Pca,
    /// Autoencoder (burn; GPU when available).
    Ae,
    /// Variational autoencoder (burn; GPU when available).
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
    /// Seeds the initial weights, batch order and dropout.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// VAE: weight of the KL term.
    #[arg(long, default_value_t = 1.0)]
    kl_weight: f64,
    /// VAE: epochs over which the KL weight rises from 0.
    #[arg(long, default_value_t = 10)]
    kl_warmup: usize,
}

impl EncoderArgs {
    fn network(&self) -> NeuralEncoderSpec {
        NeuralEncoderSpec {
            hidden: self.hidden.clone(),
            latent: self.latent,
            activation: self.activation,
            dropout: self.dropout,
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.lr,
            patience: (self.patience > 0).then_some(self.patience),
            seed: self.seed,
        }
    }

    /// The encoder specs to train, checked.
    pub fn specs(&self) -> Result<Vec<EncoderSpec>> {
        let neural = self
            .encoder
            .iter()
            .any(|e| matches!(e, EncoderKind::Ae | EncoderKind::Vae));
        if neural && let Err(e) = self.network().check() {
            bail!("autoencoder settings: {e}");
        }
        Ok(self
            .encoder
            .iter()
            .map(|e| match e {
                EncoderKind::None => EncoderSpec::None,
                EncoderKind::Pca => EncoderSpec::Pca {
                    n_components: self.components,
                    whiten: self.whiten,
                },
                EncoderKind::Ae => EncoderSpec::Autoencoder {
                    net: self.network(),
                },
                EncoderKind::Vae => EncoderSpec::Vae {
                    net: self.network(),
                    kl_weight: self.kl_weight,
                    kl_warmup_epochs: self.kl_warmup,
                },
            })
            .collect())
    }
}
