"""The hemodynamic models: parameter names, ranges, probit link and derived physiology.

Every stage (simulator, surrogate, inference, outputs) takes its parameter ranges and
link from here, so a latent value θ̃ means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

# Margin so the uniform training prior strictly contains the reported range
# (DESIGN.md §2: eps = 0.01 / 0.98 * (max - min)).
_LINK_MARGIN = 0.01 / 0.98


@dataclass(frozen=True)
class HRFModel:
    """One HRF family and the box its parameters live in."""

    name: str
    params: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    units: tuple[str, ...]
    descriptions: tuple[str, ...]

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
        """Reported maps: each is a monotone function of one parameter, so CI bounds
        map through it exactly (a decreasing map swaps lower and upper)."""
        theta = np.asarray(theta, dtype=float)
        if self.name == "1p":
            return {"theta": theta[..., 0], "timetopeak": time_to_peak(theta[..., 0])}
        return {"amplitude": theta[..., 0], "latency": theta[..., 1]}


def time_to_peak(theta: np.ndarray) -> np.ndarray:
    """Seconds to the positive-lobe peak of the double-gamma HRF with rate θ (5/θ)."""
    return 5.0 / np.asarray(theta, dtype=float)


ONE_PARAM = HRFModel(
    name="1p",
    params=("theta",),
    lower=(0.5,),
    upper=(2.5,),
    units=("1/s",),
    descriptions=("Rate (time dilation) of the double-gamma HRF; 1 is the canonical shape.",),
)

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
)

MODELS: dict[str, HRFModel] = {m.name: m for m in (ONE_PARAM, TWO_PARAM)}

# Derived maps per model with their units, in output order.
DERIVED_UNITS: dict[str, dict[str, str]] = {
    "1p": {"theta": "1/s", "timetopeak": "s"},
    "2p": {"amplitude": "arbitrary", "latency": "s"},
}
