"""Damped-Newton MAP: exact against dense solvers (Gaussian closed form, a non-quadratic
concave likelihood, two parameters), gradient by finite differences, masked vertices."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp

from bids_app.inference import fit_map, objective
from bids_app.inference import map as map_module
from bids_app.inference.analytic import GaussianLoglik, PoissonLoglik
from bids_app.prior import SparseCholesky, SPDEPrior, available_backends, fem_matrices, icosphere


@pytest.fixture(scope="module")
def prior() -> SPDEPrior:
    v, f = icosphere(2, 30.0)
    return SPDEPrior(fem_matrices(v, f))


@pytest.fixture(scope="module")
def field(prior) -> np.ndarray:
    return prior.sample(0.1, 20.0, np.random.default_rng(0), 2)


@pytest.mark.parametrize("backend", available_backends())
def test_gaussian_map_equals_closed_form(prior, field, backend):
    rng = np.random.default_rng(1)
    S = field[:, :1] + rng.normal(0, 0.4, (prior.n_vertices, 1))
    prec = rng.uniform(2.0, 8.0, prior.n_vertices)
    Q = prior.precision(0.1, 20.0)
    result = fit_map(GaussianLoglik(S, prec), Q, np.zeros_like(S),
                     chol=SparseCholesky(backend))
    R = np.diag(prec)
    exact = np.linalg.solve(Q.toarray() + R, R @ S[:, 0])
    np.testing.assert_allclose(result.theta_t[:, 0], exact, atol=1e-10)
    assert result.converged and result.n_iter == 1  # a quadratic: one full Newton step
    assert result.logdet_hessian == pytest.approx(np.linalg.slogdet(Q.toarray() + R)[1])
    assert len(result.history["objective"]) == result.n_iter + 1
    assert result.objective == pytest.approx(
        objective(GaussianLoglik(S, prec), Q, result.theta_t)[0])


def test_two_parameter_gaussian_with_coupled_blocks(prior, field):
    rng = np.random.default_rng(2)
    V = prior.n_vertices
    S = field + rng.normal(0, 0.5, field.shape)
    L = rng.normal(0, 1, (V, 2, 2))
    prec = np.einsum("vij,vkj->vik", L, L) + 0.5 * np.eye(2)
    Q = prior.precision(0.1, 20.0)
    result = fit_map(GaussianLoglik(S, prec), Q, np.zeros_like(S))
    big_q = sp.block_diag([Q, Q]).toarray()
    big_r = np.zeros((2 * V, 2 * V))
    for a in range(2):
        for b in range(2):
            big_r[a * V:(a + 1) * V, b * V:(b + 1) * V] = np.diag(prec[:, a, b])
    exact = np.linalg.solve(big_q + big_r, big_r @ S.T.ravel())
    np.testing.assert_allclose(result.theta_t, exact.reshape(2, V).T, atol=1e-9)
    # a (2V, 2V) block prior gives the same as the shared (V, V) one
    again = fit_map(GaussianLoglik(S, prec), sp.block_diag([Q, Q]), np.zeros_like(S))
    np.testing.assert_allclose(again.theta_t, result.theta_t, atol=1e-12)


def test_poisson_map_equals_dense_optimum(prior, field):
    """A strictly concave, non-quadratic likelihood: several damped Newton steps."""
    rng = np.random.default_rng(3)
    counts = rng.poisson(3.0 * np.exp(field))
    loglik = PoissonLoglik(counts, 3.0)
    Q = prior.precision(0.1, 20.0)
    start = np.full(field.shape, 2.0)  # far from the optimum: the line search damps
    result = fit_map(loglik, Q, start, gtol=1e-9, ftol=1e-20)
    assert result.converged and result.n_iter > 2
    assert result.grad_norm <= 1e-9
    Qd, V = Q.toarray(), prior.n_vertices

    def fun(x):
        theta = x.reshape(2, V).T
        value, grad, _ = loglik(theta)
        qx = np.concatenate([Qd @ theta[:, 0], Qd @ theta[:, 1]])
        return -value.sum() + 0.5 * x @ qx, qx - grad.T.ravel()

    def hess(x):
        rate = (3.0 * np.exp(x.reshape(2, V).T)).T.ravel()
        return np.kron(np.eye(2), Qd) + np.diag(rate)

    ref = so.minimize(fun, start.T.ravel(), jac=True, hess=hess, method="trust-exact",
                      options={"gtol": 1e-10})
    np.testing.assert_allclose(result.theta_t, ref.x.reshape(2, V).T, atol=1e-7)
    assert np.all(np.diff(result.history["objective"]) <= 0)


def test_objective_gradient_matches_finite_differences(prior, field):
    rng = np.random.default_rng(4)
    loglik = PoissonLoglik(rng.poisson(2.0 * np.exp(field)), 2.0)
    Q = prior.precision(0.2, 5.0)
    theta = field + rng.normal(0, 0.3, field.shape)
    _, grad = objective(loglik, Q, theta)
    direction = rng.normal(0, 1, theta.shape)
    h = 1e-5
    fd = (objective(loglik, Q, theta + h * direction)[0]
          - objective(loglik, Q, theta - h * direction)[0]) / (2 * h)
    assert fd == pytest.approx(np.sum(grad * direction), rel=1e-7)
    for v, p in [(0, 0), (17, 1), (prior.n_vertices - 1, 0)]:
        e = np.zeros_like(theta)
        e[v, p] = h
        fd = (objective(loglik, Q, theta + e)[0] - objective(loglik, Q, theta - e)[0]) / (2 * h)
        assert fd == pytest.approx(grad[v, p], rel=1e-6, abs=1e-8)


def test_unobserved_vertices_never_influence_the_estimate(prior, field):
    rng = np.random.default_rng(5)
    V = prior.n_vertices
    observed = rng.random(V) > 0.2
    S = field[:, :1] + rng.normal(0, 0.4, (V, 1))
    Q = prior.precision(0.1, 20.0)
    fits = []
    for garbage in (np.nan, 1e6):
        S_bad = S.copy()
        S_bad[~observed] = garbage
        start = S_bad.copy()
        fits.append(fit_map(GaussianLoglik(S_bad, 4.0), Q, start, observed=observed))
    np.testing.assert_array_equal(fits[0].theta_t, fits[1].theta_t)
    # equal to the closed form with zero likelihood precision at unobserved vertices
    R = np.diag(np.where(observed, 4.0, 0.0))
    exact = np.linalg.solve(Q.toarray() + R, R @ np.where(observed, S[:, 0], 0.0))
    np.testing.assert_allclose(fits[0].theta_t[:, 0], exact, atol=1e-10)


def test_vertices_outside_the_fem_mask_never_influence_the_estimate():
    v, f = icosphere(2, 30.0)
    mask = v[:, 2] < 20.0
    rng = np.random.default_rng(6)
    S = rng.normal(0, 1, (len(v), 1))
    estimates = []
    for shift in (0.0, 5.0):
        moved = v.copy()
        moved[~mask] *= 1.0 + shift  # the excluded cap moves, its data change
        data = S.copy()
        data[~mask] += shift
        fem = fem_matrices(moved, f, mask)
        Q = SPDEPrior(fem).precision(0.1, 20.0)
        result = fit_map(GaussianLoglik(fem.restrict(data), 2.0), Q, fem.restrict(data))
        estimates.append(fem.expand(result.theta_t))
    np.testing.assert_array_equal(estimates[0], estimates[1])
    assert np.isnan(estimates[0][~mask]).all()


def test_iteration_limit_is_reported_as_not_converged(prior, field):
    counts = np.random.default_rng(7).poisson(3.0 * np.exp(field))
    result = fit_map(PoissonLoglik(counts, 3.0), prior.precision(0.1, 20.0),
                     np.full(field.shape, 2.0), max_iter=1)
    assert result.n_iter == 1 and not result.converged
    assert np.isfinite(result.logdet_hessian)


def test_laplace_false_skips_the_mode_factorisation(prior, field):
    counts = np.random.default_rng(8).poisson(3.0 * np.exp(field))
    chol = SparseCholesky()
    loglik, Q = PoissonLoglik(counts, 3.0), prior.precision(0.1, 20.0)
    full = fit_map(loglik, Q, np.zeros_like(field), chol=chol)
    n_full = chol.n_factorizations
    fast = fit_map(loglik, Q, np.zeros_like(field), chol=chol, laplace=False)
    assert chol.n_factorizations - n_full <= n_full
    assert chol.n_analyses == 1  # one symbolic analysis for both fits
    # the first's factor is not reused by default: the same path, the same estimate
    np.testing.assert_allclose(fast.theta_t, full.theta_t)


def test_held_factor_preconditions_the_steps_without_changing_the_optimum(prior, field):
    """With reuse_factor, a factor held from another (κ, τ²) serves as CG
    preconditioner: fewer factorisations, the same optimum as a fresh fit."""
    counts = np.random.default_rng(10).poisson(3.0 * np.exp(field))
    loglik = PoissonLoglik(counts, 3.0)
    start = np.zeros_like(field)
    fresh = SparseCholesky()
    direct = fit_map(loglik, prior.precision(0.1, 60.0), start, chol=fresh, gtol=1e-9,
                     ftol=1e-20)
    assert direct.history["cg_iterations"][1] == 0  # first step: nothing held yet
    warm = SparseCholesky()
    fit_map(loglik, prior.precision(0.1, 20.0), start, chol=warm)
    before = warm.n_factorizations
    result = fit_map(loglik, prior.precision(0.1, 60.0), start, chol=warm, gtol=1e-9,
                     ftol=1e-20, reuse_factor=True)
    assert result.history["cg_iterations"][1] > 0
    assert warm.n_factorizations - before < fresh.n_factorizations
    np.testing.assert_allclose(result.theta_t, direct.theta_t, atol=1e-8)
    assert result.logdet_hessian == pytest.approx(direct.logdet_hessian, rel=1e-10)


def student_t(S: np.ndarray, scale: float, dof: float):
    """Heavy-tailed log-likelihood: log-convex in θ̃ beyond √dof·scale from S (outliers)."""

    def loglik(theta):
        r = S - theta
        u = 1.0 + r**2 / (dof * scale**2)
        value = (-0.5 * (dof + 1) * np.log(u)).sum(1)
        grad = (dof + 1) * r / (dof * scale**2 * u)
        hess = (dof + 1) * (r**2 - dof * scale**2) / (dof * scale**2 * u) ** 2
        return value, grad, hess[:, :, None]

    return loglik


def test_locally_convex_likelihood_reaches_the_dense_optimum(prior, field):
    """Outlying summaries make the likelihood locally convex at some vertices: the step
    must still be a descent direction and the result a true local minimum."""
    rng = np.random.default_rng(9)
    S = field[:, :1] + rng.normal(0, 0.3, (prior.n_vertices, 1))
    S[rng.random(prior.n_vertices) < 0.15] += 4.0  # outliers
    loglik = student_t(S, 0.3, 2.0)
    Q = prior.precision(0.1, 20.0)
    result = fit_map(loglik, Q, S, gtol=1e-9, ftol=1e-20)
    assert result.converged and result.grad_norm <= 1e-9
    _, _, hess = loglik(result.theta_t)
    assert np.any(hess[:, 0, 0] > 0)  # locally convex likelihood at the optimum somewhere
    assert np.linalg.eigvalsh(Q.toarray() - np.diag(hess[:, 0, 0])).min() > 0
    Qd = Q.toarray()

    def fun(x):
        value, grad, _ = loglik(x[:, None])
        return -value.sum() + 0.5 * x @ Qd @ x, Qd @ x - grad[:, 0]

    def hessian(x):
        return Qd - np.diag(loglik(x[:, None])[2][:, 0, 0])

    ref = so.minimize(fun, S[:, 0], jac=True, hess=hessian, method="trust-exact",
                      options={"gtol": 1e-10})
    np.testing.assert_allclose(result.theta_t[:, 0], ref.x, atol=1e-7)


def test_long_newton_steps_are_capped_but_still_reach_the_optimum(prior):
    """A summary 50 latent units from the start: the first trial moves 4 units (no
    value that far is in the link's range), the fit still ends at the closed form."""
    S = np.full((prior.n_vertices, 1), 50.0)
    Q = prior.precision(0.1, 20.0)
    result = fit_map(GaussianLoglik(S, 1.0), Q, np.zeros_like(S), gtol=1e-9, ftol=1e-20)
    first = result.history["step"][1] * np.abs(np.linalg.solve(
        Q.toarray() + np.eye(prior.n_vertices), S[:, 0])).max()
    assert first == pytest.approx(4.0)
    exact = np.linalg.solve(Q.toarray() + np.eye(prior.n_vertices), S[:, 0])
    assert result.converged
    np.testing.assert_allclose(result.theta_t[:, 0], exact, atol=1e-8)


def wiggly(S: np.ndarray, precision: float, amplitude: float, frequency: float):
    """A weak Gaussian likelihood with small ripples, like a tabulated flat likelihood:
    its curvature is negative at many vertices wherever amplitude·frequency² > precision."""

    def loglik(theta):
        r = S - theta
        wave = frequency * theta + 3.0 * S
        value = (-0.5 * precision * r**2 + amplitude * np.cos(wave)).sum(1)
        grad = precision * r - amplitude * frequency * np.sin(wave)
        hess = -precision - amplitude * frequency**2 * np.cos(wave)
        return value, grad, hess[:, :, None]

    return loglik


def test_subspace_step_rescues_the_slow_smooth_directions(prior, field, monkeypatch):
    """Where flooring replaced negative curvature at many vertices, plain floored Newton
    converges linearly along smooth fields; the step on the plane of the Newton
    direction and the previous step reaches the same stationary point in fewer
    iterations."""
    rng = np.random.default_rng(11)
    S = field[:, :1] + rng.normal(0, 0.3, (prior.n_vertices, 1))
    # a long-range prior: stiff for one vertex, weak for the smooth fields
    loglik, Q = wiggly(S, 0.5, 0.05, 12.0), prior.precision(0.003, 1000.0)
    options = {"gtol": 1e-6, "ftol": 1e-12, "max_iter": 200}
    result = fit_map(loglik, Q, S, **options)
    assert result.converged and result.n_iter <= 20
    assert np.any(loglik(result.theta_t)[2][:, 0, 0] > 0)  # locally convex somewhere
    monkeypatch.setattr(map_module, "_subspace_step",
                        lambda Qb, neg_hess, grad, d, last: d)
    plain = fit_map(loglik, Q, S, **options)
    assert plain.converged and plain.n_iter > 1.5 * result.n_iter  # measured: 16 vs 31
    np.testing.assert_allclose(result.theta_t, plain.theta_t, atol=1e-6)



def test_keep_floor_skips_exact_trials_once_indefinite(prior, field):
    """Where the exact Newton matrix stays indefinite (ripples stronger than the prior), a
    fit that keeps the floored matrix once it proved indefinite reaches the same MAP with
    fewer factorisations: refits stop paying for exact trials that fail."""
    rng = np.random.default_rng(12)
    S = field[:, :1] + rng.normal(0, 0.3, (prior.n_vertices, 1))
    loglik, Q = wiggly(S, 0.5, 0.2, 12.0), prior.precision(0.003, 1000.0)
    options = {"gtol": 1e-6, "ftol": 1e-12, "max_iter": 200, "laplace": False}
    counts = {}
    results = {}
    for keep in (False, True):
        chol = SparseCholesky()
        results[keep] = fit_map(loglik, Q, S, chol=chol, keep_floor=keep, **options)
        counts[keep] = chol.n_factorizations
    assert all(r.converged for r in results.values())
    np.testing.assert_allclose(results[True].theta_t, results[False].theta_t, atol=1e-5)
    assert counts[True] < counts[False]
