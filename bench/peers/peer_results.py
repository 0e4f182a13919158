"""Results in the shape of ForexGPT's benchmark results, shared by the peer scripts."""

import json
import pathlib
import statistics


def result(operation, size, device, first_ms, times_ms, items, diff=None):
    """One timed operation: a cold run, then the timed repeats (median, min, max)."""
    median = statistics.median(times_ms)
    return dict(operation=operation, size=size, device=device, first_run_ms=first_ms,
                median_ms=median, min_ms=min(times_ms), max_ms=max(times_ms),
                repeats=len(times_ms), throughput_per_s=items / (median / 1e3),
                max_rel_diff_vs_cpu=diff)


def exported_regressor_data(argv):
    """The data `forexgpt bench --suite regressors --export-data DIR` wrote, from the command
    line `SCRIPT DIR [REPEATS]`: (dir, repeats, meta, x, y), x and y as float64 arrays."""
    import numpy as np

    d = pathlib.Path(argv[1])
    repeats = int(argv[2]) if len(argv) > 2 else 3
    meta = json.loads((d / "meta.json").read_text())
    n, p, t = meta["rows"], meta["cols"], meta["targets"]
    x = np.fromfile(d / "x.f64", dtype="<f8").reshape(n, p)
    y = np.fromfile(d / "y.f64", dtype="<f8").reshape(n, t)
    return d, repeats, meta, x, y


def ours_difference(d, name, coef):
    """The largest difference between `coef` and ForexGPT's CPU coefficients of `name` (written
    by `forexgpt bench --export-data d`), relative to the largest of ours; None without them."""
    import numpy as np

    ours_path = d / f"ours_cpu_{name}.f64"
    if not ours_path.exists():
        return None
    ours = np.fromfile(ours_path, dtype="<f8").reshape(coef.shape)
    return float(np.max(np.abs(ours - coef)) / np.max(np.abs(ours)))


def write(path, results):
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")


def print_table(results, name_width=16):
    print(f"{'operation':<{name_width}} {'device':<58} {'cold ms':>10} {'median ms':>10} {'min ms':>9}  vs ours(cpu)")
    for r in results:
        diff = "" if r["max_rel_diff_vs_cpu"] is None else f"{r['max_rel_diff_vs_cpu']:.1e}"
        print(f"{r['operation']:<{name_width}} {r['device']:<58} {r['first_run_ms']:>10.1f} "
              f"{r['median_ms']:>10.1f} {r['min_ms']:>9.1f}  {diff}")
