#!/usr/bin/env bash
# Build the ground-truth pair sets (outputs/pairs/*.h5) of the shipped weights; see build_pairs.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
exec "$PY" pipelines/build_pairs.py "$@"
