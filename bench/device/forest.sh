#!/usr/bin/env bash
# Random forest: 100 trees at scikit-learn's defaults (fully grown, max_features 1.0,
# bootstrap) grown on 10,000 × 64 → 4 (`--size seed`) and predicting 100,000 held-out rows,
# on the CPU and every GPU, against scikit-learn's RandomForestRegressor (n_jobs=-1) on
# exactly the exported rows, in one stored table. The debug log on stderr says where a fit's
# and a prediction's time goes (binning, kernels, read-back, fingerprint).
#
# Reproduces docs/benchmarks.md:
#   - "Random forest (issue 7, issue 9)": REPEATS=3 (its separate `--no-store` debug-log run
#     is folded into this one: the log is on for the stored run);
#   - "Random forest on CUDA: trees grown and walked by kernels of our own (issue 7)": all
#     three tables (defaults: REPEATS=5, PEER_REPEATS=3);
#   - "Random forest on CUDA, second design: …": the three rounds (defaults); its scale
#     check is bench/device/forest_scale.sh.
# Those tables were measured on successive builds (named in each section); this script
# measures the current one.
#
# Run on the GPU machine: bash bench/device/forest.sh [FOREXGPT_BIN] 2> forest.log
#   FOREXGPT_BIN: release binary built with cargo build --release -p forexgpt-cli --features cuda;
#   default $FOREXGPT_BIN, else `forexgpt` on PATH.
#   Env: REPEATS (timed runs of ours, default 5), PEER_REPEATS (of scikit-learn, default 3),
#   FOREST_ROWS and PREDICT_ROWS (override the seed's 10,000 and 100,000),
#   FOREXGPT_TEST_DEVICES, FOREXGPT_LOG. Needs python3 with numpy and scikit-learn.
set -euo pipefail
source "$(dirname "$0")/common.sh"

repeats="${REPEATS:-5}"
peer_repeats="${PEER_REPEATS:-3}"
export FOREXGPT_LOG="${FOREXGPT_LOG:-forexgpt_engine=info,forexgpt_device=debug,forexgpt_kernels=debug,forexgpt_regressors=debug}"
dir="$tmp/rf"
sizes=()
if [[ -n "${FOREST_ROWS:-}" ]]; then sizes+=(--forest-rows "$FOREST_ROWS"); fi
if [[ -n "${PREDICT_ROWS:-}" ]]; then sizes+=(--predict-rows "$PREDICT_ROWS"); fi

heading "forexgpt bench --suite forest --size seed ${sizes[*]} --repeats $repeats --export-data DIR"
fx bench --suite forest --size seed "${sizes[@]}" --repeats "$repeats" --export-data "$dir"

heading "scikit-learn peer"
python3 "$(dirname "$0")/../peers/forest_sklearn.py" "$dir" "$peer_repeats"
fx bench add-peers 1 "$dir/sklearn_forest_results.json" >/dev/null

heading "bench show 1 --format markdown"
fx bench show 1 --format markdown
