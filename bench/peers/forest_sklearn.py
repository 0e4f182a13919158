#!/usr/bin/env python3
"""scikit-learn peer for `forexgpt bench --suite forest --export-data DIR`.

Grows scikit-learn's RandomForestRegressor with the settings in DIR/forest_meta.json (100
trees, max_features 1.0, bootstrap, fully grown: scikit-learn's defaults, n_jobs=-1: every
core) on exactly the rows ForexGPT benchmarked (DIR/forest_x.f64, DIR/forest_y.f64), and
predicts the held-out rows (DIR/forest_xp.f64), one untimed cold run and REPEATS timed runs
each. Trees differ by randomness and binning, so the "vs ours" column of rf_fit is the
difference of held-out R² from ForexGPT's (DIR/ours_cpu_rf_fit.f64: positive when
scikit-learn scores higher), not of numbers. Writes DIR/sklearn_forest_results.json in the
shape of ForexGPT's results.

    python3 bench/peers/forest_sklearn.py DIR [REPEATS]
"""

import json
import os
import pathlib
import sys
import time

import numpy as np
import sklearn
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import r2_score

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import peer_results  # noqa: E402


def timed(run, repeats):
    first, times, out = None, [], None
    for i in range(repeats + 1):
        start = time.perf_counter()
        out = run()
        elapsed = (time.perf_counter() - start) * 1e3
        if i == 0:
            first = elapsed
        else:
            times.append(elapsed)
    return first, times, out


def main():
    d = pathlib.Path(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    meta = json.loads((d / "forest_meta.json").read_text())
    n, p, t, m = meta["rows"], meta["cols"], meta["targets"], meta["predict_rows"]
    x = np.fromfile(d / "forest_x.f64", dtype="<f8").reshape(n, p)
    y = np.fromfile(d / "forest_y.f64", dtype="<f8").reshape(n, t)
    xp = np.fromfile(d / "forest_xp.f64", dtype="<f8").reshape(m, p)
    yp = np.fromfile(d / "forest_yp.f64", dtype="<f8").reshape(m, t)
    trees = meta["n_estimators"]

    def fit():
        return RandomForestRegressor(n_estimators=trees, max_features=meta["max_features"],
                                     bootstrap=meta["bootstrap"], random_state=meta["random_state"],
                                     n_jobs=-1).fit(x, y)

    device = f"scikit-learn {sklearn.__version__} ({os.cpu_count()} threads)"
    first, times, model = timed(fit, repeats)
    r2 = r2_score(yp, model.predict(xp))
    ours_path = d / "ours_cpu_rf_fit.f64"
    diff = float(r2 - np.fromfile(ours_path, dtype="<f8")[0]) if ours_path.exists() else None
    results = [peer_results.result("rf_fit", f"{trees} trees, {n}\u00d7{p}\u2192{t}", device, first, times, n, diff)]
    first, times, _ = timed(lambda: model.predict(xp), repeats)
    results.append(peer_results.result("rf_predict", f"{trees} trees, {m}\u00d7{p}", device, first, times, m))
    print(f"scikit-learn held-out R² {r2:.4f}")
    peer_results.print_table(results)
    peer_results.write(d / "sklearn_forest_results.json", results)


if __name__ == "__main__":
    main()
