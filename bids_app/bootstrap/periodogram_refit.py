"""The refit of a periodogram resample: features → summary → MAP (κ, τ² fixed).

A frequency-domain resample is already the periodogram of a cleaned, z-scored series,
so it skips what a time-domain resample needs (re-cleaning, an FFT per vertex) and goes
straight to the features (:func:`bids_app.surrogate.features.feature_matrix_from_periodogram`,
the same code the time-domain path runs after its FFT) and the warm-started MAP of the
wrapped :class:`bids_app.inference.refit.MapRefit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bids_app.inference.refit import refit_map
from bids_app.surrogate.features import feature_matrix_from_periodogram


@dataclass
class PeriodogramRefit:
    """Refit periodograms (V, ⌊T/2⌋) of a run of ``n_frames`` frames like the point
    estimate; ``refit`` is a MapRefit (its surrogate, precision, warm start, TR,
    observed vertices, MAP options, confound count and noise colour are used)."""

    refit: Any
    n_frames: int

    @property
    def cache_token(self) -> str:
        """The wrapped refit's settings: the same fit, whatever its input."""
        return f"periodogram|{self.refit.cache_token}"

    def summaries(self, power: np.ndarray) -> np.ndarray:
        """S(I) per vertex (V, P) float32: the surrogate's summary of the periodogram."""
        r = self.refit
        return periodogram_summaries(r.surrogate, power, r.tr, self.n_frames, r.n_regressors)

    def fit_periodogram(self, power: np.ndarray) -> np.ndarray:
        """Latent MAP (V, P) of one periodogram resample."""
        r = self.refit
        loglik = r.surrogate.loglik(self.summaries(power), r.tr, self.n_frames,
                                    r.n_regressors, noise_ar=r.noise_ar)
        return refit_map(loglik, r, self.cache_token)


def periodogram_summaries(surrogate, power: np.ndarray, tr: float, n_frames: int,
                          n_regressors: int) -> np.ndarray:
    """S(I) per vertex (V, P) float32 of periodograms (V, ⌊T/2⌋) of a run's cleaned
    series (``n_frames`` frames, ``n_regressors`` confounds removed)."""
    proto = surrogate.protocol(tr, n_frames, n_regressors)
    x = feature_matrix_from_periodogram(power, proto, surrogate.config.n_bands,
                                        surrogate.context_protocol(proto))
    with torch.no_grad():
        return surrogate.summary(torch.from_numpy(x)).numpy()
