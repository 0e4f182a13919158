#!/usr/bin/env python3
"""Writes scikit-learn fixtures for Ridge, Lasso, ElasticNet and PCA (tests/fixtures/regressors_oracle.json).

Data: 240 rows × 6 correlated features, 3 targets (a known linear map plus noise), seeded.
Coordinate-descent models run with tol=1e-12 and max_iter=100000 so that the fixture is the
optimum itself, not a point where one implementation happened to stop; the Rust tests use the
same settings. Versions are pinned in requirements.txt beside this script.

    /tmp/oracle/bin/python tests/oracle/gen_regressors.py
"""

import json
import pathlib

import numpy as np
import sklearn
from sklearn.decomposition import PCA
from sklearn.linear_model import ElasticNet, Lasso, Ridge

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests/fixtures/regressors_oracle.json"


def data():
    rng = np.random.default_rng(20261125)
    n, d, t = 240, 6, 3
    base = rng.normal(size=(n, d))
    mix = np.eye(d) + 0.4 * rng.normal(size=(d, d))
    x = base @ mix + np.array([1.0, -2.0, 0.5, 3.0, 0.0, 10.0])
    w = rng.normal(size=(d, t)) * np.array([[1.0], [0.0], [0.5], [2.0], [0.0], [0.1]])
    y = x @ w + np.array([0.3, -1.0, 2.0]) + 0.1 * rng.normal(size=(n, t))
    return x, y


def main():
    x, y = data()
    cases = []
    for alpha in [0.1, 1.0, 10.0]:
        for fit_intercept in [True, False]:
            m = Ridge(alpha=alpha, fit_intercept=fit_intercept).fit(x, y)
            cases.append(dict(kind="ridge", alpha=alpha, l1_ratio=0.0, fit_intercept=fit_intercept, coef=m.coef_.tolist(),
                              intercept=np.atleast_1d(m.intercept_).tolist(), predict=m.predict(x[:10]).tolist()))
    for kind, alpha, l1_ratio in [("lasso", 0.001, 1.0), ("lasso", 0.05, 1.0), ("lasso", 0.5, 1.0),
                                  ("elasticnet", 0.01, 0.2), ("elasticnet", 0.1, 0.7), ("elasticnet", 1.0, 0.5)]:
        for fit_intercept in [True, False]:
            cls = Lasso(alpha=alpha, fit_intercept=fit_intercept, tol=1e-12, max_iter=100000) if kind == "lasso" else \
                ElasticNet(alpha=alpha, l1_ratio=l1_ratio, fit_intercept=fit_intercept, tol=1e-12, max_iter=100000)
            m = cls.fit(x, y)
            cases.append(dict(kind=kind, alpha=alpha, l1_ratio=l1_ratio, fit_intercept=fit_intercept, coef=m.coef_.tolist(),
                              intercept=np.atleast_1d(m.intercept_).tolist(), predict=m.predict(x[:10]).tolist()))
    pcas = []
    for k, whiten in [(3, False), (3, True), (6, False)]:
        p = PCA(n_components=k, whiten=whiten, svd_solver="full").fit(x)
        pcas.append(dict(n_components=k, whiten=whiten, components=p.components_.tolist(), mean=p.mean_.tolist(),
                         explained_variance=p.explained_variance_.tolist(),
                         explained_variance_ratio=p.explained_variance_ratio_.tolist(),
                         transform=p.transform(x[:10]).tolist()))
    OUT.write_text(json.dumps(dict(sklearn=sklearn.__version__, x=x.tolist(), y=y.tolist(), linear=cases, pca=pcas)) + "\n")
    print(f"wrote {len(cases)} linear and {len(pcas)} PCA cases to {OUT}")


if __name__ == "__main__":
    main()
