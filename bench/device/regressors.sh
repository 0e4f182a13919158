#!/usr/bin/env bash
# Linear regressors and PCA: Ridge, Lasso, ElasticNet and PCA (16 components) on 1M × 128 → 8
# (`--size large`) on the CPU (float64) and every GPU, against scikit-learn (16 threads) and
# PyTorch (CPU float64, CUDA float32) on exactly the exported data, in one stored table. Then
# the training pipeline on the sample series on CUDA (fresh process, wall time).
#
# Reproduces docs/benchmarks.md:
#   - "Regressors vs scikit-learn (issue 6, first measurements)": both tables (the second,
#     "where the GPU time goes", from the debug log on stderr; it was measured with REPEATS=2);
#   - "Regressors, second round: chunked products and the TF32 split (issue 6)";
#   - "Regressors, third round: float64 products through cuBLAS on CUDA (issue 6)": the main
#     table, the per-step table (debug log on stderr: `cuBLAS cross products`, `linear fit`,
#     `PCA fit`) and the final table;
#   - "PyTorch as a peer for the linear regressors (issue 9, issue 6)".
#   - "Linear models and PCA on wgpu: our Gram kernel, rows through mapped buffers (issue
#     21)": the second table (REPEATS=3 PEER_REPEATS=3).
# The older sections were measured on earlier builds (named in each section); this script
# measures the current code paths.
#
# Run on the GPU machine: bash bench/device/regressors.sh [FOREXGPT_BIN] 2> regressors.log
#   FOREXGPT_BIN: release binary built with cargo build --release -p forexgpt-cli --features cuda;
#   default $FOREXGPT_BIN, else `forexgpt` on PATH.
#   Env: REPEATS (timed runs of ours, default 3), PEER_REPEATS (of the peers, default 3),
#   FOREXGPT_TEST_DEVICES (e.g. cpu,cuda: limits the devices benchmarked),
#   FOREXGPT_LOG (default: the debug timings of the products and fits, on stderr).
#   Needs python3 with numpy and scikit-learn; the PyTorch peer runs when torch imports.
#
# Not part of this script: the accuracy tests the third round ran in the same call, i.e.
#   FOREXGPT_TEST_DEVICES=cpu,cuda cargo test --release -p forexgpt-kernels --features cuda cublas
#   cargo test --release -p forexgpt-regressors --features cuda --test golden_sklearn
set -euo pipefail
source "$(dirname "$0")/common.sh"

repeats="${REPEATS:-3}"
peer_repeats="${PEER_REPEATS:-3}"
export FOREXGPT_LOG="${FOREXGPT_LOG:-forexgpt_engine=info,forexgpt_device=debug,forexgpt_kernels=debug,forexgpt_regressors=debug}"
dir="$tmp/reg"

heading "forexgpt bench --suite regressors --size large --repeats $repeats --export-data DIR"
fx bench --suite regressors --size large --repeats "$repeats" --export-data "$dir"

heading "scikit-learn peer"
python3 "$(dirname "$0")/../peers/regressors_sklearn.py" "$dir" "$peer_repeats"
peers=("$dir/sklearn_results.json")

if has_python_module torch; then
  heading "PyTorch peer"
  python3 "$(dirname "$0")/../peers/regressors_torch.py" "$dir" "$peer_repeats"
  peers+=("$dir/torch_results.json")
else
  echo "torch does not import: PyTorch peer skipped" >&2
fi

fx bench add-peers 1 "${peers[@]}" >/dev/null

heading "bench show 1 --format markdown"
fx bench show 1 --format markdown

heading "forexgpt train --encoder none,pca --regressor ridge,lasso,elasticnet --device cuda (sample series, fresh process)"
timed fx train --encoder none,pca --regressor ridge,lasso,elasticnet --device cuda \
  || echo "train on CUDA exited with $?"
