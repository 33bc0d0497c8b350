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

from bids_app.bootstrap.cache import array_digest
from bids_app.preprocess import clean


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
    map_options : dict
        Extra keyword arguments of :func:`bids_app.inference.fit_map`.

    Notes
    -----
    A resample of cleaned series has drift and high-pass content again (block joins)
    and is no longer exactly z-scored, so it is cleaned again with the surrogate's
    recipe, without the low-pass: the data were low-passed once already and a second
    pass would sharpen the filter beyond what the surrogate was trained on.
    """

    surrogate: Any
    precision: sp.spmatrix
    theta_t0: np.ndarray
    tr: float
    map_options: dict = field(default_factory=dict)

    @property
    def cache_token(self) -> str:
        """Identifies the refit's settings for the bootstrap cache key."""
        card = getattr(self.surrogate, "card", {}) or {}
        q = sp.csr_matrix(self.precision)
        parts = [str(card.get("sha256", card.get("id", ""))), array_digest(q.data),
                 array_digest(q.indices), array_digest(np.asarray(self.theta_t0)),
                 repr(float(self.tr)), repr(sorted(self.map_options.items()))]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """Latent MAP (V, P) of a resampled (V, T) block."""
        from bids_app.inference import fit_map

        spec = replace(self.surrogate.preprocessing, lowpass=None)
        y_clean = clean(y, self.tr, spec)
        summaries = self.surrogate.summarize(y_clean, self.tr)
        loglik = self.surrogate.loglik(summaries, self.tr, y_clean.shape[1])
        result = fit_map(loglik, self.precision, self.theta_t0, **self.map_options)
        return np.asarray(result.theta_t)
