#!/usr/bin/env bash
# Ensemble forecasts with linear models: 1, 10 and 50 models (ridge on the raw features and
# on 16 PCA components, alphas 0.1 … 1000, trained on the sample series) forecasting the
# latest bar, and 50 models over 1,000 bars, with q05/q50/q95 bands; CPU and every GPU, each
# GPU result compared with the CPU's.
#
# Reproduces docs/benchmarks.md, "Ensemble forecasts (issue 8, linear models)": both tables.
#
# Run on the GPU machine: bash bench/device/forecast.sh [FOREXGPT_BIN]
#   FOREXGPT_BIN: release binary built with cargo build --release -p forexgpt-cli --features cuda;
#   default $FOREXGPT_BIN, else `forexgpt` on PATH.
#   Env: REPEATS (timed runs after the cold one, default 20), FOREXGPT_TEST_DEVICES.
set -euo pipefail
source "$(dirname "$0")/common.sh"

repeats="${REPEATS:-20}"

heading "forexgpt bench --suite forecast --repeats $repeats"
fx bench --suite forecast --repeats "$repeats"

heading "bench show 1 --format markdown"
fx bench show 1 --format markdown
