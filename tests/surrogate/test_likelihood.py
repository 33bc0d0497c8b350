"""The loglik contract: values, gradients and Hessians agree with the flow itself."""

from __future__ import annotations

import numpy as np
import torch

from bids_app.surrogate.likelihood import LoglikTable, LoglikTable2, autograd_loglik
from bids_app.surrogate.networks import ScalarFlow, VectorFlow

PROTO = np.array([0.1, -0.3, 0.2])


def _flow(flow: torch.nn.Module, seed: int, scale: float) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return flow.double()


def _exact_value(flow, s: np.ndarray, theta: np.ndarray) -> np.ndarray:
    s_t = torch.as_tensor(s, dtype=torch.float64)
    th = torch.as_tensor(theta, dtype=torch.float64)
    context = torch.cat([th, torch.as_tensor(PROTO).expand(len(th), -1)], 1)
    with torch.no_grad():
        return flow.log_prob(s_t, context).numpy()


def test_autograd_loglik_matches_finite_differences_2p():
    torch.manual_seed(0)
    flow = _flow(VectorFlow(2, 5, n_layers=2, hidden=16), 1, 0.1)
    rng = np.random.default_rng(0)
    s, theta = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    value, grad, hess = autograd_loglik(flow, s, PROTO)(theta)
    np.testing.assert_allclose(value, _exact_value(flow, s, theta), atol=1e-10)
    h = 1e-5
    for i in range(2):
        e = np.zeros(2)
        e[i] = h
        fd = (_exact_value(flow, s, theta + e) - _exact_value(flow, s, theta - e)) / (2 * h)
        np.testing.assert_allclose(grad[:, i], fd, atol=1e-6)
        g_plus = autograd_loglik(flow, s, PROTO)(theta + e)[1]
        g_minus = autograd_loglik(flow, s, PROTO)(theta - e)[1]
        np.testing.assert_allclose(hess[:, i, :], (g_plus - g_minus) / (2 * h), atol=1e-5)
    np.testing.assert_allclose(hess, np.swapaxes(hess, 1, 2), atol=1e-8)


def test_table_matches_flow_and_its_own_derivatives_1p():
    torch.manual_seed(0)
    flow = _flow(ScalarFlow(4, n_layers=2, hidden=16), 2, 0.15)
    flow.summary_sd.fill_(0.5)
    table = LoglikTable(flow, PROTO, n_s=301, n_theta=201)
    rng = np.random.default_rng(1)
    s, theta = rng.normal(0, 0.5, 400), rng.normal(0, 1.2, 400)
    value, grad, hess = table.bind(s[:, None])(theta[:, None])
    exact = _exact_value(flow, s[:, None], theta[:, None])
    bulk = exact > exact.max() - 8.0
    err = np.abs(value - exact)[bulk]
    assert np.median(err) < 1e-5 and err.max() < 2e-2  # larger only at spline kinks
    exact_grad = autograd_loglik(flow, s[:, None], PROTO)(theta[:, None])[1][:, 0]
    assert np.median(np.abs(grad[:, 0] - exact_grad)[bulk]) < 1e-2
    h = 1e-4
    v_plus, g_plus, _ = table.bind(s[:, None])(theta[:, None] + h)
    v_minus, g_minus, _ = table.bind(s[:, None])(theta[:, None] - h)
    np.testing.assert_allclose(grad[:, 0], (v_plus - v_minus) / (2 * h), atol=1e-5)
    np.testing.assert_allclose(hess[:, 0, 0], (g_plus - g_minus)[:, 0] / (2 * h), atol=1e-4)


def test_table_continues_smoothly_beyond_its_range():
    torch.manual_seed(0)
    flow = _flow(ScalarFlow(4, n_layers=1, hidden=8), 3, 0.1)
    table = LoglikTable(flow, PROTO, n_s=101, n_theta=81)
    s = np.zeros((3, 1))
    theta = np.array([[4.999], [5.0], [7.0]])
    value, _, hess = table.bind(s)(theta)
    assert np.all(np.isfinite(value)) and hess[2, 0, 0] <= -1.0
    assert abs(value[0] - value[1]) < 1e-2


def test_table_evaluation_in_one_pass_equals_the_spline_and_its_derivatives():
    """The bound likelihood evaluates the bicubic spline itself (s-weights kept, one pass
    for value and both θ̃-derivatives): FITPACK's own evaluation to rounding, at the
    grid's edges and knots too."""
    torch.manual_seed(0)
    flow = _flow(ScalarFlow(4, n_layers=1, hidden=8), 3, 0.1)
    table = LoglikTable(flow, PROTO, n_s=101, n_theta=81)
    rng = np.random.default_rng(2)
    s = np.concatenate([rng.uniform(table.s_grid[0], table.s_grid[-1], 500),
                        table.s_grid[[0, -1, 50]]])
    theta = np.concatenate([rng.uniform(-5.0, 5.0, 500), [-5.0, 5.0, table.theta_grid[40]]])
    value, grad, hess = table.bind(s[:, None])(theta[:, None])
    for got, dy in ((value, 0), (grad[:, 0], 1), (hess[:, 0, 0], 2)):
        np.testing.assert_allclose(got, table.spline.ev(s, theta, dy=dy), rtol=1e-10,
                                   atol=1e-9)


def test_two_output_table_matches_the_flow_and_its_own_derivatives():
    """A 1p card with a second summary output (S 2-D, θ̃ 1-D) is tabulated over
    (s₁, s₂, θ̃): values near the flow's, derivatives those of the spline itself."""
    torch.manual_seed(0)
    flow = _flow(VectorFlow(2, 4, n_layers=2, hidden=16), 4, 0.1)
    flow.summary_sd.fill_(0.5)
    table = LoglikTable2(flow, PROTO, n_s=121, n_theta=121)
    rng = np.random.default_rng(3)
    s, theta = rng.normal(0, 0.5, (400, 2)), rng.normal(0, 1.2, (400, 1))
    value, grad, hess = table.bind(s)(theta)
    exact, exact_grad, _ = autograd_loglik(flow, s, PROTO, n_params=1)(theta)
    bulk = exact > exact.max() - 8.0
    assert np.median(np.abs(value - exact)[bulk]) < 1e-2
    assert np.median(np.abs(grad - exact_grad)[bulk]) < 2e-2
    h = 1e-4
    v_plus, g_plus, _ = table.bind(s)(theta + h)
    v_minus, g_minus, _ = table.bind(s)(theta - h)
    np.testing.assert_allclose(grad[:, 0], (v_plus - v_minus) / (2 * h), atol=1e-5)
    np.testing.assert_allclose(hess[:, 0, 0], (g_plus - g_minus)[:, 0] / (2 * h), atol=1e-4)
    far = table.bind(np.zeros((2, 2)))(np.array([[4.999], [8.0]]))
    assert np.all(np.isfinite(far[0])) and far[2][1, 0, 0] <= -1.0
