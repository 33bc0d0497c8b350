"""Bootstrap intervals of the map combined over runs (issue 17, Build 3).

Runs are independent given θ̃, so the combined MAP sums their log-likelihoods. A
resample of the combination resamples every run on its own (local periodogram
bootstrap, :mod:`bids_app.bootstrap.periodogram`; the same draws for every vertex within
a run, independent draws across runs), summarises each run's resampled periodogram,
sums the runs' log-likelihoods and refits the combined MAP (κ, τ² fixed). Refits,
cache, calibration and intervals are those of :func:`bids_app.bootstrap.double.run_plan`.

Array level only: the caller restricts every run to the vertices the combined map was
fitted on (rows in the same order) and passes the combined prior precision and MAP.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np
import scipy.sparse as sp

from bids_app.bootstrap.cache import array_digest
from bids_app.bootstrap.double import BootstrapResult, LocalPlan, _rng, cleaning_recipe, run_plan
from bids_app.bootstrap.periodogram import HALF_WIDTH, LocalPeriodogramBootstrap, cleaning_gain
from bids_app.bootstrap.periodogram_refit import PeriodogramRefit
from bids_app.errors import InputValidationError
from bids_app.inference import fit_map
from bids_app.inference.hemisphere import summed_loglik
from bids_app.prior import SparseCholesky


@dataclass
class RunModel:
    """How one run's periodogram becomes its log-likelihood (as in its point estimate).

    Attributes
    ----------
    surrogate : object
        From :func:`bids_app.surrogate.load_surrogate` (its cleaning recipe sets which
        ordinates are resampled).
    tr : float
        Repetition time in s.
    n_frames : int
        Frames of the run.
    n_regressors : int
        Confound columns removed from the run.
    noise_ar : float, optional
        The run's selected noise AR(1) coefficient.
    """

    surrogate: Any
    tr: float
    n_frames: int
    n_regressors: int = 0
    noise_ar: float | None = None

    @property
    def cache_token(self) -> str:
        card = getattr(self.surrogate, "card", {}) or {}
        return "|".join([str(card.get("sha256", card.get("id", ""))), repr(float(self.tr)),
                         str(self.n_frames), str(self.n_regressors), repr(self.noise_ar)])


@dataclass(frozen=True)
class MultiRunPlan:
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

    def prepare(self, y_cleans: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([p.periodogram(y)
                               for p, y in zip(self.plans, y_cleans, strict=True)], axis=1)

    def resample(self, data: np.ndarray, seed: int, b: int, r: int) -> np.ndarray:
        """Outer resample ``b`` (r = 0) or its inner resample ``r``, run by run."""
        edges, parts = self.edges, []
        for i, plan in enumerate(self.plans):
            part = plan.resample(data[:, edges[i]:edges[i + 1]], _rng(seed, b, 0, i))
            parts.append(plan.resample(part, _rng(seed, b, r, i)) if r else part)
        return np.concatenate(parts, axis=1)

    def fit(self, refit, sample: np.ndarray) -> np.ndarray:
        return refit.fit_periodogram(sample)


@dataclass
class CombinedRefit:
    """Refit the combined MAP from the runs' periodograms side by side."""

    runs: list[RunModel]
    precision: sp.spmatrix
    theta_t0: np.ndarray
    observed: np.ndarray | None = None
    map_options: dict = field(default_factory=dict)

    @property
    def cache_token(self) -> str:
        q = sp.csr_matrix(self.precision)
        parts = [run.cache_token for run in self.runs]
        parts += [array_digest(q.data), array_digest(q.indices),
                  array_digest(np.asarray(self.theta_t0)), repr(sorted(self.map_options.items())),
                  "all" if self.observed is None else array_digest(np.asarray(self.observed))]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def fit_periodogram(self, power: np.ndarray) -> np.ndarray:
        """Latent combined MAP (V, P) of one resample of every run."""
        edges = np.cumsum([0] + [run.n_frames // 2 for run in self.runs])
        logliks = []
        for i, run in enumerate(self.runs):
            summaries = PeriodogramRefit(run, run.n_frames).summaries(
                power[:, edges[i]:edges[i + 1]])
            logliks.append(run.surrogate.loglik(summaries, run.tr, run.n_frames,
                                                run.n_regressors, noise_ar=run.noise_ar))
        total = summed_loglik(logliks)

        token = self.cache_token
        if token not in _CHOLESKY:
            _CHOLESKY.clear()
            _CHOLESKY[token] = SparseCholesky()
        options = {"laplace": False, **self.map_options}
        result = fit_map(total, self.precision, self.theta_t0, chol=_CHOLESKY[token],
                         observed=self.observed, **options)
        return np.asarray(result.theta_t)


def combined_bootstrap(
    y_cleans: list[np.ndarray],
    runs: list[RunModel],
    precision: sp.spmatrix,
    theta_t_hat: np.ndarray,
    observed: np.ndarray | None = None,
    map_options: dict | None = None,
    mode: str = "double",
    B: int = 100,
    R: int = 10,
    seed: int = 0,
    half_width: int = HALF_WIDTH,
    n_jobs: int = 1,
    cache_dir: str | PathLike | None = None,
    client: object | None = None,
    progress: bool = True,
) -> BootstrapResult:
    """Bootstrap SE and (calibrated) intervals of the latent map combined over runs.

    Parameters
    ----------
    y_cleans : list of arrays (V, T_i)
        Each run's cleaned series at the combined map's vertices (same rows).
    runs : list of RunModel
        Each run's surrogate and protocol, as in its point estimate.
    precision : sparse (V, V)
        Prior precision at the combined estimate's (κ, τ²).
    theta_t_hat : array (V, P)
        The combined latent MAP (before any bias shift); the warm start of every refit.
    observed, map_options
        As given to the combined MAP.
    Other arguments as in :func:`bids_app.bootstrap.double_bootstrap` (local scheme).
    """
    theta_t_hat = np.asarray(theta_t_hat, dtype=float)
    if len(y_cleans) != len(runs) or not runs:
        raise InputValidationError(f"combined bootstrap needs one model per run, got "
                                   f"{len(y_cleans)} runs and {len(runs)} models")
    for y, run in zip(y_cleans, runs, strict=True):
        if np.shape(y) != (theta_t_hat.shape[0], run.n_frames):
            raise InputValidationError(f"a run's series are {np.shape(y)}, expected "
                                       f"({theta_t_hat.shape[0]}, {run.n_frames})")
    plan = MultiRunPlan(tuple(
        LocalPeriodogramBootstrap(run.n_frames,
                                  cleaning_gain(run.n_frames, run.tr, cleaning_recipe(run)),
                                  int(half_width))
        for run in runs))
    refit = CombinedRefit(runs, precision, theta_t_hat, observed, dict(map_options or {}))
    return run_plan(plan, refit, list(y_cleans), theta_t_hat,
                    key=[*y_cleans, *(run.tr for run in runs)], mode=mode, B=B, R=R,
                    seed=seed, n_jobs=n_jobs, cache_dir=cache_dir, client=client,
                    progress=progress)


# One factorisation object per refit setting and worker process.
_CHOLESKY: dict[str, SparseCholesky] = {}
