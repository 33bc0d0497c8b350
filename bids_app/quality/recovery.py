"""Does the map move when the truth moves? The recovery check of a run's estimate.

A learned likelihood that integrates a broad nuisance family can read a whole stretch of
the parameter range as one value: at TR 1.4 s and 300 frames the shipped 1p surrogate
returns θ ≈ 1.0 for every true θ from 0.48 to 0.8 under white noise, with a sharp pooled
likelihood, narrow intervals and spectra the model reproduces, so no other check sees it
(benchmarks/bench_real_nuisance.py, demo sub-02 hemi-L). Whether that happens depends on
the protocol and the nuisance regime, not on the subject, so it is checked per run:

pseudo-runs are simulated with the map's spatial pattern shifted to true latent offsets
across the whole range, each pseudo-run with one nuisance regime of the surrogate's prior,
and each is estimated as the run was summarised (the offset maximising the summed
log-likelihood, the pooled part of the MAP). The regimes whose simulated spectra are
shaped most like the run's stand for the run's nuisance; under each, the true offsets
whose estimate lies within :data:`TOLERANCE_LATENT` of the run's own estimate are the
truths the data cannot tell apart. Their span, median over those regimes, is the check's
figure: a span wider than :data:`MAX_SPAN_LATENT` means the map would read the same if the
true θ were anywhere in it, so it is flagged as not identified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_app.quality.predictive import PredictiveReference
from bids_app.simulate.bold import sample_nuisance

# True latent offsets of the pseudo-runs: the link box's N(0, 1) range in half-sd steps.
OFFSETS = np.linspace(-2.5, 2.5, 11)
# Nuisance regimes (one per pseudo-run set), the share of them closest in spectral shape
# to the run that stand for its nuisance, and vertices per pseudo-run.
N_REGIMES = 20
MATCHED_SHARE = 0.25
N_VERTICES = 150
# Offsets scanned by the pooled estimator (latent; finer than the tolerance).
SCAN = np.linspace(-3.0, 3.0, 61)
# A truth whose estimate is this close (latent) to the run's cannot be told from it: a
# quarter of the prior sd, which a slope-1 estimator crosses in half a grid step.
TOLERANCE_LATENT = 0.25
# Truths spanning more than this (latent; one grid step) map to the run's estimate: the
# estimator moves less than about half as much as the truth there.
MAX_SPAN_LATENT = 0.5


@dataclass(frozen=True)
class RecoveryCheck:
    """The check's figures.

    Attributes
    ----------
    span_latent : median over matched regimes of the span of true offsets whose pooled
        estimate is within tolerance of the run's.
    truth_range : (low, high) natural-scale mean θ of the truths at that median regime's
        span ends (the truths the map cannot tell apart).
    estimate_latent : the run's pooled offset estimate (mean latent of the map).
    """

    span_latent: float
    truth_range: tuple[float, float]
    estimate_latent: float


def pooled_offset(surrogate, y_clean: np.ndarray, pattern: np.ndarray, tr: float,
                  n_regressors: int) -> float:
    """The latent offset c maximising Σ_v log q(S_v | c + pattern_v) (grid :data:`SCAN`)."""
    summaries = surrogate.summarize(y_clean, tr, n_regressors)
    loglik = surrogate.loglik(np.repeat(summaries, len(SCAN), axis=0), tr, y_clean.shape[1],
                              n_regressors)
    values = loglik(np.add.outer(pattern, SCAN).reshape(-1, 1))[0]
    return float(SCAN[int(np.argmax(values.reshape(len(pattern), len(SCAN)).sum(axis=0)))])


def recovery_check(y_clean: np.ndarray, theta_t: np.ndarray, surrogate, tr: float,
                   n_regressors: int, seed: int) -> RecoveryCheck:
    """Span of true offsets that the run's estimator cannot tell from the run's estimate.

    Parameters
    ----------
    y_clean : array (V, T)
        The run's cleaned series.
    theta_t : array (V,) or (V, 1)
        Latent estimate of the same vertices (1-parameter models).
    surrogate : bids_app.surrogate.Surrogate
    tr : float
    n_regressors : int
    seed : int
    """
    rng = np.random.default_rng([seed, 3])
    n_frames = y_clean.shape[1]
    ref = PredictiveReference(surrogate, tr, n_frames, n_regressors, rng)
    rows = rng.choice(len(y_clean), min(N_VERTICES, len(y_clean)), replace=False)
    latent = np.asarray(theta_t, dtype=float).reshape(len(y_clean), -1)[rows, 0]
    pattern = latent - latent.mean()
    estimate = pooled_offset(surrogate, y_clean[rows], pattern, tr, n_regressors)
    shape = _shape(ref.spectra(y_clean[rows]))
    spans, ends, distances = [], [], []
    for _ in range(N_REGIMES):
        regime = {key: np.repeat(value, len(rows))
                  for key, value in sample_nuisance(ref.prior, 1, rng).items()}
        recovered, distance = [], np.inf
        for offset in OFFSETS:
            truth = np.clip(pattern + offset, SCAN[0], SCAN[-1])[:, None]
            spectra, y_sim = ref.simulate_series(surrogate.model.to_theta(truth), regime)
            recovered.append(pooled_offset(surrogate, y_sim, pattern, tr, n_regressors))
            distance = min(distance, float(np.mean((_shape(spectra) - shape) ** 2)))
        consistent = OFFSETS[np.abs(np.asarray(recovered) - estimate) <= TOLERANCE_LATENT]
        spans.append(float(np.ptp(consistent)) if len(consistent) else 0.0)
        ends.append((consistent.min(), consistent.max()) if len(consistent)
                    else (estimate, estimate))
        distances.append(distance)
    matched = np.argsort(distances)[:max(1, round(MATCHED_SHARE * N_REGIMES))]
    typical = matched[np.argsort(np.asarray(spans)[matched], kind="stable")[len(matched) // 2]]
    low, high = surrogate.model.to_theta(np.asarray(ends[typical])[:, None] + latent.mean()
                                         - estimate)[:, 0]
    return RecoveryCheck(float(np.asarray(spans)[typical]), (float(low), float(high)), estimate)


def _shape(spectra: np.ndarray) -> np.ndarray:
    """Mean log band spectrum of a run less its level (its shape)."""
    profile = spectra.mean(axis=0)
    return profile - profile.mean()
