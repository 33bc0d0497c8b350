"""The refit each bootstrap resample goes through: clean → summary → MAP (κ, τ² fixed).

The workflow builds one :class:`MapRefit` after its point estimate and hands it to
:func:`bids_app.bootstrap.double_bootstrap`; it is a plain picklable object so joblib
and Dask workers can run it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from bids_app.digest import array_digest
from bids_app.inference import fit_map
from bids_app.preprocess import Preprocessing, clean
from bids_app.prior import SparseCholesky

# Vertices cleaned per call (see clean_by_rows).
CLEAN_ROWS = 1024
# How every refit's MAP differs from fit_map's defaults: no evidence, so no exact
# log-determinant at the mode, and so no exact curvature once it proved indefinite; and
# it stops when the Newton decrement λ (the distance left to the mode in the metric of
# the posterior precision) is at most 0.1 (λ²/2 ≤ 5e-3 nats), with CG directions to a
# relative residual of 1e-2, where the point estimate asks for 1e-4 in both: a refit
# only has to land well inside its own sampling spread (what it moves and saves:
# benchmarks/RESULTS.md, "refit tolerances").
REFIT_OPTIONS = {"laplace": False, "keep_floor": True, "ftol": 5e-3, "cg_rtol": 1e-2}


@dataclass
class MapRefit:
    """Re-fit a resampled block of cleaned series exactly like the point estimate.

    Attributes
    ----------
    surrogate : object
        From :func:`bids_app.surrogate.load_surrogate` (``.preprocessing``,
        ``.summarize``, ``.loglik``, ``.card``).
    precision : scipy.sparse matrix (V, V)
        Prior precision Q(κ̂, τ̂²) at the hyperparameters of the point estimate.
    theta_t0 : array (V, P)
        Warm start: the latent MAP estimate on the original data.
    tr : float
        Repetition time in s.
    observed : array of bool (V,), optional
        Vertices with usable data, as given to the point estimate's MAP.
    map_options : dict
        Extra scalar keyword arguments of :func:`bids_app.inference.fit_map`
        (default there, except :data:`REFIT_OPTIONS`).
    n_regressors : int
        Confound columns removed from the original run; resamples of its cleaned series
        are summarised as such series (the surrogate is conditioned on the count).
    noise_ar : float, optional
        The run's noise AR(1) coefficient selected with the point estimate, for
        surrogates told it; fixed in refits like κ and τ².

    Notes
    -----
    A resample of cleaned series has drift and high-pass content again (block joins)
    and is no longer exactly z-scored, so it is cleaned again with the surrogate's
    recipe, without the low-pass: the data were low-passed once already and a second
    pass would sharpen the filter beyond what the surrogate was trained on.

    The sparse Cholesky analysis of D + Q is done once per worker process and reused
    by every refit that process runs (the pattern never changes).
    """

    surrogate: Any
    precision: sp.spmatrix
    theta_t0: np.ndarray
    tr: float
    observed: np.ndarray | None = None
    map_options: dict = field(default_factory=dict)
    n_regressors: int = 0
    noise_ar: float | None = None

    @property
    def cache_token(self) -> str:
        """Identifies the refit's settings for the bootstrap cache key."""
        card = getattr(self.surrogate, "card", {}) or {}
        q = sp.csr_matrix(self.precision)
        parts = [str(card.get("sha256", card.get("id", ""))), array_digest(q.data),
                 array_digest(q.indices), array_digest(np.asarray(self.theta_t0)),
                 repr(float(self.tr)), repr(sorted(refit_options(self.map_options).items())),
                 str(self.n_regressors), repr(self.noise_ar),
                 "all" if self.observed is None else array_digest(np.asarray(self.observed))]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """Latent MAP (V, P) of a resampled (V, T) block."""
        spec = replace(self.surrogate.preprocessing, lowpass=None)
        y_clean = clean_by_rows(y, self.tr, spec)
        summaries = self.surrogate.summarize(y_clean, self.tr, self.n_regressors)
        loglik = self.surrogate.loglik(summaries, self.tr, y_clean.shape[1], self.n_regressors,
                                       noise_ar=self.noise_ar)
        return refit_map(loglik, self, self.cache_token)


def refit_map(loglik, refit, token: str) -> np.ndarray:
    """Latent MAP (V, P) of a resample's log-likelihood with ``refit``'s precision, warm
    start, observed vertices and MAP options (κ, τ² fixed; :data:`REFIT_OPTIONS`).
    The sparse analysis of D + Q is kept per process for the refit setting ``token``."""
    if token not in _CHOLESKY:
        _CHOLESKY.clear()  # keep one: a process runs one hemisphere at a time
        _CHOLESKY[token] = SparseCholesky()
    result = fit_map(loglik, refit.precision, refit.theta_t0, chol=_CHOLESKY[token],
                     observed=refit.observed, **refit_options(refit.map_options))
    return np.asarray(result.theta_t)


def refit_options(map_options: dict) -> dict:
    """The keyword arguments of a refit's :func:`fit_map`: :data:`REFIT_OPTIONS` unless
    ``map_options`` says otherwise (the bootstrap cache key holds them too)."""
    return {**REFIT_OPTIONS, **map_options}


def clean_by_rows(y: np.ndarray, tr: float, spec: Preprocessing,
                  rows: int = CLEAN_ROWS) -> np.ndarray:
    """:func:`bids_app.preprocess.clean` applied ``rows`` vertices at a time.

    Cleaning works row by row, so the output is bit-identical to one call on the whole
    block, but the float64 temporaries of a block of ~1,000 rows stay in cache instead
    of streaming ~0.3 GB each through memory: on fsLR 32k (1,200 frames) it takes a
    third of the CPU time of the single call (0.7 vs 2.3 CPU-s), and cleaning was
    half of a refit's cost.
    """
    out = np.empty(np.shape(y), dtype=np.float32)
    for start in range(0, out.shape[0], rows):
        out[start:start + rows] = clean(y[start:start + rows], tr, spec)
    return out


# One factorisation object per refit setting and worker process (not pickled: CHOLMOD
# factors do not pickle, and each process needs its own).
_CHOLESKY: dict[str, SparseCholesky] = {}
