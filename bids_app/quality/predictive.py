"""Posterior predictive checks of a run's spectra.

The learned likelihood integrates the nuisance over the surrogate's training prior, so
the model predicts, for each vertex's estimate θ̂, a distribution of spectra: series
simulated at θ̂ with nuisance drawn from that prior, cleaned as the run was (same
protocol, same number of confound regressors). Two questions are asked of the data's
log band spectra, standardised by those simulations (z per band):

- per vertex: is its spectrum beyond the 99th percentile of the simulated ones (mean
  |z| over the usable bands)? About 1 % of vertices are expected there;
- per run: the vertices of a run share one nuisance regime (one breathing rate, one
  noise colour), so their mean z profile over bands deviates together. Is the data's
  profile (mean squared over bands) larger than that of pseudo-runs simulated with one
  regime drawn from the prior each? A tail probability below 5 % means no regime the
  model integrates over makes spectra shaped like this run's: the likelihood is
  misspecified, and θ̂ is biased in an unknown direction (benchmarks/bench_real_nuisance.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bids_app.preprocess import clean
from bids_app.simulate.bold import sample_nuisance, simulate_bold
from bids_app.simulate.confounds import regressors_of_count
from bids_app.simulate.nuisance import shared_fluctuation
from bids_app.surrogate.features import band_edges, band_log_power, band_mask

# Vertices checked (a seeded subset), bins of similar estimates, series simulated per bin.
N_CHECKED = 600
N_BINS = 6
N_SIMULATED = 300
# Pseudo-runs (one nuisance regime each) and their vertices, for the run-level check.
N_RUNS = 40
N_RUN_VERTICES = 100
# Bands at or above this frequency (Hz) make up the high-frequency tail that tells a run
# low-pass filtered upstream (its tail is far below any simulated one).
HIGH_BAND_HZ = 0.1


@dataclass(frozen=True)
class PredictiveCheck:
    """The checks' figures.

    Attributes
    ----------
    outlier_fraction : share of checked vertices beyond their predictive 99th percentile.
    run_tail_probability : share of single-regime pseudo-runs whose mean z profile is at
        least as far from the model's centre as the data's.
    high_band_z : signed mean z of the data's bands at or above :data:`HIGH_BAND_HZ`.
    n_checked : vertices checked.
    envelope : the data's log band spectra against the simulated ones (5th, 50th, 95th
        percentile per usable band, ``SpectrumEnvelope`` of the sidecar: the report's
        picture of whether the model fits).
    """

    outlier_fraction: float
    run_tail_probability: float
    high_band_z: float
    n_checked: int
    envelope: dict = field(default_factory=dict)


class _Reference:
    """Simulated spectra of one protocol and cleaning, standardised per θ̂ bin."""

    def __init__(self, surrogate, tr: float, n_frames: int, n_regressors: int,
                 rng: np.random.Generator):
        self.surrogate, self.tr, self.n_frames = surrogate, tr, n_frames
        self.n_regressors, self.rng = n_regressors, rng
        self.protocol = surrogate.protocol(tr, n_frames, n_regressors)
        self.n_bands = surrogate.config.n_bands
        self.prior = surrogate.config.nuisance_prior()
        self.mask = band_mask(self.protocol, self.n_bands)

    def spectra(self, y: np.ndarray) -> np.ndarray:
        return band_log_power(y, self.protocol, self.n_bands)[0][:, self.mask]

    def simulate(self, theta: np.ndarray, nuisance: dict[str, np.ndarray]) -> np.ndarray:
        """Log band spectra of series simulated at ``theta`` and cleaned as the run."""
        rng = self.rng
        shared = (shared_fluctuation(self.n_frames, self.tr, rng) if self.prior.shared[1] > 0
                  else None)
        regressors = regressors_of_count(self.n_regressors, self.n_frames, self.tr, rng, shared)
        raw = simulate_bold(self.surrogate.model, theta, self.tr, self.n_frames, nuisance, rng,
                            shared=shared)
        return self.spectra(clean(raw, self.tr, self.surrogate.preprocessing, regressors))


def predictive_check(y_clean: np.ndarray, theta: np.ndarray, surrogate, tr: float,
                     n_regressors: int, seed: int) -> PredictiveCheck:
    """Compare the run's spectra with spectra simulated at its estimates.

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
    ref = _Reference(surrogate, tr, n_frames, n_regressors, rng)
    rows = np.sort(rng.choice(n_vertices, min(N_CHECKED, n_vertices), replace=False))
    data = ref.spectra(y_clean[rows])
    bins = np.array_split(np.argsort(theta[rows, 0], kind="stable"), min(N_BINS, len(rows)))
    centre = np.empty_like(data)
    scale = np.empty_like(data)
    limit = np.empty(len(rows))
    pooled = []
    for members in bins:
        simulated = ref.simulate(theta[rows[rng.choice(members, N_SIMULATED)]],
                                 sample_nuisance(ref.prior, N_SIMULATED, rng))
        pooled.append(simulated)
        centre[members], scale[members] = simulated.mean(axis=0), simulated.std(axis=0) + 1e-6
        z_sim = (simulated - centre[members[0]]) / scale[members[0]]
        limit[members] = np.quantile(np.abs(z_sim).mean(axis=1), 0.99)
    z = (data - centre) / scale
    outlying = np.abs(z).mean(axis=1) > limit
    data_distance = float(np.mean(z.mean(axis=0) ** 2))
    run_distances = []
    for _ in range(N_RUNS):
        picks = rng.choice(len(rows), N_RUN_VERTICES)
        regime = {key: np.repeat(value, N_RUN_VERTICES)
                  for key, value in sample_nuisance(ref.prior, 1, rng).items()}
        simulated = ref.simulate(theta[rows[picks]], regime)
        run_distances.append(np.mean(((simulated - centre[picks]) / scale[picks]).mean(axis=0)
                                     ** 2))
    high = (band_edges(ref.n_bands)[:-1] >= HIGH_BAND_HZ)[ref.mask]
    high_z = float(z[:, high].mean()) if high.any() else 0.0
    edges = band_edges(ref.n_bands)
    centres = np.sqrt(edges[:-1] * edges[1:])[ref.mask]
    return PredictiveCheck(float(outlying.mean()),
                           float(np.mean(np.asarray(run_distances) >= data_distance)),
                           high_z, len(rows),
                           {"FrequencyHz": centres.tolist(), "Data": _percentiles(data),
                            "Simulated": _percentiles(np.concatenate(pooled))})


def _percentiles(spectra: np.ndarray) -> dict[str, list[float]]:
    """5th, 50th and 95th percentile per band of log band spectra (rows)."""
    return {f"P{q:02d}": np.percentile(spectra, q, axis=0).tolist() for q in (5, 50, 95)}
