"""log q(S | θ̃) of the 2p flow with its exact θ̃-gradient and Hessian, by forward-mode
second-order propagation ("jets") through nflows' masked autoregressive spline flow.

Why not autograd: the double backward for 32k vertices spends most of its time
re-traversing the graph once per Hessian row. Here every intermediate tensor carries
its value, its P first derivatives and its P(P+1)/2 distinct second derivatives with
respect to θ̃ (the first P context entries) in one pass: linear layers act on all
channels with one matmul, element-wise functions use f, f′ and f″, and the
rational-quadratic spline is differentiated analytically after its bin has been found
from the values. The result equals autograd's to rounding, including the linear tails
(identity) and the jumps of the gradient at knots (the same bin is selected as in
nflows, from the same float operations).

Only the structure ``VectorFlow`` builds is understood: a CompositeTransform of
``MaskedPiecewiseRationalQuadraticAutoregressiveTransform`` (MADE with residual or
feed-forward blocks, SiLU, no batch norm, linear tails) and permutations, with a
standard-normal base; :func:`supports` says whether a flow qualifies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from nflows.distributions.normal import StandardNormal
from nflows.transforms.autoregressive import (
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform as RQTransform,
)
from nflows.transforms.base import CompositeTransform
from nflows.transforms.made import MADE, MaskedFeedforwardBlock, MaskedResidualBlock
from nflows.transforms.permutations import Permutation
from torch import Tensor
from torch.nn import functional as F

# Vertices per batch: large enough to amortise per-op overhead, small enough that the
# (M, chunk, hidden) channel tensors stay near the CPU caches (measured: 4096-8192 best).
CHUNK = 8192


@dataclass
class Jet:
    """A batched tensor with its derivatives in θ̃ (P parameters).

    Attributes
    ----------
    v : Tensor (...)
        Value.
    d : Tensor (M, ...)
        Rows 0..P-1: ∂/∂θ̃_i; then ∂²/∂θ̃_i∂θ̃_j for the pairs i ≤ j in :func:`pairs` order.
    p : int
    """

    v: Tensor
    d: Tensor
    p: int

    def __add__(self, other: Jet) -> Jet:
        return Jet(self.v + other.v, self.d + other.d, self.p)

    def __sub__(self, other: Jet) -> Jet:
        return Jet(self.v - other.v, self.d - other.d, self.p)

    def scale(self, c: float) -> Jet:
        return Jet(self.v * c, self.d * c, self.p)

    def shift(self, c: float | Tensor) -> Jet:
        return Jet(self.v + c, self.d, self.p)


def pairs(p: int) -> list[tuple[int, int]]:
    """The (i, j), i ≤ j, whose second derivatives a Jet stores, in storage order."""
    return [(i, j) for i in range(p) for j in range(i, p)]


def constant(v: Tensor, p: int) -> Jet:
    """A θ̃-independent tensor."""
    m = p + p * (p + 1) // 2
    return Jet(v, v.new_zeros((m, *v.shape)), p)


def apply(x: Jet, f: Tensor, fp: Tensor, fpp: Tensor) -> Jet:
    """Chain rule for an element-wise function with values f, f′, f″ at x.v."""
    p = x.p
    d = x.d * fp
    first = [fpp * x.d[i] for i in range(p)]
    for k, (i, j) in enumerate(pairs(p)):
        d[p + k].addcmul_(first[i], x.d[j])
    return Jet(f, d, p)


def mul(a: Jet, b: Jet) -> Jet:
    p = a.p
    d = a.d * b.v + b.d * a.v
    for k, (i, j) in enumerate(pairs(p)):
        d[p + k].addcmul_(a.d[i], b.d[j]).addcmul_(a.d[j], b.d[i])
    return Jet(a.v * b.v, d, p)


def square(a: Jet) -> Jet:
    return apply(a, a.v * a.v, 2.0 * a.v, torch.full_like(a.v, 2.0))


def reciprocal(a: Jet) -> Jet:
    r = 1.0 / a.v
    return apply(a, r, -r * r, 2.0 * r * r * r)


def log(a: Jet) -> Jet:
    r = 1.0 / a.v
    return apply(a, torch.log(a.v), r, -r * r)


def silu(a: Jet) -> Jet:
    s = torch.sigmoid(a.v)
    fp = s * (1.0 + a.v * (1.0 - s))
    fpp = s * (1.0 - s) * (2.0 + a.v * (1.0 - 2.0 * s))
    return apply(a, F.silu(a.v), fp, fpp)


def softplus(a: Jet) -> Jet:
    s = torch.sigmoid(a.v)
    return apply(a, F.softplus(a.v), s, s * (1.0 - s))


def linear(a: Jet, weight: Tensor, bias: Tensor | None) -> Jet:
    return Jet(F.linear(a.v, weight, bias), F.linear(a.d, weight), a.p)


def gather(a: Jet, index: Tensor) -> Jet:
    """Entries ``index`` (same leading shape, size 1 last) of the last dimension."""
    return Jet(a.v.gather(-1, index)[..., 0],
               a.d.gather(-1, index.expand(a.d.shape[0], *index.shape))[..., 0], a.p)


def softmax(a: Jet) -> Jet:
    """Softmax over the last dimension."""
    p = a.p
    s = torch.softmax(a.v, -1)
    centred = a.d[:p] - (s * a.d[:p]).sum(-1, keepdim=True)
    first = s * centred
    d = torch.empty_like(a.d)
    d[:p] = first
    for k, (i, j) in enumerate(pairs(p)):
        uij = a.d[p + k]
        inner = uij - (s * uij).sum(-1, keepdim=True) - (first[j] * a.d[i]).sum(-1, keepdim=True)
        d[p + k] = first[j] * centred[i] + s * inner
    return Jet(s, d, p)


def context_jet(context: Tensor, weight: Tensor, bias: Tensor, p: int) -> Jet:
    """Linear layer applied to the context, whose first p columns are θ̃."""
    v = F.linear(context, weight, bias)
    d = v.new_zeros((p + p * (p + 1) // 2, *v.shape))
    d[:p] = weight[:, :p].T[:, None, :]
    return Jet(v, d, p)


def add_context(a: Jet, context: Tensor, layer: torch.nn.Linear) -> Jet:
    """a + layer(context) (the context enters linearly in θ̃)."""
    v = a.v + layer(context)
    d = a.d.clone()
    d[:a.p] += layer.weight[:, :a.p].T[:, None, :]
    return Jet(v, d, a.p)


def _knots(u: Jet, lo: float, hi: float, minimum: float) -> tuple[Tensor, Jet, Jet]:
    """Bin edges and bin sizes of an nflows RQ spline from unnormalised sizes.

    The edge values are computed with nflows' own operations (so the bin search agrees
    with it to the bit); their derivatives follow the same linear map, with the two
    end knots pinned as nflows pins them.
    """
    k = u.v.shape[-1]
    frac = softmax(u)
    edges = torch.cumsum(minimum + (1 - minimum * k) * frac.v, dim=-1)
    edges = F.pad(edges, pad=(1, 0), mode="constant", value=0.0)
    edges = (hi - lo) * edges + lo
    edges[..., 0] = lo
    edges[..., -1] = hi
    d_edges = F.pad(torch.cumsum(frac.d, dim=-1), pad=(1, 0)) * ((hi - lo) * (1 - minimum * k))
    d_edges[..., -1] = 0.0
    sizes = Jet(edges[..., 1:] - edges[..., :-1], d_edges[..., 1:] - d_edges[..., :-1], u.p)
    return edges, Jet(edges, d_edges, u.p), sizes


def rq_spline(x: Jet, params: Jet, num_bins: int, bound: float, min_width: float,
              min_height: float, min_derivative: float) -> tuple[Jet, Jet]:
    """Forward nflows rational-quadratic spline with linear tails, and its log-slope.

    Parameters
    ----------
    x : Jet (N, D)
    params : Jet (N, D, 3·num_bins − 1)
        Unnormalised widths, heights and interior derivatives, as the MADE outputs them.

    Returns
    -------
    outputs, logabsdet : Jet (N, D)
    """
    k, p = num_bins, x.p
    inside = (x.v >= -bound) & (x.v <= bound)
    xin = Jet(x.v.clamp(-bound, bound), x.d, p)
    widths_u = Jet(params.v[..., :k], params.d[..., :k], p)
    heights_u = Jet(params.v[..., k:2 * k], params.d[..., k:2 * k], p)
    end = float(np.log(np.exp(1 - min_derivative) - 1))  # slope 1 at the tails
    deriv_u = Jet(F.pad(params.v[..., 2 * k:], pad=(1, 1), value=end),
                  F.pad(params.d[..., 2 * k:], pad=(1, 1)), p)

    w_edges, cumw, widths = _knots(widths_u, -bound, bound, min_width)
    _, cumh, heights = _knots(heights_u, -bound, bound, min_height)
    search = w_edges.clone()
    search[..., -1] += 1e-6  # nflows' searchsorted
    idx = (torch.sum(xin.v[..., None] >= search, dim=-1) - 1).clamp(0, k - 1)[..., None]

    x0, w, y0, h = gather(cumw, idx), gather(widths, idx), gather(cumh, idx), gather(heights, idx)
    d0 = softplus(gather(deriv_u, idx)).shift(min_derivative)
    d1 = softplus(gather(deriv_u, idx + 1)).shift(min_derivative)
    delta = mul(h, reciprocal(w))
    t = mul(xin - x0, reciprocal(w))
    t_sq = square(t)
    t1mt = t - t_sq
    num = mul(h, mul(delta, t_sq) + mul(d0, t1mt))
    den = delta + mul(d0 + d1 - delta.scale(2.0), t1mt)
    out = y0 + mul(num, reciprocal(den))
    slope_num = mul(square(delta), mul(d1, t_sq) + mul(delta, t1mt).scale(2.0)
                    + mul(d0, square(t.scale(-1.0).shift(1.0))))
    lad = log(slope_num) - log(den).scale(2.0)

    out = Jet(torch.where(inside, out.v, x.v), torch.where(inside, out.d, x.d), p)
    lad = Jet(torch.where(inside, lad.v, 0.0), torch.where(inside, lad.d, 0.0), p)
    return out, lad


def _made(net: MADE, x: Jet, context: Tensor, weights: dict[int, Tensor]) -> Jet:
    """MADE forward on jets; ``weights`` holds the masked weight of each MaskedLinear."""
    p = x.p
    h = linear(x, weights[id(net.initial_layer)], net.initial_layer.bias)
    ctx = context_jet(context, net.context_layer.weight, net.context_layer.bias, p)
    h = h + silu(ctx)
    if not net.use_residual_blocks:
        h = silu(h)
    for block in net.blocks:
        if isinstance(block, MaskedResidualBlock):
            first, second = block.linear_layers
            t = linear(silu(h), weights[id(first)], first.bias)
            t = silu(add_context(t, context, block.context_layer))
            h = h + linear(t, weights[id(second)], second.bias)
        else:
            h = silu(linear(h, weights[id(block.linear)], block.linear.bias))
    return linear(h, weights[id(net.final_layer)], net.final_layer.bias)


def supports(flow: torch.nn.Module) -> bool:
    """Whether :class:`FlowJet` understands this flow (else use autograd)."""
    inner = getattr(flow, "flow", None)
    if inner is None or not hasattr(flow, "summary_mean"):
        return False
    if not isinstance(inner._distribution, StandardNormal):
        return False
    if not isinstance(inner._embedding_net, torch.nn.Identity):
        return False
    if not isinstance(inner._transform, CompositeTransform):
        return False
    for t in inner._transform._transforms:
        if isinstance(t, Permutation):
            if t._dim != 1:
                return False
            continue
        if not isinstance(t, RQTransform) or t.tails != "linear":
            return False
        net = t.autoregressive_net
        if not isinstance(net, MADE) or net.activation is not F.silu:
            return False
        if not hasattr(net, "context_layer"):
            return False
        for block in net.blocks:
            if isinstance(block, MaskedResidualBlock):
                if block.use_batch_norm or not hasattr(block, "context_layer"):
                    return False
            elif isinstance(block, MaskedFeedforwardBlock):
                if block.batch_norm is not None:
                    return False
            else:
                return False
            if block.training and block.dropout.p > 0:
                return False
    return True


class FlowJet:
    """Value, θ̃-gradient and θ̃-Hessian of ``VectorFlow.log_prob`` without autograd.

    Parameters
    ----------
    flow : VectorFlow
        Must pass :func:`supports`. Its context is (θ̃ (P), protocol vector).
    n_params : int
        P, the number of leading context columns that are θ̃.
    """

    def __init__(self, flow: torch.nn.Module, n_params: int):
        if not supports(flow):
            raise ValueError("flow structure not supported by FlowJet; use autograd")
        self.flow = flow
        self.p = n_params
        self.steps = list(flow.flow._transform._transforms)
        with torch.no_grad():
            self.weights = {id(m): (m.weight * m.mask).detach()
                            for t in self.steps if isinstance(t, RQTransform)
                            for m in t.autoregressive_net.modules() if hasattr(m, "mask")}

    @torch.no_grad()
    def __call__(self, s: Tensor, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """log q(s | context) (N,), gradient (N, P) and Hessian (N, P, P) in θ̃.

        ``context`` is (N, C) with θ̃ in its first P columns.
        """
        p, flow = self.p, self.flow
        z = constant((s - flow.summary_mean) / flow.summary_sd, p)
        total = constant(torch.zeros_like(z.v[:, 0]), p)
        for step in self.steps:
            if isinstance(step, Permutation):
                perm = step._permutation
                z = Jet(z.v[:, perm], z.d[:, :, perm], p)
                continue
            out = _made(step.autoregressive_net, z, context, self.weights)
            n, dim = z.v.shape
            mult = step._output_dim_multiplier()
            params = Jet(out.v.view(n, dim, mult), out.d.view(-1, n, dim, mult), p)
            if hasattr(step.autoregressive_net, "hidden_features"):
                scale = 1.0 / np.sqrt(step.autoregressive_net.hidden_features)
                lead = 2 * step.num_bins
                params = Jet(torch.cat([params.v[..., :lead] * scale, params.v[..., lead:]], -1),
                             torch.cat([params.d[..., :lead] * scale, params.d[..., lead:]], -1),
                             p)
            z, lad = rq_spline(z, params, step.num_bins, step.tail_bound, step.min_bin_width,
                               step.min_bin_height, step.min_derivative)
            total = total + Jet(lad.v.sum(-1), lad.d.sum(-1), p)
        sq = square(z)
        base = Jet(sq.v.sum(-1), sq.d.sum(-1), p).scale(-0.5)
        const = 0.5 * z.v.shape[1] * np.log(2 * np.pi) + torch.log(flow.summary_sd).sum()
        result = (base + total).shift(-const)
        hess = result.v.new_empty((result.v.shape[0], p, p))
        for k, (i, j) in enumerate(pairs(p)):
            hess[:, i, j] = result.d[p + k]
            hess[:, j, i] = result.d[p + k]
        return result.v, result.d[:p].T, hess
