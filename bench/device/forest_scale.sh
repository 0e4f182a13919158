#!/usr/bin/env bash
# Random forest at ten times the rows: 100 trees grown on 100,000 × 64 → 4, predicting
# 1,000,000 rows; ours median of 2 after a cold run, scikit-learn one run after a cold one.
# The same script as bench/device/forest.sh with these sizes:
#   forexgpt bench --suite forest --size seed --forest-rows 100000 --predict-rows 1000000 --repeats 2 --export-data DIR
#   python3 bench/peers/forest_sklearn.py DIR 1
#
# Reproduces docs/benchmarks.md, "Random forest on CUDA, second design: …": the scale check.
#
# Run on the GPU machine: bash bench/device/forest_scale.sh [FOREXGPT_BIN] 2> forest_scale.log
#   FOREXGPT_BIN: release binary built with cargo build --release -p forexgpt-cli --features cuda;
#   default $FOREXGPT_BIN, else `forexgpt` on PATH.
set -euo pipefail
export FOREST_ROWS="${FOREST_ROWS:-100000}"
export PREDICT_ROWS="${PREDICT_ROWS:-1000000}"
export REPEATS="${REPEATS:-2}"
export PEER_REPEATS="${PEER_REPEATS:-1}"
exec bash "$(dirname "$0")/forest.sh" "$@"
