"""Bootstrap intervals of one hemisphere's latent MAP, in the reported parameters."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bids_app.bootstrap.double import BootstrapResult, double_bootstrap
from bids_app.bootstrap.natural import MapInterval, natural_intervals
from bids_app.config import default


@dataclass(frozen=True)
class BootstrapOptions:
    """How to resample: ``mode`` "none", "single" or "double"; ``n_boot`` outer and
    ``n_inner`` inner resamples; ``resampling`` "local" (periodogram) or "block" (time)
    and the block scheme's mean block length in s; workers (or a Dask scheduler
    address); whether to show progress."""

    mode: str = default("bootstrap")
    n_boot: int = default("n_boot")
    n_inner: int = default("n_inner")
    resampling: str = default("resampling")
    block_length: float = default("block_length")
    n_jobs: int = 1
    dask_scheduler: str | None = None
    progress: bool = False


def bootstrap_intervals(y_clean: np.ndarray, refit, shift: np.ndarray,
                        options: BootstrapOptions, seed: int, cache_dir: Path | None
                        ) -> tuple[dict[str, MapInterval], dict[str, Any]]:
    """Single or double bootstrap of the latent map (local periodogram or block scheme),
    mapped to reported parameters, and its sidecar record.

    Every resample is refitted by ``refit`` (κ, τ² and any noise colour fixed at the
    point estimate's), around its warm start, the MAP; the intervals are then moved by
    −``shift`` with the estimate (the simulated bias)."""
    theta_t, tr = refit.theta_t0, refit.tr
    kwargs = dict(mode=options.mode, B=options.n_boot, R=options.n_inner,
                  block_s=options.block_length, resampling=options.resampling, seed=seed,
                  n_jobs=options.n_jobs,
                  cache_dir=cache_dir, progress=options.progress)
    if options.dask_scheduler:
        from distributed import Client

        with Client(options.dask_scheduler) as client:
            result = double_bootstrap(y_clean, refit, theta_t, tr, client=client, **kwargs)
    else:
        result = double_bootstrap(y_clean, refit, theta_t, tr, **kwargs)
    return (natural_intervals(shift_result(result, shift), theta_t - shift, refit.surrogate.model),
            result.sidecar())


def shift_result(result: BootstrapResult, shift: np.ndarray) -> BootstrapResult:
    """Bootstrap intervals and draws moved by −shift (the SEs are unchanged)."""
    return replace(result, lower=result.lower - shift, upper=result.upper - shift,
                   draws=(result.draws - shift[None]).astype(result.draws.dtype))
