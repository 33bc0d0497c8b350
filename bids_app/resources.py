"""How many bootstrap worker processes fit in ``--mem``.

Each local worker (loky) imports torch and the surrogate and refits one hemisphere, so
its resident memory is a fixed part plus a part growing with the hemisphere; the main
process holds the run itself. A worker that does not fit is better not started than
killed by the scheduler half-way through a participant.
"""

from __future__ import annotations

import logging
import math

LOGGER = logging.getLogger(__name__)

# Peak RSS measured by bench_memory.py (fsaverage5 × 300 and 1,200 frames, fsLR 32k × 300)
# fitted by least squares and raised about 10 % (benchmarks/RESULTS.md, "--mem"). A
# worker grows with the vertices it refits (sparse factor) and barely with the frames;
# the main process holds the run's series and grows with vertices × frames.
MAIN_BASE_MB = 600.0
MAIN_MB_PER_MILLION_VALUES = 50.0
WORKER_BASE_MB = 600.0
WORKER_MB_PER_VERTEX = 0.007
WORKER_MB_PER_MILLION_VALUES = 5.0


def main_mb(n_vertices: int, n_frames: int) -> float:
    """Estimated peak memory (MB) of the main process for a run of this size per hemisphere."""
    return MAIN_BASE_MB + MAIN_MB_PER_MILLION_VALUES * n_vertices * n_frames / 1e6


def worker_mb(n_vertices: int, n_frames: int) -> float:
    """Estimated peak memory (MB) of one worker refitting a hemisphere of this size."""
    return (WORKER_BASE_MB + WORKER_MB_PER_VERTEX * n_vertices
            + WORKER_MB_PER_MILLION_VALUES * n_vertices * n_frames / 1e6)


def worker_count(nprocs: int, mem_mb: int | None, n_vertices: int = 0,
                 n_frames: int = 0) -> int:
    """``nprocs`` bounded by ``mem_mb`` (None: no bound): the workers whose estimated
    peaks fit beside the main process, at least one (a single worker runs in the main
    process). The bound chosen is logged."""
    if mem_mb is None:
        return nprocs
    each, main = worker_mb(n_vertices, n_frames), main_mb(n_vertices, n_frames)
    fits = max(1, math.floor((mem_mb - main) / each))
    chosen = min(nprocs, fits)
    LOGGER.info("--mem %d MB: %d worker process(es) of ~%.0f MB each beside ~%.0f MB for the "
                "main process (%d vertices x %d frames; --nprocs %d)", mem_mb, chosen, each,
                main, n_vertices, n_frames, nprocs)
    if mem_mb < main + each:
        LOGGER.warning("--mem %d MB is below the estimated need of the main process and one "
                       "worker (%.0f MB); running one worker anyway", mem_mb, main + each)
    return chosen
