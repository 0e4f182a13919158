#!/usr/bin/env bash
# The fused encoder-training kernel under each cube plan (rows of a batch per workgroup,
# units per workgroup): the reference autoencoder (128-128-64-16 mirrored, batch 64) on
# 10,000 × 128 rows, one network and a grid of 16, on every GPU (CUDA and wgpu), each plan
# timed over whole epochs after a warm-up epoch that compiles its kernels.
#
# Reproduces docs/benchmarks.md, "Fused kernels: a batch split among workgroups (issue 20)"
# (EPOCHS=10); its fastest plans set CubePlan::for_grid, the default.
#
# Run on the GPU machine: bash bench/device/fused_plans.sh [FUSED_PLANS_BIN] [EPOCHS]
#   FUSED_PLANS_BIN: the example built with
#     cargo build --release -p forexgpt-kernels --features cuda,wgpu --example fused_plans
#   (target/release/examples/fused_plans); EPOCHS defaults to 20.
#   Env: FOREXGPT_TEST_DEVICES (e.g. cuda,wgpu); FUSED_PLANS=ROWS,UNITS,NETWORKS;… times only
#   those plans (e.g. "2,256,1;8,1024,16"; default: the sweep of the table, and grids of 16 at
#   1,024 units too); FUSED_UNROLL=N unrolls the products' inner loops N times (default 16;
#   the engine unrolls 32 on CUDA). docs/benchmarks.md, "Fused kernels: gradients summed over
#   the batch by the Adam dispatch, weights loaded ahead", ran it with
#   FUSED_PLANS="2,256,1;8,256,16;4,256,16;16,512,16" and FUSED_UNROLL=16 and 32, 10 epochs.
#   FUSED_WIDE_ADAM=1 (or 0) makes the Adam dispatch take tiles of 1,024 parameters (or 256)
#   whatever the grid. The first network's last training and validation losses are printed in
#   full: they are the same on every plan of a device (a network's numbers do not depend on
#   the plan). "Fused kernels: plan-independent sums, the bias inside the Adam tiles; a stale
#   kernel cache" ran FUSED_UNROLL=32 FUSED_PLANS="2,256,1;8,256,1;8,256,16;2,256,16" (also
#   with FUSED_WIDE_ADAM=1 and 0, and FUSED_UNROLL=4) for 3 epochs, and "2,256,1;8,256,16"
#   for 10.
#   FUSED_ADAM_STAGE=N makes the Adam dispatch stage at most N values a round (default and
#   at most 4,096; the engine gives CUDA 2,048). Since c993998 the timed epochs are queued
#   ahead as the engine queues them on CUDA (each before the last one's losses are read);
#   FUSED_AHEAD=0 reads each epoch's losses before the next is queued (the engine's way on
#   other GPUs). "Fused kernels: epochs queued ahead on CUDA, a smaller Adam round,
#   set-up on the device" ran FUSED_UNROLL=32 FUSED_PLANS="2,256,1;8,256,16" with FUSED_ADAM_STAGE=4096,
#   2048, 1024 for 20 epochs (and under ncu), and FOREXGPT_TEST_DEVICES=wgpu (FUSED_UNROLL=16)
#   and cuda with FUSED_AHEAD=1/0 × FUSED_ADAM_STAGE=2048/4096.
set -euo pipefail
bin="${1:-target/release/examples/fused_plans}"
if [[ ! -x "$bin" ]]; then
  echo "fused_plans binary not found: '$bin' (build it with: cargo build --release" >&2
  echo "-p forexgpt-kernels --features cuda,wgpu --example fused_plans)" >&2
  exit 2
fi
"$bin" "${2:-20}"
