#!/usr/bin/env bash
# Data pipeline: the feature matrix of 100,000 synthetic hourly bars (default feature spec,
# horizons 1/4/12/24) and the import of a 1,000,000-row CSV (whole import, parse + validate
# only, SQLite insert only). CPU only; runs on any machine, GPU or not.
#
# Reproduces docs/benchmarks.md:
#   - "Data pipeline": the table (on the 2-core development machine);
#   - "Devices on the GPU machine": the paragraph on the device host's CPU.
#
# Run: bash bench/device/data.sh [FOREXGPT_BIN]
#   FOREXGPT_BIN: a release binary (cargo build --release -p forexgpt-cli --features cuda;
#   this suite needs no GPU, so a build without CUDA does too); default $FOREXGPT_BIN, else
#   `forexgpt` on PATH. Env: REPEATS (timed runs after the cold one, default 5).
set -euo pipefail
source "$(dirname "$0")/common.sh"

repeats="${REPEATS:-5}"

heading "forexgpt bench --suite data --size seed --repeats $repeats"
fx bench --suite data --size seed --repeats "$repeats"

heading "bench show 1 --format markdown"
fx bench show 1 --format markdown
