#!/usr/bin/env python3
"""Writes PyTorch fixtures for the autoencoder and VAE (tests/fixtures/encoders_oracle.json).

Small networks (6 inputs, hidden [8, 5], latent 3) with seeded weights, one per activation:
forward outputs (reconstruction, latent code, μ, log σ², losses) for given inputs and VAE
noise, and five Adam steps (lr 0.01, β = 0.9/0.999, ε = 1e-8) on fixed batches, with the loss
before each step and every weight after the last. Weights are stored in ForexGPT's layout
(`weight` is inputs × outputs, row-major, i.e. PyTorch's `weight.T`), layer order as
ForexGPT builds them: encoder then decoder; VAE: body, μ head, log σ² head, decoder.
The Rust side (shared/models/tests/torch_oracle.rs) loads the same weights into its burn
modules and compares. Runs on the CPU in float32; needs numpy and torch.

    python3 tests/oracle/gen_encoders.py
"""

import json
import pathlib

import numpy as np
import torch
from torch import nn

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests/fixtures/encoders_oracle.json"
D, HIDDEN, LATENT = 6, [8, 5], 3
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
KL_WEIGHT = 0.7


def dense(rng, inputs, outputs):
    k = 1.0 / np.sqrt(inputs)
    return dict(inputs=inputs, outputs=outputs,
                weight=rng.uniform(-k, k, size=(inputs, outputs)).astype(np.float32),
                bias=rng.uniform(-k, k, size=outputs).astype(np.float32))


def widths_pairs(widths):
    return list(zip(widths, widths[1:]))


def mlp(layers, act, activate_last):
    mods = []
    for i, layer in enumerate(layers):
        lin = nn.Linear(layer["inputs"], layer["outputs"])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(layer["weight"].T.copy()))
            lin.bias.copy_(torch.from_numpy(layer["bias"]))
        mods.append(lin)
        if i < len(layers) - 1 or activate_last:
            mods.append(ACTIVATIONS[act]())
    return nn.Sequential(*mods)


def linear_of(layer):
    return mlp([layer], "relu", False)[0]


class Autoencoder(nn.Module):
    def __init__(self, layers, act):
        super().__init__()
        n = len(HIDDEN) + 1
        self.encoder = mlp(layers[:n], act, False)
        self.decoder = mlp(layers[n:], act, False)

    def forward(self, x):
        z = self.encoder(x)
        return self.decoder(z), z

    def loss(self, x, eps=None):
        return ((self(x)[0] - x) ** 2).mean()


class Vae(nn.Module):
    def __init__(self, layers, act):
        super().__init__()
        n = len(HIDDEN)
        self.body = mlp(layers[:n], act, True)
        self.mu = linear_of(layers[n])
        self.log_var = linear_of(layers[n + 1])
        self.decoder = mlp(layers[n + 2:], act, False)

    def parts(self, x, eps):
        h = self.body(x)
        mu, log_var = self.mu(h), self.log_var(h)
        z = mu if eps is None else mu + torch.exp(0.5 * log_var) * eps
        recon = self.decoder(z)
        mse = ((recon - x) ** 2).mean()
        kl = (-0.5 * (1 + log_var - mu ** 2 - log_var.exp()).sum(1)).mean()
        return recon, mu, log_var, mse, kl, 0.5 * x.shape[1] * mse + KL_WEIGHT * kl

    def loss(self, x, eps=None):
        return self.parts(x, eps)[5]


def ae_layers(rng):
    widths = [D, *HIDDEN, LATENT]
    enc = [dense(rng, a, b) for a, b in widths_pairs(widths)]
    dec = [dense(rng, a, b) for a, b in widths_pairs(widths[::-1])]
    return enc + dec


def vae_layers(rng):
    body = [dense(rng, a, b) for a, b in widths_pairs([D, *HIDDEN])]
    heads = [dense(rng, HIDDEN[-1], LATENT), dense(rng, HIDDEN[-1], LATENT)]
    dec = [dense(rng, a, b) for a, b in widths_pairs([LATENT, *HIDDEN[::-1], D])]
    return body + heads + dec


def as_json_layers(layers):
    return [dict(inputs=l["inputs"], outputs=l["outputs"], weight=l["weight"].ravel().tolist(),
                 bias=l["bias"].tolist()) for l in layers]


def net_weights(net):
    """The module's weights back in ForexGPT's layout and order."""
    out = []
    for m in net.modules():
        if isinstance(m, nn.Linear):
            out.append(dict(inputs=m.in_features, outputs=m.out_features,
                            weight=m.weight.detach().numpy().T.ravel().tolist(),
                            bias=m.bias.detach().numpy().tolist()))
    return out


def adam_steps(net, batches, noises):
    opt = torch.optim.Adam(net.parameters(), lr=0.01, eps=1e-8)
    losses = []
    for xb, eps in zip(batches, noises):
        loss = net.loss(xb, eps)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses


def main():
    torch.set_default_dtype(torch.float32)
    rng = np.random.default_rng(20261126)
    x = rng.normal(size=(10, D)).astype(np.float32)
    eps = rng.normal(size=(10, LATENT)).astype(np.float32)
    steps_x = rng.normal(size=(5, 4, D)).astype(np.float32)
    steps_eps = rng.normal(size=(5, 4, LATENT)).astype(np.float32)
    xt, et = torch.from_numpy(x), torch.from_numpy(eps)
    cases = []
    for act in ACTIVATIONS:
        layers = ae_layers(rng)
        ae = Autoencoder(layers, act)
        with torch.no_grad():
            recon, z = ae(xt)
            loss = ae.loss(xt)
        case = dict(kind="autoencoder", activation=act, weights=as_json_layers(layers),
                    reconstruction=recon.numpy().tolist(), latent=z.numpy().tolist(),
                    loss=loss.item())
        batches = [torch.from_numpy(b) for b in steps_x]
        case["adam_losses"] = adam_steps(ae, batches, [None] * 5)
        case["adam_weights"] = net_weights(ae)
        cases.append(case)

        layers = vae_layers(rng)
        vae = Vae(layers, act)
        with torch.no_grad():
            recon, mu, log_var, mse, kl, loss = vae.parts(xt, et)
            mean_loss = vae.parts(xt, None)[5]
        case = dict(kind="vae", activation=act, weights=as_json_layers(layers),
                    reconstruction=recon.numpy().tolist(), mu=mu.numpy().tolist(),
                    log_var=log_var.numpy().tolist(), mse=mse.item(), kl=kl.item(), loss=loss.item(),
                    mean_loss=mean_loss.item())
        case["adam_losses"] = adam_steps(vae, batches, [torch.from_numpy(e) for e in steps_eps])
        case["adam_weights"] = net_weights(vae)
        cases.append(case)
    oracle = dict(torch=torch.__version__, numpy=np.__version__, d=D, hidden=HIDDEN, latent=LATENT,
                  kl_weight=KL_WEIGHT, adam_lr=0.01, x=x.tolist(), eps=eps.tolist(),
                  steps_x=steps_x.tolist(), steps_eps=steps_eps.tolist(), cases=cases)
    OUT.write_text(json.dumps(oracle) + "\n")
    print(f"wrote {OUT} ({len(cases)} cases, torch {torch.__version__})")


if __name__ == "__main__":
    main()
