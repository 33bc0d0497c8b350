"""Posterior predictive check of a run's spectra.

The learned likelihood integrates the nuisance over the surrogate's training prior, so
the model predicts, for each vertex's estimate θ̂, a distribution of spectra: series
simulated at θ̂ with nuisance drawn from that prior, cleaned as the run was (same
protocol, same number of confound regressors). A vertex whose log band spectrum lies
beyond the 99th percentile of those simulated spectra (mean absolute standardised
difference over the usable bands) is one the model cannot have produced at its
estimate; about 1 % of vertices are expected there when the model fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_app.preprocess import clean
from bids_app.simulate.bold import sample_nuisance, simulate_bold
from bids_app.simulate.confounds import regressors_of_count
from bids_app.simulate.nuisance import shared_fluctuation
from bids_app.surrogate.features import band_edges, band_log_power

# Vertices checked (a seeded subset), bins of similar estimates, series simulated per bin.
N_CHECKED = 600
N_BINS = 6
N_SIMULATED = 300
# Bands at or above this frequency (Hz) make up the high-frequency tail that tells a run
# low-pass filtered upstream (its tail is far below any simulated one).
HIGH_BAND_HZ = 0.1


@dataclass(frozen=True)
class PredictiveCheck:
    """Share of checked vertices outside the predictive 99 % and the signed mean
    standardised difference of the data's bands at or above :data:`HIGH_BAND_HZ`."""

    outlier_fraction: float
    high_band_z: float
    n_checked: int


def predictive_check(y_clean: np.ndarray, theta: np.ndarray, surrogate, tr: float,
                     n_regressors: int, seed: int) -> PredictiveCheck:
    """Compare each checked vertex's spectrum with spectra simulated at its estimate.

    Parameters
    ----------
    y_clean : array (V, T)
        The run's cleaned series.
    theta : array (V, P)
        Natural-scale estimates of the same vertices.
    surrogate : bids_app.surrogate.Surrogate
        Gives the model, the nuisance prior and the cleaning recipe.
    tr : float
    n_regressors : int
        Confound regressors removed from the run.
    seed : int
    """
    rng = np.random.default_rng([seed, 2])
    n_vertices, n_frames = y_clean.shape
    rows = np.sort(rng.choice(n_vertices, min(N_CHECKED, n_vertices), replace=False))
    protocol = surrogate.protocol(tr, n_frames, n_regressors)
    n_bands = surrogate.config.n_bands
    data, mask = band_log_power(y_clean[rows], protocol, n_bands)
    high = (band_edges(n_bands)[:-1] >= HIGH_BAND_HZ)[mask]
    data = data[:, mask]
    order = rows[np.argsort(theta[rows, 0], kind="stable")]
    position = {row: k for k, row in enumerate(rows)}
    prior = surrogate.config.nuisance_prior()
    outlying = np.zeros(len(rows), dtype=bool)
    z_high = []
    for members in np.array_split(order, min(N_BINS, len(order))):
        picks = theta[rng.choice(members, N_SIMULATED)]
        shared = shared_fluctuation(n_frames, tr, rng) if prior.shared[1] > 0 else None
        regressors = regressors_of_count(n_regressors, n_frames, tr, rng, shared)
        raw = simulate_bold(surrogate.model, picks, tr, n_frames,
                            sample_nuisance(prior, N_SIMULATED, rng), rng, shared=shared)
        simulated = band_log_power(clean(raw, tr, surrogate.preprocessing, regressors),
                                   protocol, n_bands)[0][:, mask]
        centre, scale = simulated.mean(axis=0), simulated.std(axis=0) + 1e-6
        limit = np.quantile(np.abs((simulated - centre) / scale).mean(axis=1), 0.99)
        index = [position[row] for row in members]
        z = (data[index] - centre) / scale
        outlying[index] = np.abs(z).mean(axis=1) > limit
        if high.any():
            z_high.append(z[:, high].mean(axis=1))
    high_z = float(np.mean(np.concatenate(z_high))) if z_high else 0.0
    return PredictiveCheck(float(outlying.mean()), high_z, len(rows))
