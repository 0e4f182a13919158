#!/usr/bin/env python3
"""Writes scikit-learn RandomForestRegressor fixtures (tests/fixtures/forest_oracle.json).

Data: 1,500 training and 500 validation rows × 8 features (two pure noise), 2 targets that
are non-linear in the features (a sine, a product, a square, a ReLU, a step) plus noise,
rounded to 6 decimals so that both sides fit the very same numbers. For several settings
the fixture holds scikit-learn's validation R² and MAE (averaged over the targets), its
out-of-bag R² where asked, and its feature importances, each the mean over five
random_states (with the spread of R² and MAE), so that the fixture is the forest's quality
rather than one draw's luck. Trees differ by randomness and
binning, so the Rust tests compare quality, not trees. Versions are pinned in
requirements.txt beside this script.

    python3 tests/oracle/gen_forest.py
"""

import json
import pathlib

import numpy as np
import sklearn
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import mean_absolute_error, r2_score

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests/fixtures/forest_oracle.json"

CASES = [
    dict(name="defaults", params=dict()),
    dict(name="shallow_sqrt_leaf5", params=dict(max_depth=6, max_features="sqrt", min_samples_leaf=5)),
    dict(name="no_bootstrap_half_features", params=dict(n_estimators=50, bootstrap=False, max_features=0.5)),
    dict(name="half_samples_oob", params=dict(max_samples=0.5, min_samples_split=10, oob_score=True)),
]


SEEDS = [0, 1, 2, 3, 4]


def data():
    rng = np.random.default_rng(20261126)
    n, d = 2000, 8
    x = rng.normal(size=(n, d))
    y0 = np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.5 * x[:, 3] ** 2
    y1 = np.maximum(x[:, 4], 0) - x[:, 5] + (x[:, 0] > 0.3) * 1.0
    y = np.stack([y0, y1], axis=1) + 0.1 * rng.normal(size=(n, 2))
    return np.round(x, 6), np.round(y, 6)


def main():
    x, y = data()
    xt, yt, xv, yv = x[:1500], y[:1500], x[1500:], y[1500:]
    cases = []
    for case in CASES:
        runs = []
        for seed in SEEDS:
            m = RandomForestRegressor(random_state=seed, n_jobs=-1, **case["params"]).fit(xt, yt)
            p = m.predict(xv)
            runs.append(dict(r2=r2_score(yv, p), mae=mean_absolute_error(yv, p),
                             oob=getattr(m, "oob_score_", None), imp=m.feature_importances_))
        mean = lambda key: float(np.mean([r[key] for r in runs]))
        cases.append(dict(
            name=case["name"],
            params=dict(case["params"]),
            r2=mean("r2"),
            r2_sd=float(np.std([r["r2"] for r in runs])),
            mae=mean("mae"),
            mae_sd=float(np.std([r["mae"] for r in runs])),
            oob_score=mean("oob") if runs[0]["oob"] is not None else None,
            feature_importances=np.mean([r["imp"] for r in runs], axis=0).tolist(),
        ))
        c = cases[-1]
        print(f"{c['name']}: R² {c['r2']:.4f} ± {c['r2_sd']:.4f}, MAE {c['mae']:.4f} ± {c['mae_sd']:.4f}")
    OUT.write_text(json.dumps(dict(sklearn=sklearn.__version__, x_train=xt.tolist(), y_train=yt.tolist(),
                                   x_valid=xv.tolist(), y_valid=yv.tolist(), cases=cases)) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
