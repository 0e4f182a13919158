#!/usr/bin/env bash
# Builds the release CLI with CUDA + wgpu + CPU (unstripped, to read its symbols), reports
# its stripped size and where the bytes go. `--profile dist` measures the shipped build;
# other arguments go to cargo too. Runs on any Linux machine: CUDA is loaded at run time.
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-target}"
profile=release
prev=""
for arg in "$@"; do
    if [ "$prev" = "--profile" ]; then profile="$arg"; fi
    prev="$arg"
done
if [ "$profile" = "release" ]; then set -- --release "$@"; fi
cargo build --locked -p forexgpt-cli --features cuda \
    --config "profile.$profile.strip=false" "$@"
bin="$target/$profile/forexgpt"
strip -o "$bin.stripped" "$bin"
echo "stripped: $(stat -c %s "$bin.stripped") bytes ($(( $(stat -c %s "$bin.stripped") / 1048576 )) MiB)"
size -A "$bin" | sort -k2 -n -r | head -8
python3 bench/size/symbol_sizes.py "$bin" > "$bin.symbols"
head -25 "$bin.symbols"
