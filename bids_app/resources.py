"""How many bootstrap worker processes fit in ``--mem``.

Each local worker (loky) imports torch and the surrogate and refits one hemisphere, so
its resident memory is a fixed part plus a part growing with the hemisphere's data
(vertices × frames); the main process holds the run itself. The figures are peak RSS
measured by ``benchmarks/bench_memory.py`` (benchmarks/RESULTS.md, "--mem"), rounded up.
"""

from __future__ import annotations

import logging
import math

LOGGER = logging.getLogger(__name__)

MAIN_MB = 800.0
"""Peak of the main process on one fsaverage5 run (bench_memory.py: 696 MB)."""
WORKER_BASE_MB = 500.0
"""A worker's memory before data: interpreter, numpy, torch, surrogate."""
WORKER_MB_PER_MILLION_VALUES = 50.0
"""A worker's growth per million (vertex, frame) values of the hemisphere it refits."""


def worker_mb(n_vertices: int, n_frames: int) -> float:
    """Estimated peak memory (MB) of one worker refitting a hemisphere of this size."""
    return WORKER_BASE_MB + WORKER_MB_PER_MILLION_VALUES * n_vertices * n_frames / 1e6


def worker_count(nprocs: int, mem_mb: int | None, n_vertices: int = 0,
                 n_frames: int = 0) -> int:
    """``nprocs`` bounded by ``mem_mb`` (None: no bound): the workers whose estimated
    peaks fit beside the main process, at least one (a single worker runs in the main
    process). The bound chosen is logged."""
    if mem_mb is None:
        return nprocs
    each = worker_mb(n_vertices, n_frames)
    fits = max(1, math.floor((mem_mb - MAIN_MB) / each))
    chosen = min(nprocs, fits)
    LOGGER.info("--mem %d MB: %d worker process(es) of ~%.0f MB each beside ~%.0f MB for the "
                "main process (%d vertices x %d frames; --nprocs %d)", mem_mb, chosen, each,
                MAIN_MB, n_vertices, n_frames, nprocs)
    if fits < nprocs and (mem_mb - MAIN_MB) < each:
        LOGGER.warning("--mem %d MB is below the estimated need of one worker (%.0f MB) and "
                       "the main process; running one worker anyway", mem_mb, each + MAIN_MB)
    return chosen
