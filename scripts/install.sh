#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment from the lock files.
# Idempotent: a stamp keyed on the lock files skips work already done.
# Usage: bash scripts/install.sh [--dev] [--deps-only]
#   --deps-only  only the locked dependencies, not the package: the image installs them in
#                a layer of their own, before the sources are copied, so a source edit
#                does not reinstall torch or recompile scikit-sparse
# The container build (Dockerfile) runs this same script, with these variables:
#   HEMOCOUPLING_VENV         where the environment goes (default .venv)
#   HEMOCOUPLING_TORCH_INDEX  a wheel index to take the locked torch from first
#                             (the image uses PyTorch's CPU-only index)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${HEMOCOUPLING_VENV:-.venv}
locks=(requirements.lock)
deps_only=0
for arg in "$@"; do
    case $arg in
        --dev) locks+=(requirements-dev.lock) ;;
        --deps-only) deps_only=1 ;;
        *) echo "install: unknown option $arg (use --dev, --deps-only)" >&2; exit 64 ;;
    esac
done

# CHOLMOD (SuiteSparse) makes the sparse Cholesky several times faster; it is
# optional, so a machine where it cannot be installed still gets a working app.
# Debian's CHOLMOD calls the system BLAS, which is the slow reference BLAS unless an
# optimised one is installed: OpenBLAS halves each factorisation (0.65 -> 0.35 s on fsLR 32k).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    && { [ ! -f /usr/include/suitesparse/cholmod.h ] || ! dpkg -s libopenblas0-pthread >/dev/null 2>&1; }; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        libsuitesparse-dev libopenblas0-pthread >/dev/null; } \
        || echo "install: libsuitesparse-dev/OpenBLAS unavailable; CHOLMOD may be missing (SuperLU) or slower" >&2
fi

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# Stamps keyed on what each step reads: the lock files for the dependencies, and with
# pyproject.toml for the package.
deps_stamp="$venv/.deps-$(cat "${locks[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$deps_stamp" ]; then
    "$venv/bin/python" -m pip install -q --upgrade "pip==26.3"
    if [ -n "${HEMOCOUPLING_TORCH_INDEX:-}" ]; then
        "$venv/bin/python" -m pip install -q --no-deps --index-url "$HEMOCOUPLING_TORCH_INDEX" \
            "$(grep -E '^torch==' requirements.lock)"
    fi
    for lock in "${locks[@]}"; do "$venv/bin/python" -m pip install -q -r "$lock"; done
    if [ -f /usr/include/suitesparse/cholmod.h ]; then
        "$venv/bin/python" -m pip install -q "scikit-sparse==0.4.16" \
            || echo "install: scikit-sparse failed to build; using SciPy's SuperLU" >&2
    fi
    touch "$deps_stamp"
fi
[ "$deps_only" = 1 ] && exit 0
stamp="$venv/.installed-$(cat "${locks[@]}" pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    "$venv/bin/python" -m pip install -q --no-deps -e .
    touch "$stamp"
fi
