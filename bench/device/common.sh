# Sourced by the scripts in bench/device/ (not run on its own). Sets:
#
#   bin  the forexgpt release binary: the script's first argument, else $FOREXGPT_BIN, else
#        `forexgpt` on PATH (build: cargo build --release -p forexgpt-cli --features cuda)
#   tmp  a fresh scratch folder (mktemp -d) for exported data, models and the database;
#        removed on exit unless KEEP_TMP=1
#   db   "$tmp/bench.sqlite", a throwaway database: the first stored benchmark run is #1
#   fx   runs the binary on that database and a models folder inside $tmp
#
# Results go to stdout; progress bars and FOREXGPT_LOG output go to stderr.

bin="${1:-${FOREXGPT_BIN:-forexgpt}}"
if ! command -v "$bin" >/dev/null 2>&1; then
  echo "forexgpt binary not found: '$bin' (pass its path as the first argument or set FOREXGPT_BIN;" >&2
  echo "build it with: cargo build --release -p forexgpt-cli --features cuda)" >&2
  exit 2
fi
tmp="$(mktemp -d)"
if [[ "${KEEP_TMP:-0}" == 1 ]]; then
  echo "scratch folder kept: $tmp" >&2
else
  trap 'rm -rf "$tmp"' EXIT
fi
db="$tmp/bench.sqlite"

fx() {
  "$bin" --db "$db" --models-dir "$tmp/models" "$@"
}

# has_python_module NAME: whether python3 can import NAME.
has_python_module() {
  python3 -c "import $1" >/dev/null 2>&1
}

# heading TEXT: a markdown heading on stdout, to separate the parts of a script's output.
heading() {
  printf '\n### %s\n\n' "$*"
}

# timed CMD...: runs CMD, prints its wall time on stdout, and returns CMD's exit status.
timed() {
  local start end status=0
  start="$(date +%s.%N)"
  "$@" || status=$?
  end="$(date +%s.%N)"
  awk -v s="$start" -v e="$end" 'BEGIN { printf "wall time: %.2f s\n", e - s }'
  return "$status"
}
