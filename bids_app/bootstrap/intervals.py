"""Bootstrap intervals of one hemisphere's latent MAP, in the reported parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bids_app.bootstrap.combined import CombinedRefit, combined_bootstrap
from bids_app.bootstrap.double import BootstrapResult, double_bootstrap
from bids_app.bootstrap.natural import MapInterval, natural_intervals
from bids_app.config import default
from bids_app.models import HRFModel


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

    def run(client):
        return double_bootstrap(y_clean, refit, theta_t, tr, mode=options.mode,
                                B=options.n_boot, R=options.n_inner,
                                block_s=options.block_length, resampling=options.resampling,
                                seed=seed, n_jobs=options.n_jobs, cache_dir=cache_dir,
                                client=client, progress=options.progress)

    return reported(with_scheduler(options, run), theta_t, shift, refit.surrogate.model)


def combined_intervals(refit: CombinedRefit, shift: np.ndarray, options: BootstrapOptions,
                       seed: int, cache_dir: Path | None, model: HRFModel
                       ) -> tuple[dict[str, MapInterval], dict[str, Any]]:
    """As :func:`bootstrap_intervals` for the map combined over runs (each run resampled
    by the local scheme, the summed likelihood refitted: :mod:`bids_app.bootstrap.combined`)."""
    def run(client):
        return combined_bootstrap(refit, mode=options.mode, B=options.n_boot,
                                  R=options.n_inner, seed=seed, n_jobs=options.n_jobs,
                                  cache_dir=cache_dir, client=client, progress=options.progress)

    return reported(with_scheduler(options, run), refit.theta_t0, shift, model)


def with_scheduler(options: BootstrapOptions, run: Callable[[Any], BootstrapResult]
                   ) -> BootstrapResult:
    """``run(client)`` on the Dask scheduler the options name, else with local workers."""
    if not options.dask_scheduler:
        return run(None)
    from distributed import Client

    with Client(options.dask_scheduler) as client:
        return run(client)


def reported(result: BootstrapResult, theta_t: np.ndarray, shift: np.ndarray,
             model: HRFModel) -> tuple[dict[str, MapInterval], dict[str, Any]]:
    """The reported maps' intervals, moved by −``shift`` with the estimate, and the
    sidecar record."""
    return (natural_intervals(shift_result(result, shift), theta_t - shift, model),
            result.sidecar())


def shift_result(result: BootstrapResult, shift: np.ndarray) -> BootstrapResult:
    """Bootstrap intervals and draws moved by −shift (the SEs are unchanged)."""
    return replace(result, lower=result.lower - shift, upper=result.upper - shift,
                   draws=(result.draws - shift[None]).astype(result.draws.dtype))
