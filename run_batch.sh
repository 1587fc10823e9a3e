#!/usr/bin/env bash
# The nightly entry point.
#   ./run_batch.sh [--date YYYY-MM-DD] [--input GLOB]... [--output DIR] [any pipeline option...]
# With no arguments: the shipped sample logs, the embedded default model, output in ./out.
# The terminal gets the job's own lines and progress (--verbose: everything); the full log is OUT/_runs/<run_id>.log.
# The exit status says what kind of failure a run ended with (pipelines/job/exit_codes.py).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${RSAFE_PYTHON:-$HERE/.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
  echo "run_batch.sh: $PYTHON not found; install first: bash scripts/install.sh" >&2
  exit 2
fi

args=("$@")
has_option() {
  local name="$1" arg
  for arg in "${args[@]+"${args[@]}"}"; do
    case "$arg" in "--$name" | "--$name="* | "--${name//-/_}" | "--${name//-/_}="*) return 0 ;; esac
  done
  return 1
}
has_option input || args+=(--input "$HERE/samples/logs/*.parquet")
has_option output || args+=(--output "$HERE/out")

export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m pipelines.nightly "${args[@]}"
