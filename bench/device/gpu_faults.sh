#!/usr/bin/env bash
# GPU faults (issue 22): jobs that do not fit in the GPU's memory. Another program (a PyTorch
# process, as a user's other GPU work would) holds all but FREE_MIB of the card's memory while
# forexgpt trains a random forest, ridge and an autoencoder on the sample. With an explicit
# `--device cuda` each job must fail with a typed error naming the device and the memory; with
# `--use-gpu` ("GPU if available") it must rerun on the CPU and say why, and store its model.
# Afterwards, with the memory free again, the same CUDA job must work (nothing stuck).
#
# Reproduces docs/reliability.md, "GPU faults".
#
# Run on the GPU machine: bash bench/device/gpu_faults.sh [FOREXGPT_BIN]
#   FOREXGPT_BIN: release binary built with cargo build --release -p forexgpt-cli --features cuda.
#   Env: FREE_MIB (memory left to forexgpt, default 600), FOREST_FREE_MIB (left for the
#   forest cases, default 150: the sample's forest fits in 600), TREES (default 100).
#   Needs python3 with torch (the program that takes the memory).
set -uo pipefail
source "$(dirname "$0")/common.sh"

free_mib="${FREE_MIB:-600}"
forest_free_mib="${FOREST_FREE_MIB:-150}"
trees="${TREES:-100}"
export FOREXGPT_LOG="${FOREXGPT_LOG:-forexgpt_device=info,forexgpt_engine=info}"

if ! has_python_module torch; then
  echo "gpu_faults.sh needs python3 with torch (it takes the GPU's memory)" >&2
  exit 2
fi

# The hog: takes all but $free_mib MiB of GPU 0, says so in $tmp/hog.ready, holds until killed.
cat >"$tmp/hog.py" <<'EOF'
import sys, time, torch
free, total = torch.cuda.mem_get_info(0)
keep = int(sys.argv[1]) << 20
take = max(0, free - keep)
blocks = []
chunk = 1 << 30
while take > 0:
    n = min(chunk, take)
    blocks.append(torch.empty(n, dtype=torch.uint8, device="cuda:0"))
    take -= n
torch.cuda.synchronize()
free_after, _ = torch.cuda.mem_get_info(0)
open(sys.argv[2], "w").write(f"{free_after >> 20}\n")
print(f"hog: took {(free - free_after) >> 20} MiB of {total >> 20}; {free_after >> 20} MiB free", flush=True)
while True:
    time.sleep(1)
EOF

run() {
  # run LABEL ARGS...: one forexgpt command; prints its exit status and wall time.
  local label="$1"
  shift
  heading "$label: forexgpt $*"
  timed fx "$@" 2>"$tmp/stderr"
  local status=$?
  echo "exit status: $status"
  echo "stderr (warnings and errors):"
  grep -v -E '^\s*$' "$tmp/stderr" | grep -i -E 'warn|error|fail|memory|cpu|panick' | cut -c1-400 | sort | uniq -c | sort -rn | head -12
  return 0
}

heading "setup"
fx data >/dev/null
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv

# take FREE: starts the hog leaving FREE MiB of the GPU's memory, waits until it holds it.
take() {
  rm -f "$tmp/hog.ready"
  python3 "$tmp/hog.py" "$1" "$tmp/hog.ready" &
  hog=$!
  for _ in $(seq 1 120); do [[ -s "$tmp/hog.ready" ]] && break; sleep 0.5; done
  if [[ ! -s "$tmp/hog.ready" ]]; then
    echo "the memory hog did not start" >&2
    kill "$hog" 2>/dev/null
    exit 2
  fi
  nvidia-smi --query-gpu=memory.total,memory.used,memory.free --format=csv
}
release() {
  kill "$hog"
  wait "$hog" 2>/dev/null
}

heading "$free_mib MiB left to forexgpt"
take "$free_mib"
run "devices while the memory is taken" devices
run "ridge, explicit cuda (expect a typed error)" train --encoder none --regressor ridge --device cuda
run "autoencoder, explicit cuda (expect a typed error)" train --encoder ae --regressor ridge --epochs 3 --device cuda
run "autoencoder, cuda if available (expect a rerun on the CPU, saved)" train --encoder ae --regressor ridge --epochs 3 --device cuda --use-gpu
release

# A forest of the sample needs little memory (it fitted in 600 MiB): leave it less.
heading "$forest_free_mib MiB left to forexgpt"
take "$forest_free_mib"
run "forest, explicit cuda (expect a typed error)" train --encoder none --regressor rf --trees "$trees" --device cuda
run "forest, cuda if available (expect a rerun on the CPU, saved)" train --encoder none --regressor rf --trees "$trees" --device cuda --use-gpu
run "forest bench, small (expect the GPU rows to fail by name, the CPU rows to stand)" bench --suite forest --size small --repeats 1 --no-store
release
heading "memory free again"
nvidia-smi --query-gpu=memory.total,memory.used,memory.free --format=csv
run "forest, explicit cuda, after the fault" train --encoder none --regressor rf --trees "$trees" --device cuda
run "autoencoder, explicit cuda, after the fault" train --encoder ae --regressor ridge --epochs 3 --device cuda
heading "models stored"
fx models
