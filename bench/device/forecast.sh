#!/usr/bin/env bash
# Ensemble forecasts: 1, 10 and 50 models forecasting the latest bar, and 50 models over
# 1,000 bars, with q05/q50/q95 bands; CPU and every GPU, each GPU result compared with the
# CPU's. Two kinds of ensemble, trained on the sample series:
#   forecast     ridge on the raw features and on 16 PCA components, alphas 0.1 … 1000;
#   forecast_ae  autoencoders of the default shape (128-64-16, one epoch each, seeds apart)
#                with a ridge on the latent code (one dispatch per ensemble on a GPU).
#
# Reproduces docs/benchmarks.md, "Ensemble forecasts (issue 8, linear models)" (both tables;
# OPERATIONS=forecast) and "Ensembles of autoencoder models in one dispatch (issue 20)"
# (OPERATIONS=forecast_ae).
#
# Run on the GPU machine: bash bench/device/forecast.sh [FOREXGPT_BIN]
#   FOREXGPT_BIN: release binary built with cargo build --release -p forexgpt-cli --features cuda;
#   default $FOREXGPT_BIN, else `forexgpt` on PATH.
#   Env: REPEATS (timed runs after the cold one, default 20), OPERATIONS (forecast,
#   forecast_ae or both, the default), FOREXGPT_TEST_DEVICES.
set -euo pipefail
source "$(dirname "$0")/common.sh"

repeats="${REPEATS:-20}"

heading "forexgpt bench --suite forecast --repeats $repeats ${OPERATIONS:+--operations $OPERATIONS}"
fx bench --suite forecast --repeats "$repeats" ${OPERATIONS:+--operations "$OPERATIONS"}

heading "bench show 1 --format markdown"
fx bench show 1 --format markdown
