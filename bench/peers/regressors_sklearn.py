#!/usr/bin/env python3
"""scikit-learn peer for `forexgpt bench --suite regressors --export-data DIR`.

Runs Ridge, Lasso, ElasticNet and PCA with the parameters in DIR/meta.json on exactly the data
ForexGPT benchmarked (DIR/x.f64, DIR/y.f64: row-major little-endian float64), one untimed
warm-up and REPEATS timed runs each, and compares the results with ForexGPT's CPU results
(DIR/ours_cpu_<model>.f64). Prints a table and writes DIR/sklearn_results.json in the shape of
ForexGPT's benchmark results, so that `forexgpt bench add-peers RUN DIR/sklearn_results.json`
(or `forexgpt bench --peers FILE`) puts scikit-learn into the same stored table.

    python3 bench/peers/regressors_sklearn.py DIR [REPEATS]
"""

import os
import pathlib
import sys
import time

import numpy as np
import sklearn
from sklearn.decomposition import PCA
from sklearn.linear_model import ElasticNet, Lasso, Ridge

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import peer_results  # noqa: E402


def main():
    d, repeats, meta, x, y = peer_results.exported_regressor_data(sys.argv)
    (n, p), t = x.shape, y.shape[1]
    models = {
        "ridge": lambda: Ridge(alpha=meta["ridge_alpha"]),
        "lasso": lambda: Lasso(alpha=meta["lasso_alpha"]),
        "elasticnet": lambda: ElasticNet(alpha=meta["enet_alpha"], l1_ratio=meta["enet_l1_ratio"]),
        "pca": lambda: PCA(n_components=meta["pca_components"]),
    }
    results = []
    device = f"scikit-learn {sklearn.__version__} ({os.cpu_count()} threads)"
    for name, make in models.items():
        times = []
        first = None
        for i in range(repeats + 1):
            m = make()
            start = time.perf_counter()
            m.fit(x) if name == "pca" else m.fit(x, y)
            elapsed = (time.perf_counter() - start) * 1e3
            if i > 0:
                times.append(elapsed)
            else:
                first = elapsed
        if name == "pca":
            coef = m.components_.copy()
            for row in coef:  # same sign convention as ForexGPT's benchmark
                row *= np.sign(row[np.argmax(np.abs(row))])
        else:
            coef = m.coef_
        diff = peer_results.ours_difference(d, name, coef)
        # The size string matches ForexGPT's regressor cases; the difference is scikit-learn's
        # coefficients against ForexGPT's CPU ones.
        results.append(peer_results.result(name, f"{n}\u00d7{p}\u2192{t}", device, first, times, n, diff))
    peer_results.write(d / "sklearn_results.json", results)
    peer_results.print_table(results, name_width=12)


if __name__ == "__main__":
    main()
