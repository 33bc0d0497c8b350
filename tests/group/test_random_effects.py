"""Random-effects meta-regression against a direct REML optimisation and known truths."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from bids_app.group.random_effects import (
    bh_qvalues,
    contrast,
    dersimonian_laird,
    random_effects,
    z_and_p,
)


def _restricted_nll(tau2, y, v, x):
    w = 1 / (v + tau2)
    a = x.T @ (w[:, None] * x)
    beta = np.linalg.solve(a, x.T @ (w * y))
    r = y - x @ beta
    return 0.5 * (np.log(v + tau2).sum() + np.linalg.slogdet(a)[1] + (w * r * r).sum())


def _study(n=30, vertices=6, tau=0.4, seed=0):
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    v = rng.uniform(0.05, 0.5, (n, vertices))
    y = 0.3 + 0.2 * x[:, 1:] + rng.normal(0, tau, (n, vertices)) + rng.normal(size=v.shape) * v**0.5
    return y, v, x


def test_reml_matches_direct_maximisation_with_missing_values():
    y, v, x = _study()
    y[3, 0] = np.nan
    fit = random_effects(y, v, x)
    assert (fit.method == "REML").all()
    for j in range(y.shape[1]):
        keep = np.isfinite(y[:, j])
        best = minimize_scalar(_restricted_nll, bounds=(0, 5), method="bounded",
                               args=(y[keep, j], v[keep, j], x[keep]),
                               options={"xatol": 1e-10})
        assert abs(fit.tau2[j] - best.x) < 1e-6
    assert fit.n[0] == 29 and fit.n[1] == 30


def test_homogeneous_data_give_the_inverse_variance_mean():
    rng = np.random.default_rng(1)
    v = rng.uniform(0.1, 1.0, (40, 1))
    y = np.full((40, 1), 2.0)  # no spread at all: τ² = 0, fixed-effect weights
    fit = random_effects(y, v, np.ones((40, 1)))
    assert fit.tau2[0] == 0.0
    np.testing.assert_allclose(fit.beta[0], 2.0)
    np.testing.assert_allclose(fit.se[0], (1 / v).sum() ** -0.5)
    assert dersimonian_laird(y, v, np.ones((40, 1)))[0] == 0.0


def test_between_participant_variance_is_recovered():
    y, v, x = _study(n=400, vertices=40, tau=0.5, seed=2)
    fit = random_effects(y, v, x)
    assert abs(np.sqrt(np.median(fit.tau2)) - 0.5) < 0.05
    assert abs(np.median(fit.beta[1]) - 0.2) < 0.05
    effect, se = contrast(fit, np.array([0.0, 1.0]))
    np.testing.assert_allclose(effect, fit.beta[1])
    np.testing.assert_allclose(se, fit.se[1])


def test_one_participant_has_no_between_variance():
    fit = random_effects(np.array([[1.0, 2.0]]), np.array([[0.04, 0.09]]), np.ones((1, 1)))
    assert np.isnan(fit.tau2).all() and (fit.method == "").all()
    np.testing.assert_allclose(fit.beta[0], [1.0, 2.0])
    np.testing.assert_allclose(fit.se[0], [0.2, 0.3])


def test_bh_qvalues_and_z():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.5])
    q = bh_qvalues(p)
    # ranks 1, 3, 2, 4 of 4: p·4/rank = 0.04, 0.0533, 0.06 → 0.0533 (step-up), 0.5
    np.testing.assert_allclose(q[[0, 1, 3, 4]], [0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert np.isnan(q[2])
    z, pv = z_and_p(np.array([1.96, 1.0]), np.array([1.0, 0.0]))
    assert abs(pv[0] - 0.05) < 1e-3 and np.isnan(z[1])


def test_moderated_weights_keep_the_null_calibrated_with_unequal_ses():
    """Tenfold SE differences, 20 participants, no effect: p below 0.05 and 0.001 at about
    their rates (a vertex's own τ̂² alone gives 0.075 and 0.0055 here)."""
    from bids_app.group.random_effects import moderate_tau2

    rng = np.random.default_rng(0)
    n, vertices = 20, 20000
    age = rng.normal(size=n)
    x = np.column_stack([np.ones(n), (age - age.mean()) / age.std()])
    s = rng.uniform(0.05, 0.5, n)[:, None] * rng.uniform(0.8, 1.2, (n, vertices))
    y = -0.5 + rng.normal(0, 0.2, (n, vertices)) + s * rng.normal(size=s.shape)
    first = random_effects(y, s**2, x)
    fit = random_effects(y, s**2, x, moderate_tau2(first.tau2))
    _, p = z_and_p(fit.beta[1], fit.se[1], fit.df)
    assert (p < 0.05).mean() < 0.055 and (p < 0.001).mean() < 0.002
    np.testing.assert_array_equal(fit.tau2, first.tau2)  # the estimate itself is reported
