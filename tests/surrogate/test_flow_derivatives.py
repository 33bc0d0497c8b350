"""The forward-mode derivatives of the 2p flow equal autograd's: in the spline bulk, in
the linear tails, next to knots, on the shipped weights, and for a feed-forward MADE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nflows.transforms.made import MADE
from torch.nn import functional as F

from bids_app.surrogate.flow_derivatives import FlowJet, supports
from bids_app.surrogate.likelihood import autograd_loglik, flow_loglik
from bids_app.surrogate.networks import TAIL_BOUND, ScalarFlow, VectorFlow
from bids_app.surrogate.registry import SHIPPED, WEIGHTS_DIR

PROTO = np.array([0.1, -0.3, 0.2])


def _flow(seed: int, scale: float = 0.3, **sizes) -> VectorFlow:
    torch.manual_seed(seed)
    flow = VectorFlow(2, 2 + len(PROTO), **sizes)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return flow.double().eval()


def _assert_matches(flow, s: np.ndarray, theta: np.ndarray, proto=PROTO, rtol=1e-5) -> None:
    """Value, gradient and Hessian within rtol of autograd's (relative to each array's
    largest entry, so a near-zero entry is not held to an impossible standard)."""
    fast = flow_loglik(flow, s, proto)(theta)
    exact = autograd_loglik(flow, s, proto)(theta)
    for got, want in zip(fast, exact, strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


def test_bulk_and_tails_match_autograd():
    flow = _flow(0, n_layers=3, hidden=16)
    assert supports(flow)
    rng = np.random.default_rng(0)
    s = rng.normal(0, 3.0, (400, 2))  # a good share beyond the ±5 spline range
    s[:20] = rng.choice([-1, 1], (20, 2)) * rng.uniform(5.5, 12, (20, 2))
    theta = rng.normal(0, 1.5, (400, 2))
    _assert_matches(flow, s, theta, rtol=1e-9)


def _first_knots(flow: VectorFlow, s: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Knot positions of the first layer's spline for the second summary, (N, bins + 1)."""
    step = flow.flow._transform._transforms[0]
    params = step.autoregressive_net(s, context).view(len(s), 2, -1)
    k = step.num_bins
    widths = F.softmax(params[:, 1, :k], dim=-1)
    widths = step.min_bin_width + (1 - step.min_bin_width * k) * widths
    edges = F.pad(torch.cumsum(widths, -1), (1, 0))
    return 2 * TAIL_BOUND * edges - TAIL_BOUND


def test_next_to_knots_matches_autograd():
    """Inputs 1e-6 either side of a θ̃-dependent knot: the gradient jumps there, so the
    bin chosen must be nflows' own."""
    flow = _flow(1, n_layers=2, hidden=16)
    rng = np.random.default_rng(1)
    n = 64
    theta = rng.normal(0, 1, (n, 2))
    s = rng.normal(0, 1, (n, 2))
    context = torch.cat([torch.as_tensor(theta), torch.as_tensor(PROTO).expand(n, -1)], 1)
    with torch.no_grad():
        knots = _first_knots(flow, torch.as_tensor(s), context).numpy()
    which = rng.integers(1, knots.shape[1] - 1, n)
    side = np.where(np.arange(n) % 2 == 0, -1e-6, 1e-6)
    s[:, 1] = knots[np.arange(n), which] + side  # summary_mean 0, sd 1
    _assert_matches(flow, s, theta, rtol=1e-8)


def test_feedforward_made_matches_autograd():
    """MADE with feed-forward blocks (context only at the input layer)."""
    torch.manual_seed(2)
    flow_ff = VectorFlow(2, 5, n_layers=2, hidden=12)
    for step in flow_ff.flow._transform._transforms[::2]:
        step.autoregressive_net = MADE(2, 12, context_features=5, num_blocks=2,
                                       output_multiplier=step._output_dim_multiplier(),
                                       use_residual_blocks=False, activation=F.silu)
    rng = np.random.default_rng(2)
    flow_ff = flow_ff.double().eval()
    assert supports(flow_ff)
    _assert_matches(flow_ff, rng.normal(0, 2, (100, 2)), rng.normal(0, 1, (100, 2)),
                    rtol=1e-9)


def test_other_sizes_match_autograd():
    """Nothing is tied to two summaries, two parameters, 8 bins or the shipped widths."""
    torch.manual_seed(5)
    flow = VectorFlow(3, 3 + len(PROTO), n_layers=2, hidden=10, num_bins=5)
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    rng = np.random.default_rng(5)
    _assert_matches(flow.double().eval(), rng.normal(0, 3, (200, 3)),
                    rng.normal(0, 1.5, (200, 3)), rtol=1e-9)


def test_unknown_structure_falls_back_to_autograd():
    torch.manual_seed(3)
    scalar = ScalarFlow(4, n_layers=1, hidden=8).double()
    assert not supports(scalar)
    with pytest.raises(ValueError):
        FlowJet(scalar, 1)
    relu = VectorFlow(2, 5, n_layers=1, hidden=8)
    relu.flow._transform._transforms[0].autoregressive_net.activation = F.relu
    assert not supports(relu)
    rng = np.random.default_rng(3)
    s, theta = rng.normal(size=(10, 1)), rng.normal(size=(10, 1))
    proto = np.array([0.1, -0.3, 0.2])
    fast, exact = flow_loglik(scalar, s, proto)(theta), autograd_loglik(scalar, s, proto)(theta)
    for a, b in zip(fast, exact, strict=True):
        np.testing.assert_array_equal(a, b)


def _shipped_2p() -> VectorFlow:
    """The shipped 2p flow, sized from its own state dict (not through the registry's
    Surrogate, so that this test does not depend on the protocol vector's layout)."""
    import json

    card = json.loads((WEIGHTS_DIR / f"{SHIPPED['2p']}.json").read_text())
    state = torch.load(WEIGHTS_DIR / card["weights"], weights_only=True)
    flow_state = {k[5:]: v for k, v in state.items() if k.startswith("flow.")}
    context = flow_state["flow._transform._transforms.0.autoregressive_net.context_layer.weight"]
    cfg = card["config"]
    flow = VectorFlow(2, context.shape[1], n_layers=cfg["flow_layers"],
                      hidden=cfg["flow_hidden"], num_bins=cfg["flow_bins"])
    flow.load_state_dict(flow_state)
    return flow.eval()


def test_shipped_weights_match_autograd():
    flow = _shipped_2p()
    n_proto = flow.flow._transform._transforms[0].autoregressive_net.context_layer.in_features - 2
    proto = np.linspace(-0.5, 0.5, n_proto)
    rng = np.random.default_rng(4)
    s = rng.normal(0, 0.7, (300, 2)).astype(np.float32)
    theta = rng.normal(0, 1.2, (300, 2))
    _assert_matches(flow.double(), s, theta, proto, rtol=1e-9)
    # The float32 path (what inference uses) against float64 autograd.
    flow32 = _shipped_2p()
    assert next(flow32.parameters()).dtype == torch.float32
    fast = flow_loglik(flow32, s, proto)(theta)
    exact = autograd_loglik(flow.double(), s, proto)(theta)
    for got, want in zip(fast, exact, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
