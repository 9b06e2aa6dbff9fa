#!/usr/bin/env bash
# The README's test command: set up a virtual environment with the dev extra, lint, run the suite, then run
# Keras's own test files against lamina (issue 13; the Keras sdist is fetched from the package index once).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q -e ".[dev,mpi]"
.venv/bin/ruff check src tests benchmarks examples
KERAS_BACKEND=torch .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
# Keras's own tests, with the issue's gate: 95 % of those that run must pass (status 1 below it). Status 2 means the
# harness could not run at all (the Keras sdist could not be fetched): said loudly, not counted as a pass.
if [ "$#" -eq 0 ] && [ "${LAMINA_SKIP_KERAS_SUITE:-0}" != "1" ]; then
  status=0
  .venv/bin/python scripts/keras_suite.py --top 15 --min-pass-rate 0.95 || status=$?
  if [ "$status" -eq 2 ]; then
    echo "WARNING: Keras's test suite did NOT run (see the reason above); this run checked lamina's own tests only." >&2
  elif [ "$status" -ne 0 ]; then
    exit "$status"
  fi
fi
