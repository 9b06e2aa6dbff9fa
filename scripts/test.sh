#!/usr/bin/env bash
# The README's test command: set up a virtual environment with the dev extra and run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q -e ".[dev,mpi]"
.venv/bin/ruff check src tests benchmarks examples
KERAS_BACKEND=torch .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
