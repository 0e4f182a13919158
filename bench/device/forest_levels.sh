#!/usr/bin/env bash
# The forest's level-at-a-time grower (wgpu's, also run on CUDA as `rf_fit_levels`): 100
# trees at scikit-learn's defaults on 10,000 × 64 → 4 (`--size seed`), once per setting of
# the host's tail (`FOREXGPT_FOREST_TAIL_ROWS`: the host finishes the trees once the open
# nodes of all trees hold at most this many rows; 0 = the device searches every level), in
# one stored table per setting. The debug log on stderr has each fit's levels, device
# round trips, close calls decided on the host and where the time went.
#
# Reproduces docs/benchmarks.md, "Forest fit on wgpu: trees grown a level at a time (issue
# 21)", the table of tail settings.
#
# Run on the GPU machine: bash bench/device/forest_levels.sh [FOREXGPT_BIN] 2> levels.log
#   Env: TAILS (default "0 4000 16000 64000"), REPEATS (default 3),
#   FOREXGPT_TEST_DEVICES (default wgpu,cuda), FOREXGPT_LOG.
set -euo pipefail
source "$(dirname "$0")/common.sh"

repeats="${REPEATS:-3}"
export FOREXGPT_TEST_DEVICES="${FOREXGPT_TEST_DEVICES:-wgpu,cuda}"
export FOREXGPT_LOG="${FOREXGPT_LOG:-forexgpt_regressors=debug}"
# rf_fit_levels (the same grower on CUDA) exists only where CUDA is benchmarked.
ops=rf_fit
if [[ ",$FOREXGPT_TEST_DEVICES," == *",cuda"* ]]; then ops=rf_fit,rf_fit_levels; fi
run=0
for tail in ${TAILS:-0 4000 16000 64000}; do
  run=$((run + 1))
  heading "FOREXGPT_FOREST_TAIL_ROWS=$tail: bench --suite forest --size seed --operations $ops --repeats $repeats"
  FOREXGPT_FOREST_TAIL_ROWS="$tail" fx bench --suite forest --size seed \
    --operations "$ops" --repeats "$repeats" >/dev/null
  fx bench show "$run" --format markdown
done
