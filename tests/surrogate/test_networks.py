"""Flows are normalised densities, and the grid evaluation equals the pointwise one."""

from __future__ import annotations

import numpy as np
import torch

from bids_app.surrogate.networks import ScalarFlow, VectorFlow


def _perturbed(flow: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """An untrained flow with non-trivial weights (fresh init is near the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return flow


def test_scalar_flow_integrates_to_one():
    torch.manual_seed(0)
    flow = _perturbed(ScalarFlow(context_features=4, n_layers=2, hidden=16), 1)
    flow.summary_mean.fill_(0.3)
    flow.summary_sd.fill_(0.5)
    s = torch.linspace(-30, 30, 60001)
    context = torch.tensor([[0.5, -0.2, 0.1, 0.7], [-1.5, 0.3, -0.4, 0.0]])
    with torch.no_grad():
        dens = flow.log_prob_grid(s, context).exp().numpy()
    mass = np.trapezoid(dens, s.numpy(), axis=0)
    np.testing.assert_allclose(mass, 1.0, atol=2e-3)


def test_scalar_flow_grid_equals_pointwise_and_sampling_inverts():
    torch.manual_seed(0)
    flow = _perturbed(ScalarFlow(context_features=4, n_layers=2, hidden=16), 2)
    context = torch.randn(7, 4)
    s = torch.randn(5)
    with torch.no_grad():
        grid = flow.log_prob_grid(s, context)
        point = flow.log_prob(s[:, None, None].expand(5, 7, 1).reshape(-1, 1),
                              context.repeat(5, 1))
        np.testing.assert_allclose(grid.reshape(-1).numpy(), point.numpy(), atol=1e-5)
        draws = flow.sample(context.repeat(2000, 1), torch.Generator().manual_seed(0))
    assert torch.isfinite(draws).all()


def test_vector_flow_integrates_to_one():
    torch.manual_seed(0)
    flow = _perturbed(VectorFlow(2, context_features=5, n_layers=2, hidden=16), 3, 0.1)
    axis = torch.linspace(-10, 10, 321)
    s1, s2 = torch.meshgrid(axis, axis, indexing="ij")
    s = torch.stack([s1.reshape(-1), s2.reshape(-1)], 1)
    context = torch.tensor([[0.3, -0.5, 0.1, 0.2, -0.3]]).expand(s.shape[0], -1)
    with torch.no_grad():
        dens = flow.log_prob(s, context).exp().reshape(321, 321).numpy()
    mass = np.trapezoid(np.trapezoid(dens, axis.numpy(), axis=1), axis.numpy())
    assert abs(mass - 1.0) < 5e-3
