"""Laplace evidence: exact for a Gaussian likelihood, selects the true κ on data drawn
from the prior, honours fixed values, and works for two parameters."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.inference import fit_map, log_evidence, select_hyperparameters
from bids_app.inference.analytic import GaussianLoglik
from bids_app.inference.evidence import evidence_gap, grid_boundary
from bids_app.prior import SPDEPrior, fem_matrices, icosphere


@pytest.fixture(scope="module")
def prior() -> SPDEPrior:
    v, f = icosphere(3, 50.0)
    return SPDEPrior(fem_matrices(v, f))


def gaussian_marginal(prior, S, noise_prec, kappa, tau2):
    """log N(S; 0, Q⁻¹ + R⁻¹) for each column of S, by dense Woodbury identities."""
    Q = prior.precision(kappa, tau2).toarray()
    V = Q.shape[0]
    R = noise_prec * np.eye(V)
    A = Q + R
    inv_cov = R - R @ np.linalg.solve(A, R)
    logdet_cov = np.linalg.slogdet(A)[1] - np.linalg.slogdet(Q)[1] - V * np.log(noise_prec)
    return sum(-0.5 * s @ inv_cov @ s - 0.5 * logdet_cov - 0.5 * V * np.log(2 * np.pi)
               for s in S.T)


def draw(prior, kappa, tau2, n_params, seed, noise_sd=0.5):
    rng = np.random.default_rng(seed)
    truth = prior.sample(kappa, tau2, rng, n_params)
    return truth, truth + rng.normal(0, noise_sd, truth.shape)


@pytest.mark.parametrize("kappa,tau2", [(0.02, 10.0), (0.3, 1e3)])
@pytest.mark.parametrize("n_params", [1, 2])
def test_laplace_evidence_is_exact_for_a_gaussian_likelihood(prior, kappa, tau2, n_params):
    _, S = draw(prior, 0.1, 100.0, n_params, seed=1)
    loglik = GaussianLoglik(S, 4.0)
    result = fit_map(loglik, prior.precision(kappa, tau2), S)
    assert log_evidence(result, prior, kappa, tau2) == pytest.approx(
        gaussian_marginal(prior, S, 4.0, kappa, tau2), rel=1e-9)


def test_evidence_picks_the_true_kappa(prior):
    kappas = np.geomspace(0.01, 1.0, 7)
    tau2s = np.geomspace(1.0, 1e4, 5)
    hits = []
    for seed in range(2):
        _, S = draw(prior, 0.1, 100.0, 1, seed=10 + seed)
        grid = select_hyperparameters(GaussianLoglik(S, 4.0), prior, S, kappas, tau2s,
                                      search="grid")
        assert grid.surface.shape == (7, 5) and np.isfinite(grid.surface).all()
        lines = select_hyperparameters(GaussianLoglik(S, 4.0), prior, S, kappas, tau2s)
        assert (lines.kappa, lines.tau2) == (grid.kappa, grid.tau2)
        evaluated = np.isfinite(lines.surface)
        assert evaluated.sum() < evaluated.size
        np.testing.assert_allclose(lines.surface[evaluated], grid.surface[evaluated],
                                   rtol=1e-7)
        for result in (grid, lines):
            step = abs(np.log(result.kappa / 0.1)) / np.log(kappas[1] / kappas[0])
            hits.append(step <= 1.0 + 1e-9)
            assert result.log_evidence == np.nanmax(result.surface)
            assert result.map.theta_t.shape == S.shape
    assert all(hits)


@pytest.mark.parametrize("peak", [(0, 0), (3, 1), (6, 4), (5, 2)])
def test_line_search_finds_the_maximum_of_a_ridged_surface(peak):
    """A constructed unimodal surface with a ridge along constant κ²τ² (the index
    direction (1, −2)): the lines search ends on its maximum without visiting it all."""
    from bids_app.inference.evidence import _search_lines

    def surface(i, j):
        u, w = (i - peak[0]) + 0.5 * (j - peak[1]), (j - peak[1])
        return -30.0 * u**2 - 200.0 * w**2

    seen = {}

    def value(i, j, start):
        seen[i, j] = surface(i, j)
        return seen[i, j]

    _search_lines((7, 5), value, lambda cell: None, np.zeros(3))
    assert max(seen, key=seen.get) == peak
    assert len(seen) < 35


def bimodal(good: float = 2.0, bad: float = -1.0):
    """log q with a narrow, high mode at ``good`` and a broad, low one at ``bad``
    (weight 0.02) whose basin holds θ̃ = 0."""

    def loglik(theta):
        a = -0.5 * ((theta - good) / 0.2) ** 2
        b = np.log(0.02) - 0.5 * (theta - bad) ** 2
        top = np.maximum(a, b)
        wa, wb = np.exp(a - top), np.exp(b - top)
        total = wa + wb
        pa, pb = wa / total, wb / total
        ga, gb = -(theta - good) / 0.04, -(theta - bad)
        grad = pa * ga + pb * gb
        hess = pa * (ga**2 - 25.0) + pb * (gb**2 - 1.0) - grad**2
        return (top + np.log(total)).sum(1), grad, hess[:, :, None]

    return loglik


def test_mode_check_keeps_the_restart_when_the_warm_path_found_a_worse_mode(prior):
    """The first grid point visited (the middle τ²) has a strong prior that pulls the
    field into the low mode's basin; the warm-started fit at the selected point stays
    there, the restart from theta_t0 finds the high mode, and its higher evidence is
    kept."""
    loglik = bimodal()
    start = np.full((prior.n_vertices, 1), 2.0)
    result = select_hyperparameters(loglik, prior, start, kappas=[0.1],
                                    tau2s=[1e2, 1e4, 1e5])
    assert result.tau2 == 1e2 and result.restart_gain > 100.0
    np.testing.assert_allclose(result.map.theta_t, 2.0, atol=0.1)
    direct = fit_map(loglik, prior.precision(0.1, 1e2), start)
    assert result.log_evidence == pytest.approx(log_evidence(direct, prior, 0.1, 1e2))


def test_ascent_finds_the_grid_maximum(prior):
    _, S = draw(prior, 0.1, 100.0, 1, seed=20)
    kappas, tau2s = np.geomspace(0.01, 1.0, 7), np.geomspace(1.0, 1e4, 5)
    grid = select_hyperparameters(GaussianLoglik(S, 4.0), prior, S, kappas, tau2s)
    ascent = select_hyperparameters(GaussianLoglik(S, 4.0), prior, S, kappas, tau2s,
                                    search="ascent")
    assert (ascent.kappa, ascent.tau2) == (grid.kappa, grid.tau2)
    evaluated = np.isfinite(ascent.surface)
    assert evaluated.sum() < evaluated.size
    np.testing.assert_allclose(ascent.surface[evaluated], grid.surface[evaluated], rtol=1e-7)
    np.testing.assert_array_equal(ascent.iterations[~evaluated], -1)


def test_fixed_values_collapse_their_axis(prior):
    _, S = draw(prior, 0.1, 100.0, 1, seed=30)
    loglik = GaussianLoglik(S, 4.0)
    fixed_kappa = select_hyperparameters(loglik, prior, S, kappa=0.05)
    assert fixed_kappa.kappa == 0.05 and fixed_kappa.surface.shape == (1, 5)
    both = select_hyperparameters(loglik, prior, S, kappa=0.05, tau2=300.0)
    assert (both.kappa, both.tau2) == (0.05, 300.0)
    assert both.log_evidence == pytest.approx(gaussian_marginal(prior, S, 4.0, 0.05, 300.0))
    one_fit = fit_map(loglik, prior.precision(0.05, 300.0), S)  # no scan, no restart
    assert both.iterations[0, 0] == one_fit.n_iter
    np.testing.assert_allclose(both.map.theta_t, one_fit.theta_t, atol=1e-10)
    with pytest.raises(ValueError):
        select_hyperparameters(loglik, prior, S, kappas=[0.1, -1.0])


def test_two_parameter_selection_recovers_both_fields(prior):
    truth, S = draw(prior, 0.1, 100.0, 2, seed=40)
    result = select_hyperparameters(GaussianLoglik(S, 4.0), prior, S,
                                    np.geomspace(0.01, 1.0, 5), np.geomspace(1.0, 1e4, 5))
    assert result.map.theta_t.shape == truth.shape
    mse_map = np.mean((result.map.theta_t - truth) ** 2, axis=0)
    mse_pointwise = np.mean((S - truth) ** 2, axis=0)
    assert np.all(mse_map < 0.5 * mse_pointwise)


@pytest.mark.parametrize("kappas,edge", [((0.3, 0.6, 1.2), {"kappa": "lower"}),
                                         ((0.004, 0.008, 0.016), {"kappa": "upper"}),
                                         ((0.03, 0.1, 0.3), {})])
def test_grid_boundary_names_the_edge_a_grid_missing_the_truth_selects(prior, kappas, edge):
    _, S = draw(prior, 0.1, 100.0, 1, seed=50)
    result = select_hyperparameters(GaussianLoglik(S, 4.0), prior, S, kappas, tau2=100.0)
    assert grid_boundary(result) == edge  # τ² is fixed: never reported as on the boundary
    finite = np.sort(result.surface.ravel())
    assert evidence_gap(result) == pytest.approx(finite[-1] - finite[-2])
    assert evidence_gap(result) > 0


def test_single_point_has_no_boundary_and_no_gap(prior):
    _, S = draw(prior, 0.1, 100.0, 1, seed=51)
    result = select_hyperparameters(GaussianLoglik(S, 4.0), prior, S, kappa=0.05, tau2=100.0)
    assert grid_boundary(result) == {} and evidence_gap(result) is None
