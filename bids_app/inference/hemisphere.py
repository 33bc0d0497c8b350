"""The evidence-selected MAP of one hemisphere and what its sidecar says about it.

:func:`fit_map_with_evidence` picks the likelihood (one per noise-colour candidate) and
(κ, τ²) by Laplace evidence and returns the MAP as an :class:`EvidenceFit`;
:func:`identifiability` says how much the data inform each reported parameter;
:func:`summed_loglik` adds independent runs' likelihoods for a combined map.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from bids_app.inference.evidence import SEARCHES, evidence_gap, grid_boundary
from bids_app.inference.likelihood_choice import select_likelihood
from bids_app.models import HRFModel
from bids_app.prior import FEM, SPDEPrior

LOGGER = logging.getLogger(__name__)

# A parameter is flagged unidentified when the data remove less than this fraction of
# its latent prior variance over one prior correlation region.
IDENTIFIED_FRACTION = 0.5
# A map whose bootstrap intervals are narrower than this share of its estimate (median
# over vertices) did not respond to resampled data: the refits sat where they started.
MIN_RELATIVE_WIDTH = 1e-3

_AXIS_LABELS = {"kappa": ("κ", " /mm", "--kappa"), "tau2": ("τ²", "", "--tau2")}


@dataclass
class EvidenceFit:
    """The MAP at the evidence-selected likelihood and (κ, τ²).

    Attributes
    ----------
    theta_t : array (V, P)
        Latent MAP.
    candidate : int
        Index of the selected likelihood among those given.
    kappa, tau2, log_evidence : float
        Selected hyperparameters and their Laplace log evidence (nats).
    precision : sparse (V, V)
        Prior precision Q(κ, τ²) at the selection, for refits.
    evidence_grid, convergence, hyperparameter_selection : dict
        Sidecar values: the searched surface, the Newton record, how (κ, τ², φ) were
        chosen.
    """

    theta_t: np.ndarray
    candidate: int
    kappa: float
    tau2: float
    log_evidence: float
    precision: sp.spmatrix
    evidence_grid: dict[str, Any]
    convergence: dict[str, Any]
    hyperparameter_selection: dict[str, Any]


def fit_map_with_evidence(logliks: list, fem: FEM, theta_t0: np.ndarray,
                          kappas, tau2s, where: str = "", noise_ars: list | None = None,
                          search: str = SEARCHES[0]) -> EvidenceFit:
    """MAP under the SPDE prior with (κ, τ²), and the likelihood among ``logliks`` (one per
    noise AR(1) candidate in ``noise_ars``, or one), maximising the Laplace evidence
    (``search``: how the grid is searched); warns (naming ``where``) when a selection
    sits on the edge of a searched axis."""
    prior = SPDEPrior(fem)
    choice = select_likelihood(logliks, prior, np.asarray(theta_t0, dtype=float),
                               kappas, tau2s, search=search)
    evidence = choice.evidence
    best = evidence.map_result
    selection = {"Method": "Laplace evidence, line search on the grid",
                 "OnGridBoundary": grid_boundary(evidence),
                 "LogEvidenceGap": evidence_gap(evidence)}
    fit = EvidenceFit(
        theta_t=np.asarray(best.theta_t, dtype=float),
        candidate=choice.index,
        kappa=float(evidence.kappa),
        tau2=float(evidence.tau2),
        log_evidence=float(evidence.log_evidence),
        precision=prior.precision(evidence.kappa, evidence.tau2),
        evidence_grid={"Kappa": list(kappas), "Tau2": list(tau2s),
                       "LogEvidence": np.asarray(evidence.grid).tolist()},
        convergence=convergence_record(best),
        hyperparameter_selection=selection,
    )
    if selection["OnGridBoundary"]:
        LOGGER.warning("%s: %s", where, boundary_warning(selection["OnGridBoundary"],
                                                         {"kappa": fit.kappa, "tau2": fit.tau2}))
    if noise_ars is not None:
        selection["NoiseAR"] = noise_ar_record(choice, noise_ars)
        if choice.index == len(noise_ars) - 1:
            LOGGER.warning("%s: the noise is at least as autocorrelated (AR(1) φ %.3g) as the "
                           "most the surrogate was trained for; θ may read slow", where,
                           noise_ars[-1])
    return fit


def noise_ar_record(choice, noise_ars: list) -> dict[str, Any]:
    """Sidecar values of the noise-colour selection (null: the flow not told φ)."""
    return {"Selected": noise_ars[choice.index],
            "Candidates": list(noise_ars),
            "LogEvidence": [float(v) for v in choice.profile],
            "Kappa": [float(v) for v in choice.kappas],
            "Tau2": [float(v) for v in choice.tau2s],
            "Method": "Laplace evidence, each candidate at its own selected kappa, tau2; "
                      "null: the likelihood averaged over the surrogate's trained range"}


def boundary_warning(edges: dict[str, str], selected: dict[str, Any]) -> str:
    """One line naming each axis whose selected value (in ``selected``) is a grid edge,
    and what to pass instead."""
    parts, flags = [], []
    for axis, edge in edges.items():
        symbol, unit, flag = _AXIS_LABELS[axis]
        extreme = "smallest" if edge == "lower" else "largest"
        parts.append(f"{symbol} at the {extreme} grid value {selected[axis]:.3g}{unit}")
        flags.append(flag)
    return (f"selected {' and '.join(parts)}: the evidence may peak outside the grid; pass a "
            f"wider {'/'.join(flags)} list or fix --kappa/--tau2")


def convergence_record(result) -> dict[str, Any]:
    """The Newton record of a MapResult, as sidecar values."""
    return {"Converged": bool(result.converged), "Iterations": int(result.n_iter),
            "Objective": [float(v) for v in result.objective_trace],
            "GradientNorm": [float(v) for v in result.grad_norm_trace]}


def identifiability(loglik, theta_t: np.ndarray, model: HRFModel, kappa: float,
                    fem: FEM, iterations: int) -> dict[str, dict[str, Any]]:
    """How much the data inform each parameter, per reported map.

    At the MAP, a vertex's likelihood curvature c = −∂²log q/∂θ̃² against the unit
    curvature of the surrogate's N(0, 1) latent prior gives the fraction of prior
    variance its data remove, c / (c + 1). Single vertices are weakly informed; the
    prior pools vertices within its correlation range ρ = √8/κ (mm), and information
    adds over independent vertices, so the regional fraction uses the summed information
    of the n = min(V, πρ²/mean vertex area) vertices in one such disc, n·c̄ / (n·c̄ + 1)
    with c̄ the mean curvature (a median would read a likelihood that peaks sharply at
    some vertices and is flat at the rest as no information at all). A parameter is
    flagged when that is below 0.5, and whenever the MAP's Newton ran no iteration
    (``iterations`` 0): the map is then its starting point, not an estimate, whatever
    the curvature there says.
    """
    _, _, hess = loglik(theta_t)
    curvature = np.clip(-np.diagonal(np.asarray(hess), axis1=1, axis2=2), 0.0, None)
    per_vertex = np.median(curvature / (curvature + 1.0), axis=0)
    n_region = min(fem.n_vertices, np.pi * (np.sqrt(8.0) / kappa) ** 2 / np.mean(fem.C))
    regional_info = n_region * np.mean(curvature, axis=0)
    regional = regional_info / (regional_info + 1.0)
    names = list(model.derived(model.to_theta(theta_t[:1])))
    index = {name: (0 if model.n_params == 1 else k) for k, name in enumerate(names)}
    reasons = {name: _unidentified_reason(float(regional[k]), iterations)
               for name, k in index.items()}
    return {name: {"Identified": reasons[name] is None,
                   **({"Reason": reasons[name]} if reasons[name] else {}),
                   "RegionalInformationFraction": float(regional[k]),
                   "MedianVertexInformationFraction": float(per_vertex[k]),
                   "VerticesPerCorrelationRegion": float(n_region),
                   "Note": "fraction of the N(0,1) latent prior variance removed by the data "
                           "(likelihood curvature c/(c+1)), per vertex and pooled over one "
                           f"prior correlation region; flagged below {IDENTIFIED_FRACTION}"}
            for name, k in index.items()}


def _unidentified_reason(regional: float, iterations: int) -> str | None:
    if iterations == 0:
        return ("the MAP's Newton ran 0 iterations: the map is the starting guess, not "
                "fitted")
    if regional < IDENTIFIED_FRACTION:
        return (f"the data remove {regional:.0%} of the prior variance over one correlation "
                f"region (< {IDENTIFIED_FRACTION:.0%}): the map mostly reflects the prior")
    return None


def flag_degenerate_intervals(record: dict[str, dict[str, Any]], intervals: dict) -> None:
    """Mark a map not identified when its bootstrap intervals have (almost) no width:
    refits that do not move under resampled data say the data do not determine it."""
    for name, interval in intervals.items():
        width = np.nanmedian(interval.upper - interval.lower)
        scale = np.nanmedian(np.abs(interval.estimate))
        entry = record.get(name)
        if entry is None or not np.isfinite(width) or width > MIN_RELATIVE_WIDTH * scale:
            continue
        entry["Identified"] = False
        entry["Reason"] = (f"the bootstrap intervals have median width {width:.2g}, under "
                           f"{MIN_RELATIVE_WIDTH:g} of the estimate: the refits did not move "
                           "with the resampled data")


def summed_loglik(logliks: list):
    """Log-likelihood callable of independent runs: values, gradients, Hessians add up."""
    def total(theta_t: np.ndarray):
        value, grad, hess = logliks[0](theta_t)
        for other in logliks[1:]:
            v, g, h = other(theta_t)
            value, grad, hess = value + v, grad + g, hess + h
        return value, grad, hess

    return total
