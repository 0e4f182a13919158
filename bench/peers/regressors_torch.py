#!/usr/bin/env python3
"""PyTorch peer for `forexgpt bench --suite regressors --export-data DIR`.

Ridge and PCA written the way a PyTorch user would: the O(n·d²) products on the device
(float64 on the CPU, float32 on CUDA with TF32 off, PyTorch's default), the d×d solve or
eigendecomposition with torch.linalg. Same objective as scikit-learn (intercept by centring,
PCA by the covariance's eigenvectors). Each timed run starts from the host arrays, so CUDA
times include the upload, as ForexGPT's GPU times do; CUDA is synchronized before the clock
stops. Lasso and ElasticNet are left out: PyTorch has no coordinate-descent solver, and a
hand-written one would measure the writer, not the library.

Writes DIR/torch_results.json in the shape of ForexGPT's benchmark results (for
`forexgpt bench add-peers RUN FILE` or `--peers FILE`), with each result compared against
ForexGPT's CPU coefficients (DIR/ours_cpu_<model>.f64).

    python3 bench/peers/regressors_torch.py DIR [REPEATS]
"""

import os
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import peer_results  # noqa: E402


def ridge(x, y, alpha):
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    gram = xc.T @ xc
    gram += alpha * torch.eye(gram.shape[0], dtype=x.dtype, device=x.device)
    coef = torch.linalg.solve(gram, xc.T @ yc)  # (p, t)
    return coef.T


def pca(x, k):
    xc = x - x.mean(0)
    cov = (xc.T @ xc) / (x.shape[0] - 1)
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    comps = vecs[:, -k:].flip(1).T.clone()
    for row in comps:  # same sign convention as ForexGPT's benchmark
        row *= torch.sign(row[torch.argmax(row.abs())])
    return comps


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    d, repeats, meta, x_np, y_np = peer_results.exported_regressor_data(sys.argv)
    (n, p), t = x_np.shape, y_np.shape[1]
    torch.backends.cuda.matmul.allow_tf32 = False
    devices = [(torch.device("cpu"), torch.float64)]
    if torch.cuda.is_available():
        devices.append((torch.device("cuda"), torch.float32))
    results = []
    for device, dtype in devices:
        # Host tensors in the device's precision, pinned for CUDA as a PyTorch user would.
        x_host = torch.from_numpy(x_np).to(dtype)
        y_host = torch.from_numpy(y_np).to(dtype)
        if device.type == "cuda":
            x_host, y_host = x_host.pin_memory(), y_host.pin_memory()
            label = f"torch {torch.__version__} cuda ({torch.cuda.get_device_name(0)}, f32)"
        else:
            label = f"torch {torch.__version__} cpu ({torch.get_num_threads()} threads, f64)"
        fits = {
            "ridge": lambda x, y: ridge(x, y, meta["ridge_alpha"]),
            "pca": lambda x, y: pca(x, meta["pca_components"]),
        }
        for name, fit in fits.items():
            times, first, coef = [], None, None
            for i in range(repeats + 1):
                sync(device)
                start = time.perf_counter()
                x = x_host.to(device, non_blocking=True)
                y = y_host.to(device, non_blocking=True)
                coef = fit(x, y)
                sync(device)
                elapsed = (time.perf_counter() - start) * 1e3
                if i == 0:
                    first = elapsed
                else:
                    times.append(elapsed)
            coef = coef.double().cpu().numpy()
            diff = peer_results.ours_difference(d, name, coef)
            results.append(peer_results.result(name, f"{n}\u00d7{p}\u2192{t}", label, first, times, n, diff))
    peer_results.write(d / "torch_results.json", results)
    peer_results.print_table(results, name_width=8)


if __name__ == "__main__":
    print(f"threads: {os.cpu_count()}", file=sys.stderr)
    main()
