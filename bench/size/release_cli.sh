#!/usr/bin/env bash
# Builds the release CLI with CUDA + wgpu + CPU (unstripped, to read its symbols), reports
# its stripped size and where the bytes go. Extra arguments go to cargo (e.g. --config
# 'profile.release.lto="fat"'). Runs on any Linux machine: CUDA is loaded at run time.
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -p forexgpt-cli --features cuda \
    --config 'profile.release.strip=false' "$@"
bin="$target/release/forexgpt"
strip -o "$bin.stripped" "$bin"
echo "stripped: $(stat -c %s "$bin.stripped") bytes ($(( $(stat -c %s "$bin.stripped") / 1048576 )) MiB)"
size -A "$bin" | sort -k2 -n -r | head -8
python3 bench/size/symbol_sizes.py "$bin" | head -25
