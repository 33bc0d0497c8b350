"""Worker processes and threads per process, and when the thread limits are set.

An OpenMP runtime reads OMP_THREAD_LIMIT once, when it loads, and importing
scipy.optimize loads the one CHOLMOD uses (through scikit-sparse). CHOLMOD asks for
teams of four threads whatever OMP_NUM_THREADS says; on 2 cores their idle threads cost
a fifth of a refit's time (benchmarks/RESULTS.md, OpenMP thread limit). So the command
sets the limits from its arguments before it imports anything else
(:mod:`bids_app.cli.launch`), and again once the configuration is complete
(:func:`bids_app.cli.run.apply_threads`), for the worker processes it starts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS")
NPROCS_FLAGS = ("--nprocs", "--n_cpus", "--n-cpus")
OMP_FLAGS = ("--omp-nthreads",)


def thread_counts(nprocs: int | None, omp_nthreads: int | None) -> tuple[int, int]:
    """Worker processes (default: all CPUs) and threads per process (default: the CPUs
    each worker gets, at least one)."""
    cpus = os.cpu_count() or 1
    nprocs = nprocs or cpus
    return nprocs, omp_nthreads or max(1, cpus // nprocs)


def set_thread_variables(n_threads: int) -> None:
    """Cap OpenMP and BLAS threads in this process's environment (inherited by workers)."""
    for var in THREAD_VARIABLES:
        os.environ[var] = str(n_threads)


def limit_threads_from_argv(argv: Sequence[str]) -> None:
    """Set the thread variables from ``--nprocs`` and ``--omp-nthreads`` in ``argv``
    before any library loads OpenMP or BLAS.

    Only the spelled-out flags are read (``--flag N`` or ``--flag=N``, the last one
    counting); a value the parser will reject (or an abbreviated flag, or a setting from
    ``--config-file``) leaves the environment alone here and is reported, or applied,
    once the command line is parsed.
    """
    given = [_flag_text(argv, flags) for flags in (NPROCS_FLAGS, OMP_FLAGS)]
    if any(text is not None and not _positive(text) for text in given):
        return  # the parser says what is wrong
    nprocs, omp = (int(text) if text is not None else None for text in given)
    set_thread_variables(thread_counts(nprocs, omp)[1])


def _flag_text(argv: Sequence[str], flags: Sequence[str]) -> str | None:
    """The text last given to any of ``flags``, "" when the value is missing, else None."""
    text = None
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in flags:
            text = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
    return text


def _positive(text: str) -> bool:
    return text.isdigit() and int(text) > 0
