#!/usr/bin/env bash
# Set up the environment (if needed) and run lint plus the test suite.
# Tests that need ../shared/data (real data, template meshes) skip themselves when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --dev
venv=${HEMOCOUPLING_VENV:-.venv}
export MPLBACKEND=Agg
if [ -z "${TEMPLATEFLOW_HOME:-}" ] && [ -d ../shared/data/templateflow ]; then
    export TEMPLATEFLOW_HOME=$PWD/../shared/data/templateflow TEMPLATEFLOW_AUTOUPDATE=0
fi
"$venv/bin/ruff" check bids_app tests benchmarks scripts brainlife
"$venv/bin/python" -m pytest -n 2 -q "$@"
