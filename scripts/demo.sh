#!/usr/bin/env bash
# The README's main job: install lamina in a virtual environment and run `lamina demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q -e .
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${LAMINA_DATA:-}" ] && command -v apt-get >/dev/null \
   && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) || true
fi
.venv/bin/lamina demo "$@"
