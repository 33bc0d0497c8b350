"""Sparse Cholesky: both backends against dense linear algebra, analysis reuse, and an
exact GMRF sampler (covariance = A⁻¹, so the fill-reducing permutation is undone)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from bids_app.prior import SparseCholesky, available_backends, fem_matrices, icosphere
from bids_app.prior.spde import SPDEPrior

BACKENDS = available_backends()


@pytest.fixture(scope="module")
def precision() -> sp.csc_matrix:
    v, f = icosphere(2, 10.0)
    return SPDEPrior(fem_matrices(v, f)).precision(0.3, 2.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_solve_and_logdet_match_dense(backend, precision):
    dense = precision.toarray()
    chol = SparseCholesky(backend).factorize(precision)
    b = np.random.default_rng(0).standard_normal((dense.shape[0], 3))
    np.testing.assert_allclose(chol.solve(b), np.linalg.solve(dense, b), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(chol.solve(b[:, 0]), np.linalg.solve(dense, b[:, 0]), rtol=1e-9)
    assert chol.logdet() == pytest.approx(np.linalg.slogdet(dense)[1], rel=1e-12)


def test_backends_agree(precision):
    if len(BACKENDS) < 2:
        pytest.skip("CHOLMOD (scikit-sparse) is not installed")
    a, b = (SparseCholesky(name).factorize(precision) for name in BACKENDS)
    rhs = np.arange(precision.shape[0], dtype=float)
    np.testing.assert_allclose(a.solve(rhs), b.solve(rhs), rtol=1e-10)
    assert a.logdet() == pytest.approx(b.logdet(), rel=1e-12)


def test_environment_variable_forces_the_fallback(monkeypatch):
    monkeypatch.setenv("HEMOCOUPLING_CHOLESKY", "superlu")
    assert SparseCholesky().backend == "superlu"
    with pytest.raises(ValueError):
        SparseCholesky("dense")


@pytest.mark.parametrize("backend", BACKENDS)
def test_symbolic_analysis_is_reused_for_the_same_pattern(backend, precision):
    chol = SparseCholesky(backend)
    chol.factorize(precision)
    scaled = precision.copy()
    scaled.data *= 3.0
    chol.factorize(scaled)
    assert (chol.n_analyses, chol.n_factorizations) == (1, 2)
    assert chol.logdet() == pytest.approx(
        np.linalg.slogdet(scaled.toarray())[1], rel=1e-12)
    chol.factorize(sp.eye(5, format="csc"))  # a new pattern is re-analysed
    assert chol.n_analyses == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_not_positive_definite_raises(backend):
    indefinite = sp.csc_matrix(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(np.linalg.LinAlgError):
        SparseCholesky(backend).factorize(indefinite)


@pytest.mark.parametrize("backend", BACKENDS)
def test_samples_have_covariance_inverse_of_a(backend):
    v, f = icosphere(1, 10.0)
    Q = SPDEPrior(fem_matrices(v, f)).precision(0.2, 1.0)
    target = np.linalg.inv(Q.toarray())
    chol = SparseCholesky(backend).factorize(Q)
    x = chol.sample(np.random.default_rng(3), 40_000)
    assert x.shape == (Q.shape[0], 40_000)
    empirical = x @ x.T / x.shape[1]
    scale = np.abs(target).max()
    assert np.abs(empirical - target).max() < 0.05 * scale
    # the same draws in factor order (permutation not undone) are far off: the test
    # above can fail, and the ordering is not the identity on this mesh
    order = chol._perm if backend == "superlu" else chol._factor.P()
    wrong = empirical[np.ix_(order, order)]
    assert np.abs(wrong - target).max() > 0.3 * scale
    np.testing.assert_array_equal(chol.sample(7, 2), chol.sample(7, 2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_holds_only_a_valid_factor_of_the_same_pattern(backend, precision):
    chol = SparseCholesky(backend)
    assert not chol.holds(precision)
    chol.factorize(precision)
    assert chol.holds(precision)
    other = sp.csc_matrix(sp.eye(precision.shape[0]))
    assert not chol.holds(other)
    bad = precision.copy()
    bad.data = -bad.data  # same pattern, negative definite
    with pytest.raises(np.linalg.LinAlgError):
        chol.factorize(bad)
    assert not chol.holds(precision)  # a failed factorisation leaves nothing to reuse
    with pytest.raises(RuntimeError):
        chol.solve(np.ones(precision.shape[0]))
