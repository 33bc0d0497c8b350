"""Bootstrap intervals of the map combined over runs (issue 17).

Runs are independent given θ̃, so the combined MAP sums their log-likelihoods. A
resample of the combination resamples every run on its own (local periodogram
bootstrap, :mod:`bids_app.bootstrap.periodogram`; the same draws for every vertex within
a run, independent draws across runs), summarises each run's resampled periodogram,
sums the runs' log-likelihoods and refits the combined MAP (κ, τ² fixed). Refits,
cache, calibration and intervals are those of :func:`bids_app.bootstrap.double.run_plan`.

Only the local scheme: the runs' periodograms are what the combination keeps of each
run (:class:`bids_app.inference.hemisphere.RunLikelihood`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from os import PathLike

import numpy as np
import scipy.sparse as sp

from bids_app.bootstrap.cache import array_digest
from bids_app.bootstrap.double import (
    BootstrapResult,
    LocalPlan,
    ResamplingPlan,
    local_bootstrap,
    resample_rng,
    run_plan,
)
from bids_app.bootstrap.periodogram import HALF_WIDTH, LocalPeriodogramBootstrap
from bids_app.bootstrap.periodogram_refit import periodogram_summaries
from bids_app.config import default
from bids_app.errors import InputValidationError
from bids_app.inference.hemisphere import RunLikelihood, summed_loglik
from bids_app.inference.refit import refit_map, refit_options


@dataclass(frozen=True)
class MultiRunPlan(ResamplingPlan):
    """Local periodogram bootstrap of each run; the data are the runs' periodograms side
    by side, (V, Σ ⌊T_i/2⌋)."""

    plans: tuple[LocalPeriodogramBootstrap, ...]

    @property
    def half_width(self) -> int:
        return self.plans[0].half_width

    @property
    def token(self) -> str:
        return "multirun|" + "|".join(LocalPlan(p).token for p in self.plans)

    @property
    def edges(self) -> np.ndarray:
        """Column where each run's ordinates start, and the total."""
        return np.cumsum([0] + [p.n_frames // 2 for p in self.plans])

    def prepare(self, powers: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(p, dtype=np.float64) for p in powers], axis=1)

    def resamples(self, data: np.ndarray, seed: int, b: int, rs: list[int]
                  ) -> Iterator[tuple[int, np.ndarray]]:
        """Outer resample ``b`` (r = 0) or its inner resamples, run by run; each run's
        outer resample and its inner spectrum are drawn once for all of them."""
        edges = self.edges
        runs = [data[:, edges[i]:edges[i + 1]] for i in range(len(self.plans))]
        originals = [plan.spectrum(run) for plan, run in zip(self.plans, runs, strict=True)]
        outers = [plan.resample(run, resample_rng(seed, b, 0, i), originals[i])
                  for i, (plan, run) in enumerate(zip(self.plans, runs, strict=True))]
        spectra = [plan.inner_spectrum(part, original) if any(rs) else None
                   for plan, part, original in zip(self.plans, outers, originals, strict=True)]
        for r in rs:
            yield r, np.concatenate(outers if r == 0 else [
                plan.resample(part, resample_rng(seed, b, r, i), spectra[i])
                for i, (plan, part) in enumerate(zip(self.plans, outers, strict=True))], axis=1)

    def fit(self, refit, sample: np.ndarray) -> np.ndarray:
        return refit.fit_periodogram(sample)


@dataclass
class CombinedRefit:
    """Refit the combined MAP from the runs' periodograms side by side: each run's
    summary and log-likelihood as in its point estimate, summed, MAP at the combined
    (κ, τ²) warm-started at the combined estimate."""

    runs: list[RunLikelihood]
    precision: sp.spmatrix
    theta_t0: np.ndarray
    observed: np.ndarray | None = None
    map_options: dict = field(default_factory=dict)

    @property
    def cache_token(self) -> str:
        q = sp.csr_matrix(self.precision)
        parts = [run.cache_token for run in self.runs]
        parts += [array_digest(q.data), array_digest(q.indices),
                  array_digest(np.asarray(self.theta_t0)),
                  repr(sorted(refit_options(self.map_options).items())),
                  "all" if self.observed is None else array_digest(np.asarray(self.observed))]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def fit_periodogram(self, power: np.ndarray) -> np.ndarray:
        """Latent combined MAP (V, P) of one resample of every run."""
        edges = np.cumsum([0] + [run.n_frames // 2 for run in self.runs])
        logliks = [run.loglik(periodogram_summaries(run.surrogate, power[:, edges[i]:edges[i + 1]],
                                                    run.tr, run.n_frames, run.n_regressors))
                   for i, run in enumerate(self.runs)]
        return refit_map(summed_loglik(logliks), self, self.cache_token)


def combined_bootstrap(
    refit: CombinedRefit,
    mode: str = default("bootstrap"),
    B: int = default("n_boot"),
    R: int = default("n_inner"),
    seed: int = default("random_seed"),
    half_width: int = HALF_WIDTH,
    n_jobs: int = 1,
    cache_dir: str | PathLike | None = None,
    client: object | None = None,
    progress: bool = True,
) -> BootstrapResult:
    """Bootstrap SE and (calibrated) intervals of the latent map combined over runs.

    ``refit.runs`` are the runs restricted to the combined map's vertices (same rows,
    each with its periodograms ``power``); ``refit.theta_t0`` is the combined latent MAP
    before any bias shift, the centre of the intervals and the warm start of every
    refit. Other arguments as in :func:`bids_app.bootstrap.double_bootstrap`.
    """
    theta_t_hat = np.asarray(refit.theta_t0, dtype=float)
    for run in refit.runs:
        if run.power is None or np.shape(run.power) != (len(theta_t_hat), run.n_frames // 2):
            raise InputValidationError(
                f"combined bootstrap: a run's periodograms are "
                f"{None if run.power is None else np.shape(run.power)}, expected "
                f"({len(theta_t_hat)}, {run.n_frames // 2})")
    plan = MultiRunPlan(tuple(local_bootstrap(run, run.n_frames, run.tr, half_width)
                              for run in refit.runs))
    powers = [run.power for run in refit.runs]
    return run_plan(plan, refit, powers, theta_t_hat,
                    key=[*powers, *(run.tr for run in refit.runs)], mode=mode, B=B, R=R,
                    seed=seed, n_jobs=n_jobs, cache_dir=cache_dir, client=client,
                    progress=progress)
