#!/usr/bin/env bash
# The forest's level-at-a-time grower (wgpu's, also run on CUDA as `rf_fit_levels`): 100
# trees at scikit-learn's defaults on 10,000 × 64 → 4 (`--size seed`), once per setting of
# `FOREXGPT_FOREST_TUNING=SCAN,PARTITION,PRESORT,BIG_ROWS` (the rows a device unit loads
# together in the split search, the partition and the presort; the size from which a node's
# walks are split in chunks), in one stored table per setting. The debug log on stderr has
# each fit's levels, device round trips and where the time went.
#
# Reproduces docs/benchmarks.md, "Forest fit on wgpu: trees grown a level at a time (issue
# 21)", the table of tuning settings.
#
# Run on the GPU machine: bash bench/device/forest_tuning.sh [FOREXGPT_BIN] 2> tuning.log
#   Env: SETTINGS (default below), REPEATS (default 3), FOREXGPT_TEST_DEVICES (default
#   wgpu,cuda), FOREXGPT_LOG.
set -euo pipefail
source "$(dirname "$0")/common.sh"

repeats="${REPEATS:-3}"
export FOREXGPT_TEST_DEVICES="${FOREXGPT_TEST_DEVICES:-wgpu,cuda}"
export FOREXGPT_LOG="${FOREXGPT_LOG:-forexgpt_regressors=debug}"
# rf_fit_levels (the same grower on CUDA) exists only where CUDA is benchmarked.
ops=rf_fit
if [[ ",$FOREXGPT_TEST_DEVICES," == *",cuda"* ]]; then ops=rf_fit,rf_fit_levels; fi
run=0
for setting in ${SETTINGS:-4,4,4,16777216 4,4,4,512 8,8,8,512 16,16,16,512 16,16,16,256 8,8,8,2048}; do
  run=$((run + 1))
  heading "FOREXGPT_FOREST_TUNING=$setting: bench --suite forest --size seed --operations $ops --repeats $repeats"
  FOREXGPT_FOREST_TUNING="$setting" fx bench --suite forest --size seed \
    --operations "$ops" --repeats "$repeats" >/dev/null
  fx bench show "$run" --format markdown
done
