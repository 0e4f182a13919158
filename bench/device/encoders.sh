#!/usr/bin/env bash
# Autoencoder and VAE training: the 128-64-16 mirrored MLPs (ReLU, batch 64, Adam 1e-3) on
# 10,000 × 128 rows of a curved 4-dimensional surface, validated on 2,000 more, on the CPU and
# every GPU (our fused kernels; the autoencoder also as a grid of 16 networks trained
# together, `autoencoder_grid_fit`; burn trains on the CPU only), against the same networks in PyTorch (CPU; CUDA eager and with each
# step captured in a CUDA graph; float32) on exactly the exported rows, in one stored table.
#
# Reproduces docs/benchmarks.md:
#   - "Encoder training by our fused kernels (issue 20)": the defaults (EPOCHS=20, REPEATS=2);
#   - "Autoencoder and VAE training (issue 5, issue 9)": the defaults, on the builds of then;
#   - "Autoencoder and VAE at 100 epochs on the H100 (issue 5, issue 9)": EPOCHS=100 REPEATS=1
#     (that table came from two device calls, ours and then PyTorch on the carried data; this
#     script makes both in one).
#   - "Fused kernels: plan-independent sums, the bias inside the Adam tiles; a stale kernel
#     cache (issue 20)": PEERS=0 EPOCHS=100 REPEATS=2
#     OPERATIONS=autoencoder_fit,autoencoder_grid_fit.
#   - "Fused kernels: epochs queued ahead on CUDA, a smaller Adam round, set-up on the device
#     (issue 20)": FOREXGPT_TEST_DEVICES=cuda PEERS=0 EPOCHS=100 REPEATS=3
#     OPERATIONS=autoencoder_fit,autoencoder_grid_fit
#     FOREXGPT_LOG=forexgpt_engine=info,forexgpt_kernels=debug, binaries in turn. Where
#     FOREXGPT_TEST_DEVICES leaves the CPU out, so does the table (no CPU reference, no
#     difference column; builds before b4dac0c ran the CPU anyway).
#
# Run on the GPU machine: bash bench/device/encoders.sh [FOREXGPT_BIN]
#   e.g. EPOCHS=100 REPEATS=1 bash bench/device/encoders.sh target/release/forexgpt
#   FOREXGPT_BIN: release binary built with cargo build --release -p forexgpt-cli --features cuda;
#   default $FOREXGPT_BIN, else `forexgpt` on PATH.
#   Env: EPOCHS (default 20), REPEATS (timed runs of ours and of PyTorch, default 2),
#   FOREXGPT_TEST_DEVICES, OPERATIONS (only these of ours, e.g.
#   autoencoder_fit,vae_fit), PEERS=0 (ours only, without the PyTorch peer). Needs python3 with
#   numpy and torch (unless PEERS=0).
#   FOREXGPT_FUSED_PLAN=ROWS,UNITS[,UNROLL] trains every GPU network under that cube plan of
#   the fused kernels (rows of a batch per workgroup, units per workgroup, the products'
#   unrolling) instead of the default, to time a plan of bench/device/fused_plans.sh through
#   the whole pipeline.
#   Each finished case is logged on stderr (FOREXGPT_LOG=forexgpt_engine=info), so a run
#   that is stopped still leaves its numbers there.
set -euo pipefail
source "$(dirname "$0")/common.sh"

epochs="${EPOCHS:-20}"
repeats="${REPEATS:-2}"
export FOREXGPT_LOG="${FOREXGPT_LOG:-forexgpt_engine=info}"
dir="$tmp/enc"

heading "forexgpt bench --suite encoders --size seed --epochs $epochs --repeats $repeats --export-data DIR"
fx bench --suite encoders --size seed --epochs "$epochs" --repeats "$repeats" --export-data "$dir" \
  ${OPERATIONS:+--operations "$OPERATIONS"}

if [[ "${PEERS:-1}" != 0 ]]; then
  heading "PyTorch peer"
  python3 "$(dirname "$0")/../peers/encoders_torch.py" "$dir" "$repeats"
  fx bench add-peers 1 "$dir/torch_encoders_results.json" >/dev/null
fi

heading "bench show 1 --format markdown"
fx bench show 1 --format markdown
