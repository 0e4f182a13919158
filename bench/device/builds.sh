#!/usr/bin/env bash
# Builds of the CLI side by side, on the same machine in one call: the GPU jobs that a
# change of build settings could slow down (burn's own GPU kernels: the linear models and
# PCA on wgpu, the forest on both GPUs; our fused encoder kernels), each binary's rows in its
# own stored table, headed by the binary's size.
#
# Reproduces docs/benchmarks.md:
#   - "Adam's transposed writes coalesced; burn without fusion and autotuning (issue 20,
#     issue 23)": NCU=1 REPEATS=2 ENCODER_OPS=autoencoder_fit,autoencoder_grid_fit with the
#     binaries A B A (A: the commit before, B: the change); also the speed check that the
#     section "Size of the release CLI (CUDA + wgpu + CPU)" cites.
#   - "The forest's walk as a CubeCL kernel; burn without fusion (issue 21, issue 23)": call 1
#     with `A C A`, calls 2 and 3 with SUITES=forest REPEATS=5 and `C D C D`, `D E D E`.
#   - "Size of the release CLI (CUDA + wgpu + CPU)", the dist profile's speed:
#     SUITES=regressors,forest REPEATS=5 with `E DIST E DIST`.
#   - "Forest prediction on wgpu: binning without a search, the walk in chunks (issue 21)":
#     SUITES=forest, call 1 REPEATS=5 with `E F E F`, call 2 REPEATS=7 with `E F G E F G`.
#   - "Linear models and PCA on wgpu: our Gram kernel, rows through mapped buffers (issue
#     21)": FOREXGPT_TEST_DEVICES=wgpu SUITES=regressors REPEATS=3
#     FOREXGPT_LOG=forexgpt_kernels=debug,forexgpt_regressors=debug with `G H G H`.
#   - "Fused kernels: gradients summed over the batch by the Adam dispatch, weights loaded
#     ahead (issue 20)": FOREXGPT_LOG=forexgpt_engine=info SUITES=encoders REPEATS=2
#     ENCODER_OPS=autoencoder_fit,autoencoder_grid_fit,vae_fit,autoencoder_dropout_fit with
#     `T N T N` (the call's time ran out after `T N`: the suite times the CPU too).
#
# Run on the GPU machine: bash bench/device/builds.sh BIN...
#   BIN...: release binaries of forexgpt-cli built with --features cuda (for example the
#   commit before a change and the change), run suite by suite in the order given. Name one
#   twice, e.g. `A B A`, to see how much the machine itself drifts between runs.
#   Env: SUITES (default regressors,forest,encoders), REPEATS (timed runs, default 3),
#   FOREXGPT_TEST_DEVICES (default cuda,wgpu: the CPU path does not depend on these
#   settings), ENCODER_EPOCHS (default 100), ENCODER_OPS (the encoder operations, default
#   autoencoder_fit,vae_fit,autoencoder_grid_fit), NCU=1 (also
#   profile one training step's two fused kernels, `chain_step` and `chain_adam`, for one
#   network and for the grid of 16 on CUDA with Nsight Compute, per build).
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: bash bench/device/builds.sh BIN_A BIN_B [BIN...]" >&2
  exit 2
fi
repeats="${REPEATS:-3}"
epochs="${ENCODER_EPOCHS:-100}"
export FOREXGPT_TEST_DEVICES="${FOREXGPT_TEST_DEVICES:-cuda,wgpu}"
export FOREXGPT_LOG="${FOREXGPT_LOG:-forexgpt_engine=info}"
for bin in "$@"; do
  if ! command -v "$bin" >/dev/null 2>&1; then
    echo "forexgpt binary not found: '$bin'" >&2
    exit 2
  fi
done
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

all_suites=(
  "--suite regressors --size large --operations ridge,pca"
  "--suite forest --size seed"
  "--suite encoders --size seed --epochs $epochs --operations ${ENCODER_OPS:-autoencoder_fit,vae_fit,autoencoder_grid_fit}"
)
suites=()
for s in "${all_suites[@]}"; do
  name="${s#--suite }"
  name="${name%% *}"
  [[ ",${SUITES:-regressors,forest,encoders}," == *",$name,"* ]] && suites+=("$s")
done
for s in "${!suites[@]}"; do
  k=0
  for bin in "$@"; do
    k=$((k + 1))
    # One database per position: each suite's run of a binary is run #(suite + 1) there.
    fx() { "$bin" --db "$tmp/$k.sqlite" --models-dir "$tmp/models$k" "$@"; }
    # shellcheck disable=SC2086
    fx bench ${suites[$s]} --repeats "$repeats" >&2
    printf '\n### binary %s: %s (%s bytes)\n\n' "$k" "$bin" "$(stat -c %s "$(command -v "$bin")")"
    fx bench show "$((s + 1))" --format markdown
  done
done

if [[ "${NCU:-0}" == 1 ]] && command -v ncu >/dev/null 2>&1; then
  k=0
  declare -A profiled=()
  for bin in "$@"; do
    k=$((k + 1))
    [[ -n "${profiled[$bin]:-}" ]] && continue
    profiled[$bin]=1
    for op in autoencoder_fit autoencoder_grid_fit; do
      printf '\n### binary %s: ncu, %s, one training step (CUDA)\n\n```\n' "$k" "$op"
      FOREXGPT_TEST_DEVICES=cuda ncu --clock-control none -k regex:chain_ --launch-skip 400 \
        --launch-count 2 "$bin" --db "$tmp/ncu.sqlite" --models-dir "$tmp/ncu" bench \
        --suite encoders --size seed --epochs 2 --repeats 1 --no-store --operations "$op" 2>&1 \
        | grep -E '==ERROR==|^  [a-z_]+.*\(|Duration|Registers Per|Achieved Occupancy|Memory Throughput' || true
      printf '```\n'
    done
  done
fi
