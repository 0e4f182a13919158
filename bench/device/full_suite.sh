#!/usr/bin/env bash
# Every suite in one call at the large sizes (`bench --suite all --size large`), with every
# peer whose data the run exported (scikit-learn for the regressors and the forest, PyTorch
# for the regressors and the encoders when torch imports), in one stored table.
#
# Reproduces docs/benchmarks.md, "Full table, one call (issue 9)". That table was measured
# when `all` meant data + regressors + forecast, with the scikit-learn peer only; `all` now
# also runs the encoders (100,000 × 128, 20 epochs) and the forest (100,000 × 64 → 8,
# predicting 1,000,000 rows), so this takes much longer and the table has more rows.
#
# Run on the GPU machine: bash bench/device/full_suite.sh [FOREXGPT_BIN]
#   FOREXGPT_BIN: release binary built with cargo build --release -p forexgpt-cli --features cuda;
#   default $FOREXGPT_BIN, else `forexgpt` on PATH.
#   Env: REPEATS (default 3), PEER_REPEATS (default 3), FOREXGPT_TEST_DEVICES.
#   Needs python3 with numpy and scikit-learn (torch optional).
set -euo pipefail
source "$(dirname "$0")/common.sh"

repeats="${REPEATS:-3}"
peer_repeats="${PEER_REPEATS:-3}"
export FOREXGPT_LOG="${FOREXGPT_LOG:-forexgpt_engine=info}"
dir="$tmp/all"

heading "forexgpt bench --suite all --size large --repeats $repeats --export-data DIR"
fx bench --suite all --size large --repeats "$repeats" --export-data "$dir"

peers=()
if [[ -f "$dir/meta.json" ]]; then
  heading "scikit-learn peer (regressors)"
  python3 "$(dirname "$0")/../peers/regressors_sklearn.py" "$dir" "$peer_repeats"
  peers+=("$dir/sklearn_results.json")
  if has_python_module torch; then
    heading "PyTorch peer (regressors)"
    python3 "$(dirname "$0")/../peers/regressors_torch.py" "$dir" "$peer_repeats"
    peers+=("$dir/torch_results.json")
  fi
fi
if [[ -f "$dir/forest_meta.json" ]]; then
  heading "scikit-learn peer (forest)"
  python3 "$(dirname "$0")/../peers/forest_sklearn.py" "$dir" "$peer_repeats"
  peers+=("$dir/sklearn_forest_results.json")
fi
if [[ -f "$dir/encoder_meta.json" ]] && has_python_module torch; then
  heading "PyTorch peer (encoders)"
  python3 "$(dirname "$0")/../peers/encoders_torch.py" "$dir" "$peer_repeats"
  peers+=("$dir/torch_encoders_results.json")
fi
if ((${#peers[@]})); then
  fx bench add-peers 1 "${peers[@]}" >/dev/null
fi

heading "bench show 1 --format markdown"
fx bench show 1 --format markdown
