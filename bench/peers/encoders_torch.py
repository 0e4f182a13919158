#!/usr/bin/env python3
"""PyTorch peer for `forexgpt bench --suite encoders --export-data DIR`.

The same autoencoder and VAE as ForexGPT's (Linear layers input → 128 → 64 → 16 → 64 → 128 →
input, ReLU; the VAE with μ and log σ² heads, loss ½·SSE per row + w·KL with w rising over
the warm-up), trained as a PyTorch user writes it in eager mode: the training rows on the
device, a `randperm` shuffle per epoch, Adam (lr 1e-3, PyTorch's defaults), batch 64, fixed
epochs, the epoch's loss and the validation loss read back once per epoch (as ForexGPT does
for progress and early stopping). float32 on the CPU (all threads) and on CUDA (TF32 off,
PyTorch's default for matmul). CUDA is synchronized before the clock stops; each timed run
includes the upload of the training rows.

On CUDA the same training runs a second time with every training step captured in CUDA
graphs (what a PyTorch expert does for a tiny network): one graph for a full batch and one
for the epoch's shorter last batch, `capturable` Adam, the batch's row indices and the KL
weight in static device tensors, the epoch's summed loss accumulated inside the graph. The
warm-up steps that capture needs are undone (weights restored, Adam state zeroed), so both
variants train the same number of steps; warm-up and capture are inside the timed run.

Writes DIR/torch_encoders_results.json in the shape of ForexGPT's results. The "vs ours"
column is the relative difference of the final validation loss from ForexGPT's CPU run
(DIR/ours_cpu_<operation>.f64): initial weights and batches differ, so it shows equal
quality, not equal numbers.

    python3 bench/peers/encoders_torch.py DIR [REPEATS]
"""

import json
import pathlib
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import peer_results  # noqa: E402


def mlp(widths, activate_last):
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2 or activate_last:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    def __init__(self, d, hidden, latent):
        super().__init__()
        self.encoder = mlp([d, *hidden, latent], False)
        self.decoder = mlp([latent, *reversed(hidden), d], False)

    def loss(self, x, kl_weight, sample):
        return ((self.decoder(self.encoder(x)) - x) ** 2).mean()


class Vae(nn.Module):
    def __init__(self, d, hidden, latent):
        super().__init__()
        self.body = mlp([d, *hidden], True)
        self.mu = nn.Linear(hidden[-1], latent)
        self.log_var = nn.Linear(hidden[-1], latent)
        self.decoder = mlp([latent, *reversed(hidden), d], False)

    def loss(self, x, kl_weight, sample):
        h = self.body(x)
        mu, log_var = self.mu(h), self.log_var(h)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu) if sample else mu
        mse = ((self.decoder(z) - x) ** 2).mean()
        kl = (-0.5 * (1 + log_var - mu ** 2 - log_var.exp()).sum(1)).mean()
        return 0.5 * x.shape[1] * mse + kl_weight * kl


def setup(kind, x_host, v_host, meta, device, capturable=False):
    """The rows on the device, the seeded network and its Adam."""
    torch.manual_seed(42)
    x = x_host.to(device, non_blocking=True)
    v = v_host.to(device, non_blocking=True)
    d = x.shape[1]
    net = (Autoencoder if kind == "autoencoder_fit" else Vae)(d, meta["hidden"], meta["latent"]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=meta["learning_rate"], capturable=capturable)
    return x, v, net, opt


def kl_weight_at(meta, epoch):
    """The VAE's KL weight in 1-based `epoch`, rising over the warm-up."""
    return meta["kl_weight"] * min(1.0, epoch / max(1, meta["kl_warmup_epochs"]))


