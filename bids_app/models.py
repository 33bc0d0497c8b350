"""The HRF model registry: everything that differs between hemodynamic models.

An :class:`HRFModel` owns its parameter box and probit link, its kernel on a time grid
and how long that kernel must be, the maps it reports (with units), the nuisance prior
its surrogate is trained under, the size of that surrogate's flow, its shipped model
card, and whether the simulated bias correction is validated for it. Every stage
(simulator, surrogate, inference, outputs, CLI) takes these from here, so a latent value
θ̃ means the same thing everywhere and adding a model means adding one entry to
:data:`MODELS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import gammaincc, gammaln, ndtr, ndtri

# Margin so the uniform training prior strictly contains the reported range
# (docs: eps = 0.01 / 0.98 * (max - min)).
_LINK_MARGIN = 0.01 / 0.98
# Undershoot weight of the one-parameter double gamma.
UNDERSHOOT = 0.167
# SPM canonical: undershoot gamma divided by 6, whole curve scaled to unit integral.
SPM_UNDERSHOOT = 1.0 / 6.0
# Fraction of absolute HRF mass a default kernel may leave beyond its end.
TAIL_TOLERANCE = 1e-4
# Shortest kernel ever used, in seconds.
MIN_KERNEL_S = 32.0


@dataclass(frozen=True)
class DerivedMap:
    """A reported map: a monotone function of one parameter (index ``param``), so interval
    bounds map through it exactly (a decreasing map swaps lower and upper)."""

    name: str
    param: int
    unit: str
    transform: Callable[[np.ndarray], np.ndarray] | None = None

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        values = theta[..., self.param]
        return values if self.transform is None else self.transform(values)


@dataclass(frozen=True)
class HRFModel:
    """One HRF family, the box its parameters live in, and what depends on it.

    ``kernel(t, theta)`` gives kernels (N, K) at times ``t`` (K,) s for natural
    parameters ``theta`` (N, P); ``kernel_span(model, tol)`` the unrounded time in s
    after which every kernel in the link-widened box keeps at most ``tol`` of its
    absolute mass. ``training_prior`` holds the keyword arguments of the
    :class:`bids_app.simulate.NuisancePrior` its surrogate is trained under;
    ``flow_size`` the flow's (layers, hidden units); ``shipped_card`` the id of its
    shipped surrogate; ``simulated_bias`` whether the simulated bias correction is
    validated for it; ``summary`` a few words for command-line help.
    """

    name: str
    params: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    units: tuple[str, ...]
    descriptions: tuple[str, ...]
    kernel: Callable[[np.ndarray, np.ndarray], np.ndarray]
    kernel_span: Callable[[HRFModel, float], float]
    derived_maps: tuple[DerivedMap, ...]
    training_prior: Mapping[str, Any] = field(default_factory=dict, compare=False)
    flow_size: tuple[int, int] = (4, 64)
    shipped_card: str | None = None
    simulated_bias: bool = False
    summary: str = ""

    @property
    def n_params(self) -> int:
        return len(self.params)

    def link_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds (lo, hi) of the uniform prior that θ̃ ~ N(0, 1) maps onto."""
        lower, upper = np.asarray(self.lower), np.asarray(self.upper)
        eps = _LINK_MARGIN * (upper - lower)
        return lower - eps, upper + eps

    def to_latent(self, theta: np.ndarray) -> np.ndarray:
        """θ → θ̃ = Φ⁻¹((θ − lo)/(hi − lo)); last axis indexes parameters."""
        lo, hi = self.link_bounds()
        u = (np.asarray(theta, dtype=float) - lo) / (hi - lo)
        return ndtri(np.clip(u, 1e-12, 1 - 1e-12))

    def to_theta(self, latent: np.ndarray) -> np.ndarray:
        """θ̃ → θ, the inverse of :meth:`to_latent` (monotone increasing)."""
        lo, hi = self.link_bounds()
        return lo + (hi - lo) * ndtr(np.asarray(latent, dtype=float))

    def derived(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Reported maps, in output order (see :class:`DerivedMap`)."""
        theta = np.asarray(theta, dtype=float)
        return {d.name: d(theta) for d in self.derived_maps}

    def derived_units(self) -> dict[str, str]:
        """Unit of each reported map, in output order."""
        return {d.name: d.unit for d in self.derived_maps}


def time_to_peak(theta: np.ndarray) -> np.ndarray:
    """Seconds to the positive-lobe peak of the double-gamma HRF with rate θ (5/θ)."""
    return 5.0 / np.asarray(theta, dtype=float)


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


def tail_time(shape_weights: tuple[tuple[float, float], ...], tol: float) -> float:
    """Unit-rate time u after which the mixture Σ w·Gamma(k, 1) keeps at most ``tol``
    of its absolute mass Σ|w| (an upper bound on the tail of the signed HRF)."""
    total = sum(abs(w) for _, w in shape_weights)

    def excess(u: float) -> float:
        return sum(abs(w) * gammaincc(k, u) for k, w in shape_weights) / total - tol

    return brentq(excess, 1.0, 200.0)


def kernel_duration(model: HRFModel, tol: float = TAIL_TOLERANCE) -> float:
    """Kernel length in s so no HRF in the model's (link-widened) range is truncated:
    the model's span at ``tol``, rounded up to whole seconds, never below 32 s."""
    return float(max(MIN_KERNEL_S, math.ceil(model.kernel_span(model, tol))))


def _rate_kernel(t: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return double_gamma(t[None, :], theta[:, :1])


def _rate_span(model: HRFModel, tol: float) -> float:
    """The slowest rate θ_lo ≈ 0.48/s stretches time by 1/θ_lo (67 s at 1e-4)."""
    slowest = float(model.link_bounds()[0][0])
    return tail_time(((6.0, 1.0), (16.0, UNDERSHOOT)), tol) / slowest


def _derivative_kernel(t: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return theta[:, :1] * spm_canonical(t)[None, :] + theta[:, 1:2] * spm_derivative(t)[None, :]


def _derivative_span(model: HRFModel, tol: float) -> float:
    """The SPM shape plus its 1 s shifted copy (33 s at 1e-4)."""
    return tail_time(((6.0, 1.0), (16.0, SPM_UNDERSHOOT)), tol) + 1.0


# Training nuisance priors are wider than the one-subject HCP calibration so other
# scanners, subjects and preprocessing are covered: noise sd over a decade around the
# calibrated value (log-uniform), amplitudes and event rates widened and spread
# log-uniformly, and mild AR(1) noise, φ ≤ 0.1 (φ up to 0.3 cost a third more held-out
# error on white-noise data; benchmarks/bench_surrogate.py).
# Flow sizes: the 2p flow is evaluated by autograd at every Newton step for every vertex,
# so it is kept small enough for < 1 s per 32k vertices.
ONE_PARAM = HRFModel(
    name="1p",
    params=("theta",),
    lower=(0.5,),
    upper=(2.5,),
    units=("1/s",),
    descriptions=("Rate (time dilation) of the double-gamma HRF; 1 is the canonical shape.",),
    kernel=_rate_kernel,
    kernel_span=_rate_span,
    derived_maps=(DerivedMap("theta", 0, "1/s"),
                  DerivedMap("timetopeak", 0, "s", time_to_peak)),
    training_prior=dict(noise_sd=(0.05, 0.5), amplitude=(0.5, 1.0), rate=(0.003, 0.5),
                        ar_coef=(0.0, 0.1), rate_log_uniform=True),
    flow_size=(4, 64),
    shipped_card="hemocoupling-1p-v6",
    simulated_bias=True,
    summary="double-gamma time scale θ",
)

# Not validated for the simulated bias correction: its bias is large and varies with θ,
# so the shift simulated at the estimate is not the shift at the truth (fsaverage5, TR
# 0.72 s, κ 0.05, τ² 100, HCP 2p calibration: amplitude r 0.89 → 0.80, latency MSE
# 0.24 → 0.43; benchmarks/bench_bootstrap.py).
TWO_PARAM = HRFModel(
    name="2p",
    params=("amplitude", "latency"),
    lower=(0.5, -1.0),
    upper=(1.5, 1.0),
    units=("arbitrary", "s"),
    descriptions=(
        "Weight of the SPM canonical HRF (theta1).",
        "Weight of its temporal derivative (theta2); h + theta2*dh ~ h(t + theta2), "
        "so positive values peak about theta2 seconds earlier.",
    ),
    kernel=_derivative_kernel,
    kernel_span=_derivative_span,
    derived_maps=(DerivedMap("amplitude", 0, "arbitrary"), DerivedMap("latency", 1, "s")),
    training_prior=dict(noise_sd=(0.12, 0.5), amplitude=(1.0, 1.0), rate=(0.005, 0.2),
                        ar_coef=(0.0, 0.1), rate_log_uniform=True),
    flow_size=(3, 32),
    shipped_card="hemocoupling-2p-v3",
    summary="canonical amplitude + latency",
)

MODELS: dict[str, HRFModel] = {m.name: m for m in (ONE_PARAM, TWO_PARAM)}
# The model fitted when none is named.
DEFAULT_MODEL = ONE_PARAM.name


def models_help() -> str:
    """One line naming every model, for command-line help."""
    return "; ".join(f"{m.name}: {m.summary}" for m in MODELS.values())



class _DerivedUnits(Mapping):
    """Model name → {reported map: unit}, read from :data:`MODELS` when asked."""

    def __getitem__(self, name: str) -> dict[str, str]:
        return MODELS[name].derived_units()

    def __iter__(self):
        return iter(MODELS)

    def __len__(self) -> int:
        return len(MODELS)


# Derived maps per model with their units, in output order.
DERIVED_UNITS: Mapping[str, dict[str, str]] = _DerivedUnits()


def resolve_model(model: HRFModel | str) -> HRFModel:
    """Accept a model object or its registered name."""
    if isinstance(model, HRFModel):
        return model
    return MODELS[model]
