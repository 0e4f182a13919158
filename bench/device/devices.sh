#!/usr/bin/env bash
# Devices: what the binary finds (CUDA driver, GPUs, NVRTC and headers, wgpu adapters, the
# CPU, what `auto` picks), and `devices --check` (a 64×64 matmul and exp(A)·B + 0.5 on every
# usable device against a float64 reference) timed twice: from an empty kernel cache (cold)
# and again with the cache it filled (warm). Then the CUDA fallback with no visible GPU.
#
# Reproduces docs/benchmarks.md, "Devices on the GPU machine": the `forexgpt devices` output,
# the `--json` fields, the `devices --check` table (errors per device, cold and warm times)
# and the first fallback (`CUDA_VISIBLE_DEVICES=`). Not scripted: the fallback with the CUDA
# toolkit moved away (it needs /usr/local/cuda renamed, which this script does not do: with
# the toolkit in place, `CUDA_PATH=<empty dir>` alone still finds it), and the development
# machine's lines (run this script there to get them).
#
# Run on the GPU machine: bash bench/device/devices.sh [FOREXGPT_BIN]
#   FOREXGPT_BIN: release binary built with cargo build --release -p forexgpt-cli --features cuda;
#   default $FOREXGPT_BIN, else `forexgpt` on PATH. Wall times of the checks go to stdout.
set -euo pipefail
source "$(dirname "$0")/common.sh"

# An empty kernel cache of our own, so the first check is a cold one.
export FOREXGPT_CACHE_DIR="$tmp/kernels"

heading "forexgpt devices"
fx devices

heading "forexgpt devices --json"
fx --json devices

heading "forexgpt devices --check (cold: empty kernel cache)"
timed fx devices --check || echo "devices --check exited with $?"

heading "forexgpt devices --check (warm)"
timed fx devices --check || echo "devices --check exited with $?"
echo "kernel cache: $(du -sh "$FOREXGPT_CACHE_DIR" 2>/dev/null | cut -f1)"

heading "CUDA_VISIBLE_DEVICES= forexgpt devices (no visible CUDA GPU)"
CUDA_VISIBLE_DEVICES= fx devices
