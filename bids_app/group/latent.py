"""Participant estimates moved to the latent probit scale θ̃ and group results moved back.

The random-effects model is fitted to θ̃ = Φ⁻¹((θ − lo)/(hi − lo)) (``bids_app.models``),
where the participant sampling distributions are closest to normal and bounded θ is
unbounded. The latent sampling variance comes from the participant's interval when it has
one: the bootstrap intervals are percentile intervals, so their bounds map through the
monotone link exactly and the latent SE is the mapped width / (2·z₀.₉₇₅), which keeps the
double bootstrap's coverage calibration and the asymmetry near the box edges. Without
bounds it falls back to the delta method, SE(θ̃) = SE(θ) / ((hi − lo)·φ(θ̃)), which is first
order and overstates the latent SE where φ(θ̃) is small (near the edges of the box).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from bids_app.models import MODELS

Z975 = float(norm.ppf(0.975))


def analysed_params(model: str) -> dict[str, list[str]]:
    """Model parameter → the reported maps derived from it (θ gives θ and time to peak)."""
    hrf = MODELS[model]
    derived = list(hrf.derived(np.ones((1, hrf.n_params))))
    if hrf.n_params == 1:
        return {hrf.params[0]: derived}
    return {name: [name] for name in hrf.params}


def _bounds(model: str, param: str) -> tuple[float, float]:
    hrf = MODELS[model]
    lo, hi = hrf.link_bounds()
    k = hrf.params.index(param)
    return float(lo[k]), float(hi[k])


def to_latent(model: str, param: str, theta: np.ndarray) -> np.ndarray:
    lo, hi = _bounds(model, param)
    u = (np.asarray(theta, float) - lo) / (hi - lo)
    return norm.ppf(np.clip(u, 1e-12, 1 - 1e-12))


def to_natural(model: str, param: str, latent: np.ndarray) -> np.ndarray:
    lo, hi = _bounds(model, param)
    return lo + (hi - lo) * norm.cdf(np.asarray(latent, float))


def slope_factor(model: str, param: str, latent: np.ndarray) -> np.ndarray:
    """dθ/dθ̃ at ``latent``: converts latent effects/SEs to natural units (delta method)."""
    lo, hi = _bounds(model, param)
    return (hi - lo) * norm.pdf(np.asarray(latent, float))


def latent_estimate(
    model: str,
    param: str,
    estimate: np.ndarray,
    se: np.ndarray | None,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(θ̃, Var θ̃) of one participant map; variance NaN where neither bounds nor SE exist."""
    y = to_latent(model, param, estimate)
    var = np.full(y.shape, np.nan)
    if se is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            var = (np.asarray(se, float) / slope_factor(model, param, y)) ** 2
    if lower is not None and upper is not None:
        width = to_latent(model, param, upper) - to_latent(model, param, lower)
        usable = np.isfinite(width) & (width > 0)
        var = np.where(usable, (width / (2 * Z975)) ** 2, var)
    var = np.where(np.isfinite(y), var, np.nan)
    return y, var


def derived_natural(model: str, param: str, reported: str, theta: np.ndarray) -> np.ndarray:
    """A reported map from its model parameter, through ``HRFModel.derived``."""
    hrf = MODELS[model]
    full = np.ones((*np.shape(theta), hrf.n_params))
    full[..., hrf.params.index(param)] = theta
    return hrf.derived(full)[reported]


def derived_slope(model: str, param: str, reported: str, theta: np.ndarray) -> np.ndarray:
    """d(reported)/dθ at θ (central difference), for effects in the reported map's units."""
    theta = np.asarray(theta, float)
    step = 1e-6 * np.maximum(1.0, np.abs(theta))
    upper = derived_natural(model, param, reported, theta + step)
    lower = derived_natural(model, param, reported, theta - step)
    return (upper - lower) / (2 * step)


# The canonical double-gamma HRF in each model: θ = 1 (1p); amplitude 1, latency 0 (2p).
# The group mean is tested against it, not against the middle of the parameter box.
CANONICAL = {"theta": 1.0, "amplitude": 1.0, "latency": 0.0}


def canonical_latent(model: str, param: str) -> float:
    """θ̃ of the canonical HRF: the null value of the group-mean z map."""
    return float(to_latent(model, param, np.array(CANONICAL[param])))
