#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment from the lock files.
# Idempotent: a stamp keyed on the lock files skips work already done.
# Usage: bash scripts/install.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${HEMOCOUPLING_VENV:-.venv}
locks=(requirements.lock)
[ "${1:-}" = "--dev" ] && locks+=(requirements-dev.lock)

# CHOLMOD (SuiteSparse) makes the sparse Cholesky several times faster; it is
# optional, so a machine where it cannot be installed still gets a working app.
if [ ! -f /usr/include/suitesparse/cholmod.h ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsuitesparse-dev >/dev/null; } \
        || echo "install: libsuitesparse-dev unavailable; using SciPy's SuperLU instead of CHOLMOD" >&2
fi

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
stamp="$venv/.installed-$(cat "${locks[@]}" pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    "$venv/bin/python" -m pip install -q --upgrade "pip==26.3"
    for lock in "${locks[@]}"; do "$venv/bin/python" -m pip install -q -r "$lock"; done
    if [ -f /usr/include/suitesparse/cholmod.h ]; then
        "$venv/bin/python" -m pip install -q "scikit-sparse==0.4.16" \
            || echo "install: scikit-sparse failed to build; using SciPy's SuperLU" >&2
    fi
    "$venv/bin/python" -m pip install -q --no-deps -e .
    touch "$stamp"
fi
