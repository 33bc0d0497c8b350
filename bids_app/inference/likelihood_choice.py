"""Choosing among candidate likelihoods of the same summaries by Laplace evidence.

A run-level nuisance setting the flow is conditioned on (the noise AR(1) coefficient φ)
gives one likelihood q(S | θ̃, φ) per candidate value. All are densities of the same
summaries, so their Laplace evidences compare directly, and φ is chosen jointly with
the field and (κ, τ²): per vertex, φ and θ̃ trade off (more low-frequency noise power
reads as a slower HRF), and only the spatial prior's pooling of θ̃ separates them
(benchmarks/bench_nuisance_bias.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bids_app.inference.evidence import EvidenceResult, select_hyperparameters
from bids_app.inference.map import LogLik
from bids_app.prior.spde import SPDEPrior


@dataclass(frozen=True)
class LikelihoodChoice:
    """The selected candidate and the evidence that chose it.

    Attributes
    ----------
    index : int
        Selected candidate.
    evidence : EvidenceResult
        (κ, τ²) selection and MAP under the selected candidate.
    profile : ndarray (K,)
        Log evidence of every candidate at its own selected (κ, τ²) (nats).
    kappas, tau2s : ndarray (K,)
        Each candidate's selected κ and τ².
    """

    index: int
    evidence: EvidenceResult
    profile: np.ndarray
    kappas: np.ndarray
    tau2s: np.ndarray


def select_likelihood(logliks: Sequence[LogLik], prior: SPDEPrior, theta_t0: np.ndarray,
                      kappas: np.ndarray | None = None, tau2s: np.ndarray | None = None,
                      **options) -> LikelihoodChoice:
    """Maximise the Laplace evidence over candidates × (κ, τ²).

    Every candidate gets its own (κ, τ²) search from the same start, exactly as if it
    were the only likelihood. A cheaper coordinate ascent (select (κ, τ²) under one
    candidate, score the others there) stalls: the noise level a likelihood assumes
    and the prior variance τ² trade off, so each candidate wins at its own (κ, τ²)
    (tests/inference/test_likelihood_choice.py).

    Parameters
    ----------
    logliks : sequence of callables
        Per-vertex log-likelihoods of the same summaries (see :func:`fit_map`).
    prior, theta_t0, kappas, tau2s, **options
        As for :func:`select_hyperparameters` (``kappa``/``tau2`` fix an axis).

    Returns
    -------
    LikelihoodChoice
    """
    if not logliks:
        raise ValueError("select_likelihood needs at least one candidate")
    results = [select_hyperparameters(loglik, prior, theta_t0, kappas, tau2s, **options)
               for loglik in logliks]
    profile = np.array([r.log_evidence for r in results])
    if not np.isfinite(profile).any():
        raise RuntimeError("the Laplace evidence is not finite for any candidate likelihood")
    best = int(np.nanargmax(np.where(np.isfinite(profile), profile, np.nan)))
    return LikelihoodChoice(best, results[best], profile,
                            np.array([r.kappa for r in results]),
                            np.array([r.tau2 for r in results]))