def train(kind, x_host, v_host, meta, device):
    x, v, net, opt = setup(kind, x_host, v_host, meta, device)
    n = x.shape[0]
    batch, val_loss = meta["batch_size"], float("nan")
    for epoch in range(1, meta["epochs"] + 1):
        w = kl_weight_at(meta, epoch)
        perm = torch.randperm(n, device=device)
        total = torch.zeros((), device=device)
        net.train()
        for s in range(0, n, batch):
            xb = x[perm[s:s + batch]]
            loss = net.loss(xb, w, True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * xb.shape[0]
        net.eval()
        with torch.no_grad():
            train_loss = (total / n).item()
            val_loss = net.loss(v, meta["kl_weight"], False).item()
    return train_loss, val_loss


def train_graphed(kind, x_host, v_host, meta, device):
    """The same training with each step replayed from a CUDA graph."""
    x, v, net, opt = setup(kind, x_host, v_host, meta, device, capturable=True)
    n = x.shape[0]
    batch = meta["batch_size"]
    kl = torch.zeros((), device=device)
    total = torch.zeros((), device=device)
    sizes = sorted({batch, n % batch} - {0}, reverse=True)
    index = {b: torch.zeros(b, dtype=torch.long, device=device) for b in sizes}
    start_state = {k: t.clone() for k, t in net.state_dict().items()}

    def step(b):
        loss = net.loss(x[index[b]], kl, True)
        loss.backward()
        opt.step()
        total.add_(loss.detach() * b)

    # Warm-up on a side stream (as capture requires), then capture one graph per batch size.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for b in sizes:
            for _ in range(3):
                opt.zero_grad(set_to_none=False)
                step(b)
    torch.cuda.current_stream().wait_stream(side)
    graphs = {}
    for b in sizes:
        opt.zero_grad(set_to_none=False)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            opt.zero_grad(set_to_none=False)
            step(b)
        graphs[b] = g
    # Undo the warm-up: the starting weights, fresh Adam moments and step counts.
    with torch.no_grad():
        for k, t in net.state_dict().items():
            t.copy_(start_state[k])
        for state in opt.state.values():
            for t in state.values():
                if torch.is_tensor(t):
                    t.zero_()
    val_loss = float("nan")
    for epoch in range(1, meta["epochs"] + 1):
        kl.fill_(kl_weight_at(meta, epoch))
        total.zero_()
        perm = torch.randperm(n, device=device)
        net.train()
        for s in range(0, n, batch):
            rows = perm[s:s + batch]
            index[rows.shape[0]].copy_(rows)
            graphs[rows.shape[0]].replay()
        net.eval()
        with torch.no_grad():
            train_loss = (total / n).item()
            val_loss = net.loss(v, meta["kl_weight"], False).item()
    return train_loss, val_loss


def main():
    d = pathlib.Path(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    meta = json.loads((d / "encoder_meta.json").read_text())
    n, nv, p = meta["rows"], meta["validation_rows"], meta["cols"]
    x_np = np.fromfile(d / "encoder_train.f64", dtype="<f8").reshape(n, p).astype(np.float32)
    v_np = np.fromfile(d / "encoder_validation.f64", dtype="<f8").reshape(nv, p).astype(np.float32)
    torch.backends.cuda.matmul.allow_tf32 = False
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = []
    for device in devices:
        x_host, v_host = torch.from_numpy(x_np), torch.from_numpy(v_np)
        if device.type == "cuda":
            x_host, v_host = x_host.pin_memory(), v_host.pin_memory()
            label = f"torch {torch.__version__} cuda ({torch.cuda.get_device_name(0)}, f32)"
        else:
            label = f"torch {torch.__version__} cpu ({torch.get_num_threads()} threads, f32)"
        variants = [(label, train)]
        if device.type == "cuda":
            graphed = f"torch {torch.__version__} cuda graphs ({torch.cuda.get_device_name(0)}, f32)"
            variants.append((graphed, train_graphed))
        for kind, (label, trainer) in [(k, v) for v in variants for k in ["autoencoder_fit", "vae_fit"]]:
            times, first, val_loss = [], None, None
            for i in range(repeats + 1):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                try:
                    _, val_loss = trainer(kind, x_host, v_host, meta, device)
                except RuntimeError as e:  # a PyTorch build whose graphs cannot capture this
                    print(f"{kind} on {label}: failed: {e}", file=sys.stderr)
                    val_loss = None
                    break
                if device.type == "cuda":
                    torch.cuda.synchronize()
                elapsed = (time.perf_counter() - start) * 1e3
                if i == 0:
                    first = elapsed
                else:
                    times.append(elapsed)
            if val_loss is None:
                continue
            ours_path = d / f"ours_cpu_{kind}.f64"
            diff = None
            if ours_path.exists():
                ours = float(np.fromfile(ours_path, dtype="<f8")[0])
                diff = abs(val_loss - ours) / abs(ours)
            size = f"{n}\u00d7{p}, {meta['epochs']} epochs"
            results.append(peer_results.result(kind, size, label, first, times, n * meta["epochs"], diff))
            print(f"{kind} on {label}: final validation loss {val_loss:.5f}", file=sys.stderr)
    peer_results.write(d / "torch_encoders_results.json", results)
    peer_results.print_table(results)


if __name__ == "__main__":
    main()
