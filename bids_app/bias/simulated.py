"""The MAP's bias under the run's own noise regime, estimated by simulation.

Block resampling cannot reproduce an error every resample shares: the learned likelihood's
bias in the narrow nuisance regime of one run (README, Known limitations; −0.12 latent
units on the HCP-calibrated fsLR study, four bootstrap SEs). A parametric step can. The
run's regime is fitted (:mod:`bids_app.bias.noise_match`: the noise colour from the
mean spectrum, each vertex's signal-to-noise ratio from its own), runs are simulated at
the estimated field under it and refitted exactly as the resamples are (κ, τ² and any φ
fixed, warm-started), and the mean shift θ̃_sim − θ̃_at, averaged over vertices with similar
values, is the bias. Regime and simulations are taken at the estimate less the bias, so
the bias is found as a fixed point, by iteration. The estimate and its bootstrap
intervals are moved by −shift; where subtracting the shift would reorder the map, by its
mean only (:data:`MIN_PATTERN_CORRELATION`). Where the matched regime does not reproduce
the run's spectrum (nuisance the simulator lacks, or data filtered before they reached the
app) nothing is moved, and the sidecar says why.

Measured (1p-v6, evidence-selected MAP, benchmarks/bench_bootstrap.py): latent offset
+0.326 → +0.027 on the fsaverage5 white study, −0.072 → −0.001 on the fsLR one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from bids_app.bias.noise_match import NoiseMatch, match_nuisance, vertex_rates
from bids_app.models import MODELS
from bids_app.preprocess import clean
from bids_app.simulate.bold import sample_nuisance, simulate_bold

# Simulated runs averaged per vertex: each carries the run's own random error, so the
# shift of one is noisy; two halve its variance for twice the cost of one refit.
N_SIMULATIONS = 2
# Quantile bins of the estimate the shift is averaged in (smooth_in_estimate).
N_BINS = 20
# Iterations of the fixed point (simulated_bias): the fsaverage5 white study's latent bias
# left goes +0.111 → +0.027 and +0.131 → +0.055 (seeds 0, 1), a fourth iteration moves it
# < 0.003, and the fsLR 32k study's stays at −0.005 → −0.001 (benchmarks/RESULTS.md,
# "the fixed point of the simulated correction").
N_MATCHES = 3
# An iteration must shrink the fixed point's residual to at most this fraction of the
# previous one; where it does not, the estimate barely follows the field (the stretch of
# θ the quality gate's EstimateFollowsTruth check flags), iterating walks off (fsaverage5
# θ 1.0: −0.01 after one pass, −0.19 and −0.35 latent after two and three), and the
# last iterate that contracted is kept. Measured residual ratios where it converges:
# 0.15-0.33. A residual below RESIDUAL_NOISE (latent) is within the simulations' own
# noise (up to 0.044 on the 642-vertex test study) and always passes.
CONTRACTION = 0.5
RESIDUAL_NOISE = 0.05
# The shift is a smoothed function of the estimate; where that function is steeper than
# the estimate (its noise, or an estimator whose mean barely moves with θ), subtracting it
# reorders the map. Below this correlation between the corrected and the uncorrected
# estimate only the shift's mean is used. Measured (bench_real_nuisance.py, fsaverage5,
# every iteration): 1p-v6 0.98-1.00 except θ 0.7 white (−0.27); the two-output cards at
# θ 1.0, where the full shift took r with the truth from 0.93-0.98 to −0.91-0.90, 0.65 and
# below (benchmarks/RESULTS.md, "the correction keeps the map's order").
MIN_PATTERN_CORRELATION = 0.9

LOGGER = logging.getLogger(__name__)


@dataclass
class SimulatedBias:
    """Per-vertex latent bias (V, P) and what produced it; ``skipped`` says why the shift
    is zero when the matched regime does not describe the run."""

    shift: np.ndarray
    match: NoiseMatch
    n_simulations: int
    seed: int
    skipped: str | None = None
    rates: np.ndarray | None = None
    iterations: int = 1
    level_only: bool = False

    def sidecar(self) -> dict:
        if self.skipped is not None:
            return {"Method": "none", "Reason": self.skipped, "NoiseModel": self.match.sidecar()}
        return {"Method": "simulation", "Simulations": self.n_simulations,
                "FixedPointIterations": self.iterations,
                "LevelOnly": self.level_only,
                "RandomSeed": self.seed, "NoiseModel": self.match.sidecar(),
                "VertexEventRateQuantiles": {f"{q:g}": float(np.quantile(self.rates, q))
                                             for q in (0.05, 0.5, 0.95)},
                "MeanShift": [float(v) for v in self.shift.mean(axis=0)]}


def skip_reason(model: str) -> str | None:
    """Why the correction cannot run for this model (``HRFModel.simulated_bias``: where
    it is validated), or None when it can."""
    if not MODELS[model].simulated_bias:
        return f"not validated for the {model} model"
    return None


def simulated_bias(refit, theta_t_hat: np.ndarray, y_clean: np.ndarray,
                   confounds: np.ndarray | None, seed: int,
                   n_simulations: int = N_SIMULATIONS, n_matches: int = N_MATCHES
                   ) -> SimulatedBias:
    """Shift of refits of runs simulated at the estimate under the matched regime,
    averaged over the simulations and over vertices with similar estimates.

    The bias is the fixed point of that map, found by iterating it ``n_matches`` times:
    the regime is matched, and runs simulated, at the estimate less the current shift
    (the first time at the estimate). The regime's signal-to-noise ratios are read through
    the HRF, so a regime matched at a biased estimate misstates them, and with them the
    bias (docs/method.md §5). Where an iteration does not contract (:data:`CONTRACTION`)
    the last iterate that did is returned (the first pass at least).

    Parameters
    ----------
    refit : MapRefit
        The bootstrap's refit (its surrogate, precision, warm start and φ).
    theta_t_hat : array (V, P)
        Latent MAP of the run.
    y_clean : array (V, T)
        The run's cleaned series.
    confounds : array (T, k), optional
        Regressors removed from the run; removed from the simulated runs too.
    seed : int
        The run's random seed.
    """
    surrogate, tr = refit.surrogate, refit.tr
    model, spec = surrogate.model, surrogate.preprocessing
    shift = np.zeros_like(theta_t_hat, dtype=float)
    gap = np.inf
    for iteration in range(n_matches):
        at = theta_t_hat - shift
        theta = model.to_theta(at)
        match, nuisance = matched_nuisance(surrogate, y_clean, theta, tr, confounds, seed)
        if (misfit := match.misfit()) is not None:
            if iteration == 0:
                return SimulatedBias(np.zeros_like(shift), match, 0, seed, skipped=misfit)
            break
        total = np.zeros_like(shift)
        for k in range(n_simulations):
            rng = np.random.default_rng([seed, 2, k])
            y = clean(simulate_bold(model, theta, tr, y_clean.shape[1], nuisance, rng), tr,
                      spec, confounds)
            total += refit(y) - at
        new = smooth_in_estimate(at, total / n_simulations)
        level_only = pattern_correlation(theta_t_hat, new) < MIN_PATTERN_CORRELATION
        if level_only:
            new = np.repeat(new.mean(axis=0, keepdims=True), len(new), axis=0)
        # The fixed point's residual: how far the simulated estimates land from the run's.
        new_gap = abs(float((new - shift).mean()))
        if new_gap > max(CONTRACTION * gap, RESIDUAL_NOISE):
            break  # the estimate barely follows the field: keep the last iterate
        shift, gap = new, new_gap
        kept = (match, nuisance["rate"], iteration + 1, level_only)
    match, rates, iterations, level_only = kept
    return SimulatedBias(shift, match, n_simulations, seed, rates=rates,
                         iterations=iterations, level_only=level_only)


def pattern_correlation(theta_t_hat: np.ndarray, shift: np.ndarray) -> float:
    """The smallest, over parameters, correlation across vertices between the estimate
    less the shift and the estimate (1 where the estimate is flat: nothing to reorder)."""
    values = []
    for k in range(theta_t_hat.shape[1]):
        x = theta_t_hat[:, k]
        corrected = x - shift[:, k]
        if np.std(x) == 0.0 or np.std(corrected) == 0.0:
            continue
        values.append(float(np.corrcoef(corrected, x)[0, 1]))
    return min(values, default=1.0)


def matched_nuisance(surrogate, y_clean: np.ndarray, theta: np.ndarray, tr: float,
                     confounds: np.ndarray | None, seed: int
                     ) -> tuple[NoiseMatch, dict[str, np.ndarray]]:
    """The run's fitted AR(1) regime and per-vertex nuisance settings drawn from it, each
    vertex with its own event rate (``theta`` natural estimates of ``y_clean``'s rows)."""
    model, spec = surrogate.model, surrogate.preprocessing
    # Amplitudes and noise sd in the middle of the training prior: only the signal-to-
    # noise ratio is seen after z-scoring, and the fitted event rates set it.
    training = surrogate.config.nuisance_prior()
    noise_sd = float(np.sqrt(np.prod(training.noise_sd)))
    match = match_nuisance(y_clean, theta, model, tr, spec, training.amplitude, noise_sd,
                           confounds, seed)
    nuisance = sample_nuisance(match.prior, len(theta), np.random.default_rng(seed))
    nuisance["rate"] = vertex_rates(y_clean, theta, model, tr, spec, match)
    return match, nuisance


def correct_bias(refit, theta_t: np.ndarray, y_clean: np.ndarray,
                 confounds: np.ndarray | None, method: str, seed: int, where: str
                 ) -> tuple[np.ndarray, dict[str, Any]]:
    """The simulated bias of the MAP (``method`` "simulation") and its sidecar record; a
    zero shift where it is off ("none") or cannot run."""
    reason = ("--bias-correction none" if method == "none" else
              skip_reason(refit.surrogate.model.name))
    if reason is not None:
        LOGGER.info("%s: no simulation bias correction (%s)", where, reason)
        return np.zeros_like(theta_t, dtype=float), {"Method": "none", "Reason": reason}
    bias = simulated_bias(refit, theta_t, y_clean, confounds, seed)
    noise = bias.match.prior
    if bias.skipped is not None:
        LOGGER.warning("%s: no simulation bias correction: %s (matched noise AR(1) %.3f, "
                       "event rate %.3g-%.3g /s); the intervals then hold the estimate's "
                       "random error only, not the likelihood's bias under this run's "
                       "nuisance (docs/limitations.md)", where, bias.skipped,
                       noise.ar_coef[0], *noise.rate)
        return bias.shift, bias.sidecar()
    LOGGER.info("%s: simulation bias correction: matched noise sd %.3g, AR(1) %.3f, event "
                "rate %.3g-%.3g /s; mean latent shift %+.3f%s", where, noise.noise_sd[0],
                noise.ar_coef[0], *noise.rate, float(bias.shift.mean()),
                " (its level only: the full shift would reorder the map)"
                if bias.level_only else "")
    return bias.shift, bias.sidecar()


def smooth_in_estimate(theta_t_hat: np.ndarray, shift: np.ndarray, n_bins: int = N_BINS
                       ) -> np.ndarray:
    """The shift as a smooth function of each parameter's estimate, pooled over vertices.

    A vertex's raw shift carries the random error of the simulated runs; the bias itself
    varies mostly with θ. So the shift is averaged within quantile bins of the estimate
    and interpolated linearly between bin centres (constant beyond the outer ones).
    """
    out = np.empty_like(shift, dtype=float)
    for k in range(shift.shape[1]):
        x = theta_t_hat[:, k]
        edges = np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1))
        which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n_bins - 1)
        counts = np.bincount(which, minlength=n_bins)
        full = counts > 0
        centres = np.bincount(which, x, n_bins)[full] / counts[full]
        means = np.bincount(which, shift[:, k], n_bins)[full] / counts[full]
        out[:, k] = np.interp(x, centres, means)
    return out
