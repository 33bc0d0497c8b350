"""Random-effects results in the latent scale → the reported maps, per model term.

For each term (and contrast) the latent coefficient gives p (Knapp–Hartung t, see
``random_effects``), its normal-equivalent z and the BH q over all vertices (both
hemispheres form one family). Maps in the reported units (θ, time to peak,
amplitude, latency) follow by the delta method at the fitted value for the average
participant, x̄ᵀβ̂; the group mean of an intercept-only model maps exactly (its interval
bounds too, since the link and 5/θ are monotone). The mean is tested against the
canonical HRF (``latent.CANONICAL``), the other terms against zero.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import t as student_t

from bids_app.group.design import INTERCEPT, Design
from bids_app.group.latent import (
    Z975,
    analysed_params,
    canonical_latent,
    derived_natural,
    derived_slope,
    slope_factor,
    to_natural,
)
from bids_app.group.random_effects import RandomEffectsFit, bh_qvalues, contrast, z_and_p

MODEL_DESC = "re"
"""``desc`` of the maps describing the model rather than a term: between-SD and N."""

Maps = dict[str, dict[str, dict[str, np.ndarray]]]
"""desc → reported parameter → statistic → values over the vertex axis."""


def term_maps(model: str, param: str, fit: RandomEffectsFit, design: Design) -> Maps:
    """Every map of one model parameter's fit (see the module docstring)."""
    labels = design.labels()
    mean_row = design.matrix.mean(axis=0)
    reference = mean_row @ fit.beta  # latent fitted value of the average participant
    theta_ref = to_natural(model, param, reference)
    terms = {name: (fit.beta[k], fit.se[k]) for k, name in enumerate(design.columns)}
    terms.update({name: contrast(fit, w) for name, w in design.contrasts.items()})
    out: Maps = {}
    for name, (effect, se) in terms.items():
        null = canonical_latent(model, param) if name == INTERCEPT else 0.0
        z, p = z_and_p(effect - null, se, fit.df)
        q = bh_qvalues(p)
        per: dict[str, dict[str, np.ndarray]] = {}
        for reported in analysed_params(model)[param]:
            if name == INTERCEPT:
                theta = to_natural(model, param, effect)
                factor = derived_slope(model, param, reported, theta) * slope_factor(
                    model, param, effect
                )
                half = np.where(fit.df >= 1, student_t.ppf(0.975, np.maximum(fit.df, 1)), Z975)
                bounds = [
                    derived_natural(model, param, reported, to_natural(model, param, b))
                    for b in (effect - half * se, effect + half * se)
                ]
                stats = {
                    "effect": derived_natural(model, param, reported, theta),
                    "cilower": np.fmin(*bounds),
                    "ciupper": np.fmax(*bounds),
                }
            else:
                factor = derived_slope(model, param, reported, theta_ref) * slope_factor(
                    model, param, reference
                )
                stats = {"effect": factor * effect}
            stats.update({"se": np.abs(factor) * se, "z": np.sign(factor) * z, "p": p, "q": q})
            per[reported] = stats
        out[labels[name]] = per
    model_maps: dict[str, dict[str, np.ndarray]] = {}
    for reported in analysed_params(model)[param]:
        factor = derived_slope(model, param, reported, theta_ref) * slope_factor(
            model, param, reference
        )
        model_maps[reported] = {
            "betweensd": np.abs(factor) * np.sqrt(fit.tau2),
            "n": fit.n,
        }
    out[MODEL_DESC] = model_maps
    return out
