"""A real, cheap refit for bootstrap tests: lag-1 autocorrelation in probit space.

Not a stand-in for the MAP: it is a genuine per-vertex estimator of a smooth
feature of the series, so resampling changes it the way it changes a spectral summary.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri


def simulate_ar1(n_vertices: int, n_frames: int, seed: int) -> np.ndarray:
    """AR(1) series with per-vertex coefficients in [0.2, 0.9], z-scored, (V, T) float32."""
    rng = np.random.default_rng(seed)
    phi = np.linspace(0.2, 0.9, n_vertices)[:, None]
    noise = rng.standard_normal((n_vertices, n_frames))
    y = np.empty_like(noise)
    y[:, 0] = noise[:, 0]
    for t in range(1, n_frames):
        y[:, t] = phi[:, 0] * y[:, t - 1] + noise[:, t]
    y = (y - y.mean(1, keepdims=True)) / y.std(1, keepdims=True)
    return y.astype(np.float32)


def lag1_latent(y: np.ndarray) -> np.ndarray:
    """Probit of (1 + r1)/2 for the lag-1 autocorrelation r1 of each row; (V, 1)."""
    y = y - y.mean(axis=1, keepdims=True)
    r1 = (y[:, 1:] * y[:, :-1]).sum(1) / (y * y).sum(1)
    return ndtri(np.clip((1 + r1) / 2, 1e-6, 1 - 1e-6))[:, None]


def lag1_latent_from_periodogram(power: np.ndarray) -> np.ndarray:
    """:func:`lag1_latent` read from periodograms (V, T/2) of series of an even length T
    (the circular lag-1 autocorrelation, Σ_j I_j cos ω_j / Σ_j I_j over all j ≠ 0)."""
    n_frames = 2 * power.shape[1]
    counts = np.full(power.shape[1], 2.0)
    counts[-1] = 1.0
    cos = np.cos(2 * np.pi * np.arange(1, power.shape[1] + 1) / n_frames)
    r1 = (power * counts * cos).sum(1) / (power * counts).sum(1)
    return ndtri(np.clip((1 + r1) / 2, 1e-6, 1 - 1e-6))[:, None]


class CountingRefit:
    """Refit that counts its calls and can fail after ``fail_after`` of them; it takes
    series (block scheme) or periodograms (local scheme)."""

    cache_token = "lag1-latent"

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, y: np.ndarray) -> np.ndarray:
        self._count()
        return lag1_latent(y)

    def fit_periodogram(self, power: np.ndarray) -> np.ndarray:
        self._count()
        return lag1_latent_from_periodogram(power)

    def _count(self) -> None:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash of a bootstrap run")
        self.calls += 1


def surrogate_study(tr: float, n_frames: int, subdivisions: int, radius_mm: float,
                    tau2: float, center: bool = False):
    """A 1p run on an icosphere, HCP nuisance, truth from the SPDE prior (κ 0.05), fitted
    by the shipped surrogate's MAP at the true (κ, τ²): the real refit chain to test on.

    Returns (truth latent (V,), cleaned series (V, T), MapRefit, latent MAP (V, 1)).
    """
    from bids_app.inference import fit_map
    from bids_app.inference.refit import MapRefit
    from bids_app.models import ONE_PARAM
    from bids_app.preprocess import clean
    from bids_app.prior import SPDEPrior, fem_matrices, icosphere
    from bids_app.simulate import HCP_1P, sample_nuisance, simulate_bold
    from bids_app.surrogate import load_surrogate

    rng = np.random.default_rng(0)
    vertices, faces = icosphere(subdivisions, radius_mm=radius_mm)
    prior = SPDEPrior(fem_matrices(vertices, faces))
    truth_t = prior.sample(0.05, tau2, rng)[:, 0]
    if center:
        truth_t = truth_t - truth_t.mean()
    theta = ONE_PARAM.to_theta(truth_t[:, None])
    y = simulate_bold(ONE_PARAM, theta, tr, n_frames,
                      sample_nuisance(HCP_1P, theta.shape[0], rng), rng)
    surrogate = load_surrogate("1p", tr, n_frames)
    y_clean = clean(y, tr, surrogate.preprocessing)
    summaries = surrogate.summarize(y_clean, tr)
    precision = prior.precision(0.05, tau2)
    fit = fit_map(surrogate.loglik(summaries, tr, n_frames), precision, summaries)
    theta_t = np.asarray(fit.theta_t)
    return truth_t, y_clean, MapRefit(surrogate, precision, theta_t, tr), theta_t
