"""Choosing among candidate likelihoods by Laplace evidence: with Gaussian likelihoods
that differ in their noise level the evidence is exact, so the true level must win,
although each wrong level wins at its own (κ, τ²) (which stalls a coordinate ascent)."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.inference import select_hyperparameters
from bids_app.inference.analytic import GaussianLoglik
from bids_app.inference.likelihood_choice import select_likelihood
from bids_app.prior import SPDEPrior, fem_matrices, icosphere

KAPPAS = np.geomspace(0.01, 1.0, 5)
TAU2S = np.geomspace(1.0, 1e4, 5)
PRECISIONS = (1.0, 4.0, 16.0)  # candidate noise precisions; the data have 4


@pytest.fixture(scope="module")
def study() -> tuple[SPDEPrior, np.ndarray]:
    v, f = icosphere(3, 50.0)
    prior = SPDEPrior(fem_matrices(v, f))
    rng = np.random.default_rng(3)
    truth = prior.sample(0.1, 100.0, rng, 1)
    return prior, truth + rng.normal(0.0, 0.5, truth.shape)


def test_the_true_noise_level_wins(study):
    prior, S = study
    logliks = [GaussianLoglik(S, p) for p in PRECISIONS]
    choice = select_likelihood(logliks, prior, S, KAPPAS, TAU2S)
    assert choice.index == 1 and np.argmax(choice.profile) == 1
    # Each candidate is scored at its own (κ, τ²), as if it were the only likelihood.
    for k, loglik in enumerate(logliks):
        alone = select_hyperparameters(loglik, prior, S, KAPPAS, TAU2S)
        assert (choice.kappas[k], choice.tau2s[k]) == (alone.kappa, alone.tau2)
        assert choice.profile[k] == pytest.approx(alone.log_evidence, abs=1e-6)
    assert (choice.evidence.kappa, choice.evidence.tau2) == (choice.kappas[1], choice.tau2s[1])


def test_each_wrong_level_wins_at_its_own_hyperparameters(study):
    """Why the candidates are not compared at one shared (κ, τ²)."""
    prior, S = study
    logliks = [GaussianLoglik(S, p) for p in PRECISIONS]
    choice = select_likelihood(logliks, prior, S, KAPPAS, TAU2S)
    at_own = [select_hyperparameters(loglik, prior, S, kappa=choice.kappas[2],
                                     tau2=choice.tau2s[2]).log_evidence for loglik in logliks]
    assert np.argmax(at_own) == 2


def test_a_single_candidate_is_the_hyperparameter_selection(study):
    prior, S = study
    choice = select_likelihood([GaussianLoglik(S, 4.0)], prior, S, KAPPAS, TAU2S)
    alone = select_hyperparameters(GaussianLoglik(S, 4.0), prior, S, KAPPAS, TAU2S)
    assert choice.index == 0 and choice.profile.shape == (1,)
    assert choice.evidence.log_evidence == pytest.approx(alone.log_evidence)
