"""Hemodynamic response functions of the two models and their kernels on a TR grid.

Times are in seconds. Kernels are long enough (in seconds, not taps) that the slowest
HRF in a model's range keeps all but 1e-4 of its absolute mass, whatever the TR: the
research code's 30-tap kernel (21.6 s at TR 0.72) cut slow responses short.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.special import gammaincc, gammaln

from bids_app.models import MODELS, HRFModel

# Undershoot weight of the one-parameter double gamma (DESIGN.md §2).
UNDERSHOOT = 0.167
# SPM canonical: undershoot gamma divided by 6, whole curve scaled to unit integral.
SPM_UNDERSHOOT = 1.0 / 6.0
# Fraction of absolute HRF mass a default kernel may leave beyond its end.
TAIL_TOLERANCE = 1e-4
# Shortest kernel ever used, in seconds.
MIN_KERNEL_S = 32.0


def gamma_density(t: np.ndarray, shape: float, rate: np.ndarray | float) -> np.ndarray:
    """g(t; k, b) = b^k t^(k−1) e^(−bt) / Γ(k), zero for t ≤ 0 (t in s, b in 1/s)."""
    t = np.asarray(t, dtype=float)
    rate = np.asarray(rate, dtype=float)
    positive = t > 0
    safe_t = np.where(positive, t, 1.0)
    log_g = shape * np.log(rate) + (shape - 1) * np.log(safe_t) - rate * safe_t - gammaln(shape)
    return np.where(positive, np.exp(log_g), 0.0)


def double_gamma(t: np.ndarray, theta: np.ndarray | float) -> np.ndarray:
    """One-parameter HRF h_θ(t) = g(t; 6, θ) − 0.167·g(t; 16, θ).

    θ (1/s) is a common rate, i.e. a time dilation: the positive lobe peaks at 5/θ s
    and θ = 1 is the canonical shape. ``t`` and ``theta`` broadcast.
    """
    return gamma_density(t, 6.0, theta) - UNDERSHOOT * gamma_density(t, 16.0, theta)


def spm_canonical(t: np.ndarray) -> np.ndarray:
    """SPM canonical HRF (peak ≈ 5 s, undershoot ≈ 15 s), scaled to unit integral over t."""
    raw = gamma_density(t, 6.0, 1.0) - SPM_UNDERSHOOT * gamma_density(t, 16.0, 1.0)
    return raw / (1.0 - SPM_UNDERSHOOT)


def spm_derivative(t: np.ndarray) -> np.ndarray:
    """Temporal-derivative basis h_can(t) − h_can(t − 1 s): adding θ2 times it to h_can
    shifts the response about θ2 seconds earlier."""
    t = np.asarray(t, dtype=float)
    return spm_canonical(t) - spm_canonical(t - 1.0)


def _tail_time(shape_weights: tuple[tuple[float, float], ...], tol: float) -> float:
    """Unit-rate time u after which the mixture Σ w·Gamma(k, 1) keeps at most ``tol``
    of its absolute mass Σ|w| (an upper bound on the tail of the signed HRF)."""
    total = sum(abs(w) for _, w in shape_weights)

    def excess(u: float) -> float:
        return sum(abs(w) * gammaincc(k, u) for k, w in shape_weights) / total - tol

    return brentq(excess, 1.0, 200.0)


def default_kernel_duration(model: HRFModel | str, tol: float = TAIL_TOLERANCE) -> float:
    """Kernel length in s so no HRF in the model's (link-widened) range is truncated.

    One-parameter: the slowest rate θ_lo ≈ 0.48/s stretches time by 1/θ_lo, giving 67 s.
    Two-parameter: the SPM shape plus its 1 s shifted copy, giving 33 s. Both at
    ``tol`` = 1e-4, rounded up to whole seconds and never below 32 s.
    """
    model = resolve_model(model)
    if model.name == "1p":
        slowest = float(model.link_bounds()[0][0])
        u = _tail_time(((6.0, 1.0), (16.0, UNDERSHOOT)), tol)
        duration = u / slowest
    else:
        duration = _tail_time(((6.0, 1.0), (16.0, SPM_UNDERSHOOT)), tol) + 1.0
    return float(max(MIN_KERNEL_S, math.ceil(duration)))


def kernel_times(tr: float, duration_s: float) -> np.ndarray:
    """Sampling times 0, TR, 2·TR, … (s) covering ``duration_s``."""
    return np.arange(math.ceil(duration_s / tr)) * tr


def hrf_kernels(
    model: HRFModel | str,
    theta: np.ndarray,
    tr: float,
    duration_s: float | None = None,
) -> np.ndarray:
    """Per-series HRF kernels sampled at t = 0, TR, 2·TR, … .

    Parameters
    ----------
    model : HRFModel or {"1p", "2p"}
    theta : array (N, P)
        Natural parameters (not latent).
    tr : float
        Repetition time in s.
    duration_s : float, optional
        Kernel length in s; default :func:`default_kernel_duration`.

    Returns
    -------
    array (N, K) float64, K = ceil(duration_s / tr).
    """
    model = resolve_model(model)
    theta = np.asarray(theta, dtype=float).reshape(-1, model.n_params)
    if duration_s is None:
        duration_s = default_kernel_duration(model)
    t = kernel_times(tr, duration_s)
    if model.name == "1p":
        return double_gamma(t[None, :], theta[:, :1])
    return theta[:, :1] * spm_canonical(t)[None, :] + theta[:, 1:2] * spm_derivative(t)[None, :]


def resolve_model(model: HRFModel | str) -> HRFModel:
    """Accept a model object or its name ("1p", "2p")."""
    if isinstance(model, HRFModel):
        return model
    return MODELS[model]
