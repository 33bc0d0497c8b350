"""Latent bootstrap intervals mapped to θ and to every derived parameter.

The probit link and the derived maps (time-to-peak = 5/θ, …) are monotone, so an
interval's end points map exactly through them: no normal approximation in the derived
scale. A decreasing map (time-to-peak) swaps lower and upper. The SE reported in the
natural scale is the SD of the bootstrap draws mapped through the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_app.bootstrap.double import BootstrapResult
from bids_app.models import HRFModel


@dataclass
class MapInterval:
    """One reported map: estimate, SE and interval bounds, each (V,), natural units."""

    estimate: np.ndarray
    se: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def natural_intervals(
    result: BootstrapResult, theta_t_hat: np.ndarray, model: HRFModel
) -> dict[str, MapInterval]:
    """Estimate, SE and interval of every map ``model.derived`` reports.

    Parameters
    ----------
    result : BootstrapResult
        Output of :func:`bids_app.bootstrap.double_bootstrap`.
    theta_t_hat : array (V, P)
        Latent MAP estimate the bootstrap was run around.
    model : HRFModel
        Supplies the inverse link ``to_theta`` and the ``derived`` maps.

    Returns
    -------
    dict name -> MapInterval
        Keyed like ``model.derived`` (e.g. 'theta', 'timetopeak').
    """
    estimate = model.derived(model.to_theta(theta_t_hat))
    at_lower = model.derived(model.to_theta(result.lower))
    at_upper = model.derived(model.to_theta(result.upper))
    draws = model.derived(model.to_theta(result.draws.astype(float)))  # each (B, V)
    return {
        name: MapInterval(
            estimate=estimate[name],
            se=draws[name].std(axis=0, ddof=1),
            lower=np.fmin(at_lower[name], at_upper[name]),
            upper=np.fmax(at_lower[name], at_upper[name]),
        )
        for name in estimate
    }
