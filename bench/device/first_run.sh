#!/usr/bin/env bash
# A user's first encoder training on a fresh machine: `forexgpt train --encoder ae
# --regressor ridge` on the built-in sample (EURUSD 1h, the default 88-128-64-16 network) in a
# new database, per GPU device (cuda, wgpu): 1 epoch with an empty kernel cache (what the
# first run compiles), the same again with the cache filled, then 20 epochs; then the CPU.
# Each line is the wall time of the whole process (start, probe, features, training,
# encoding, the ridge, the model file), so "empty cache, 1 epoch" bounds the time from start
# to the first epoch.
#
# Reproduces docs/benchmarks.md, "Encoder training with the batch split by default (issue
# 20)", the first-run table.
#
# Run on the GPU machine: bash bench/device/first_run.sh [FOREXGPT_BIN]
#   Env: DEVICES (default "cuda wgpu").
set -euo pipefail
source "$(dirname "$0")/common.sh"

run() {
  local label="$1" cache="$2" start end status=0
  shift 2
  start="$(date +%s.%N)"
  # Our kernel cache, and the NVIDIA driver's own caches (CUDA's JIT, Vulkan's pipelines)
  # inside it: a fresh machine has none of them.
  FOREXGPT_CACHE_DIR="$cache" CUDA_CACHE_PATH="$cache/nv" __GL_SHADER_DISK_CACHE_PATH="$cache/gl" \
    fx "$@" >"$tmp/out" 2>"$tmp/err" || status=$?
  end="$(date +%s.%N)"
  if [[ "$status" != 0 ]]; then
    echo "- $label: failed (exit $status)"
    tail -5 "$tmp/err"
    return 0
  fi
  awk -v s="$start" -v e="$end" -v l="$label" 'BEGIN { printf "- %s: %.2f s", l, e - s }'
  # The CLI's own line: "…; 1 model in N ms".
  echo " ($(grep -o '[0-9]* models\? in [0-9]* ms' "$tmp/out" | head -1))"
}

heading "forexgpt train --encoder ae --regressor ridge --device D --epochs N --patience 0 (sample EURUSD 1h)"
train=(train --encoder ae --regressor ridge --patience 0)
for device in ${DEVICES:-cuda wgpu}; do
  cache="$tmp/cache-$device"
  run "$device, empty kernel cache, 1 epoch" "$cache" "${train[@]}" --device "$device" --epochs 1
  run "$device, cache filled, 1 epoch" "$cache" "${train[@]}" --device "$device" --epochs 1
  run "$device, cache filled, 20 epochs" "$cache" "${train[@]}" --device "$device" --epochs 20
  echo "  kernel cache: $(du -sh "$cache" | cut -f1)"
done
run "cpu, 1 epoch" "$tmp/cache-cpu" "${train[@]}" --device cpu --epochs 1
run "cpu, 20 epochs" "$tmp/cache-cpu" "${train[@]}" --device cpu --epochs 20
