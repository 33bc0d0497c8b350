"""The SPDE precision: its formula, fixed pattern, log-determinant, and the marginal
variance of its draws (small meshes here; the fsLR 32k figures in test_spde_fslr.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from bids_app.prior import SPDEPrior, fem_matrices, icosphere


@pytest.fixture(scope="module")
def prior() -> SPDEPrior:
    v, f = icosphere(2, 30.0)
    return SPDEPrior(fem_matrices(v, f))


def test_precision_is_the_alpha_2_spde_operator(prior):
    C, G = sp.diags(prior.fem.C).toarray(), prior.fem.G.toarray()
    kappa, tau2 = 0.07, 40.0
    K = kappa**2 * C + G
    expected = tau2 * K @ np.linalg.inv(C) @ K
    np.testing.assert_allclose(prior.precision(kappa, tau2).toarray(), expected,
                               rtol=1e-10, atol=1e-12 * np.abs(expected).max())


def test_pattern_is_fixed_across_hyperparameters(prior):
    a, b = prior.precision(1e-3, 1e2), prior.precision(0.5, 1e6)
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)


@pytest.mark.parametrize("kappa,tau2", [(5e-3, 1e4), (0.1, 3.0)])
def test_logdet_precision_matches_dense(prior, kappa, tau2):
    sign, logdet = np.linalg.slogdet(prior.precision(kappa, tau2).toarray())
    assert sign == 1
    assert prior.logdet_precision(kappa, tau2) == pytest.approx(logdet, rel=1e-9)


def test_bad_hyperparameters_raise(prior):
    with pytest.raises(ValueError):
        prior.precision(0.0, 1.0)
    with pytest.raises(ValueError):
        prior.marginal_variance(0.1, -1.0)


def test_variance_matches_unbounded_formula_when_range_is_short():
    """κR = 5 on a fine sphere: the field does not feel the closed surface."""
    v, f = icosphere(4, 100.0)
    prior = SPDEPrior(fem_matrices(v, f))
    ratio = prior.variance(0.05, 2.0).mean() / prior.marginal_variance(0.05, 2.0)
    assert ratio == pytest.approx(1.0, abs=0.15)


def test_samples_are_reproducible_and_have_the_exact_variance(prior):
    kappa, tau2 = 0.1, 0.5
    x = prior.sample(kappa, tau2, np.random.default_rng(1), n=4000)
    assert x.shape == (prior.n_vertices, 4000)
    np.testing.assert_array_equal(prior.sample(kappa, tau2, 5, 3), prior.sample(kappa, tau2, 5, 3))
    exact = prior.variance(kappa, tau2)
    assert x.var(axis=1).mean() == pytest.approx(exact.mean(), rel=0.05)
