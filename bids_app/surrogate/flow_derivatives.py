"""log q(S | θ̃) of the 2p flow with its exact θ̃-gradient and Hessian, by forward-mode
second-order propagation ("jets") through nflows' masked autoregressive spline flow.

Why not autograd: the double backward for 32k vertices spends most of its time
re-traversing the graph once per Hessian row. Here every intermediate tensor carries
its value, its P first derivatives and its P(P+1)/2 distinct second derivatives with
respect to θ̃ (the first P context entries) in one pass: linear layers act on all
channels with one matmul, element-wise functions use f, f′ and f″, and the
rational-quadratic spline is differentiated analytically after its bin has been found
from the values. The result equals autograd's to rounding, including the linear tails
(identity) and next to knots, where the gradient jumps: the bin is found from knots
computed by nflows' formulas, so only an input within rounding of a knot could get the
other one-sided derivative.

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
# (M, chunk, hidden) channel tensors stay near the CPU caches (measured on the 2p flow,
# 1 thread: 2048-8192 within noise of each other, 1024 and 32k slower).
CHUNK = 4096


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


def apply(x: Jet, f: Tensor, fp: Tensor, fpp: Tensor | float) -> Jet:
    """Chain rule for an element-wise function with values f, f′, f″ at x.v."""
    p = x.p
    d = x.d * fp
    first = x.d[:p] * fpp
    for k, (i, j) in enumerate(pairs(p)):
        d[p + k].addcmul_(first[i], x.d[j])
    return Jet(f, d, p)


def mul(a: Jet, b: Jet) -> Jet:
    p = a.p
    d = torch.addcmul(a.d * b.v, b.d, a.v)
    for k, (i, j) in enumerate(pairs(p)):
        d[p + k].addcmul_(a.d[i], b.d[j]).addcmul_(a.d[j], b.d[i])
    return Jet(a.v * b.v, d, p)


def square(a: Jet) -> Jet:
    return apply(a, a.v * a.v, 2.0 * a.v, 2.0)


def reciprocal(a: Jet) -> Jet:
    r = 1.0 / a.v
    return apply(a, r, -r * r, 2.0 * r * r * r)


def log(a: Jet) -> Jet:
    r = 1.0 / a.v
    return apply(a, torch.log(a.v), r, -r * r)


def softplus(a: Jet) -> Jet:
    s = torch.sigmoid(a.v)
    return apply(a, F.softplus(a.v), s, s * (1.0 - s))


def linear(a: Jet, weight: Tensor, bias: Tensor | None) -> Jet:
    return Jet(F.linear(a.v, weight, bias), F.linear(a.d, weight), a.p)


def _silu_derivatives(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """SiLU and its first two derivatives at v."""
    s = torch.sigmoid(v)
    one_minus = 1.0 - s
    f = F.silu(v)
    fp = torch.addcmul(s, f, one_minus)  # s (1 + v (1 − s))
    fpp = s * one_minus * (2.0 + v * (one_minus - s))
    return f, fp, fpp


def silu(a: Jet) -> Jet:
    return apply(a, *_silu_derivatives(a.v))


def silu_of_context(context: Tensor, layer: torch.nn.Linear, p: int) -> Jet:
    """silu(layer(context)) where the first p context columns are θ̃: the pre-activation's
    derivatives are the layer's weight columns (constant), so no channel tensors are
    propagated into it."""
    f, fp, fpp = _silu_derivatives(layer(context))
    w = layer.weight[:, :p].T
    d = f.new_empty((p + p * (p + 1) // 2, *f.shape))
    torch.mul(fp, w[:, None, :], out=d[:p])
    for k, (i, j) in enumerate(pairs(p)):
        torch.mul(fpp, w[i] * w[j], out=d[p + k])
    return Jet(f, d, p)


def add_context_(a: Jet, context: Tensor, layer: torch.nn.Linear) -> Jet:
    """a + layer(context), in place (a must not be used elsewhere)."""
    a.v.add_(layer(context))
    a.d[:a.p] += layer.weight[:, :a.p].T[:, None, :]
    return a


def _edges(u: Tensor, lo: float, hi: float, minimum: float) -> tuple[Tensor, Tensor]:
    """Softmax fractions and knot positions of an nflows RQ spline, bins on dim 1.

    Same formulas as nflows; the softmax is written out because torch's kernel is slow
    for rows of ~8 (it agrees with nflows' knots to rounding).
    """
    k = u.shape[1]
    e = torch.exp(u - u.amax(1, keepdim=True))
    frac = e / e.sum(1, keepdim=True)
    edges = torch.cumsum(minimum + (1 - minimum * k) * frac, dim=1)
    edges = torch.cat([torch.zeros_like(edges[:, :1]), edges], 1)
    edges = (hi - lo) * edges + lo
    edges[:, 0] = lo
    edges[:, -1] = hi
    return frac, edges


def _selected_sums(frac: Tensor, selectors: Tensor, du: Tensor, p: int) -> Tensor:
    """θ̃-derivatives of Q = Σ_m σ_m softmax(u)_m for constant selectors σ.

    With g = s ⊙ (σ − Q): ∂Q/∂u = g and ∂²Q/∂u∂u = diag(g) − g sᵀ − s gᵀ, so by the
    chain rule Q_i = ⟨g, u_i⟩ and Q_ij = ⟨g, u_ij⟩ + ⟨g, u_i ⊙ u_j⟩ − Q_i⟨s, u_j⟩ −
    ⟨s, u_i⟩Q_j. A knot is such a sum (σ = 1 below its index) up to an affine map; the
    end knots come out pinned (σ all 0 or all 1 gives g = 0), as nflows pins them.

    Parameters
    ----------
    frac : (L, K, 1, N) softmax values s over the K bins
    selectors : (S, L, K, 1, N)
    du : (L, K, M, N) derivative channels of u

    Returns
    -------
    (S, L, M, N)
    """
    q = (selectors * frac).sum(2, keepdim=True)
    g = frac * (selectors - q)
    weighted = g * du
    out = weighted.sum(2)
    s_dot = (frac * du[:, :, :p]).sum(1)
    for k, (i, j) in enumerate(pairs(p)):
        out[:, :, p + k] += ((weighted[:, :, :, i] * du[:, :, j]).sum(2)
                             - out[:, :, i] * s_dot[:, j] - s_dot[:, i] * out[:, :, j])
    return out


def rq_spline(x: Jet, params: Tensor, d_params: Tensor, live: Tensor, num_bins: int,
              bound: float, min_width: float, min_height: float, min_derivative: float
              ) -> tuple[Jet, Jet]:
    """Forward nflows rational-quadratic spline with linear tails, and its log-slope.

    Works feature-major with the bins on dim 1, so that sums over the few bins run over
    contiguous blocks.

    Parameters
    ----------
    x : Jet (D, N)
    params : Tensor (D, 3·num_bins − 1, N)
        Unnormalised widths, heights and interior derivatives, as the MADE outputs them.
    d_params : Tensor (L, 3·num_bins − 1, M, N)
        Their θ̃-derivatives for the L features in ``live``; the others' are zero.

    Returns
    -------
    outputs, logabsdet : Jet (D, N)
    """
    k, p = num_bins, x.p
    inside = (x.v >= -bound) & (x.v <= bound)
    xv = x.v.clamp(-bound, bound)
    end = float(np.log(np.exp(1 - min_derivative) - 1))  # slope 1 at the tails
    w_frac, w_edges = _edges(params[:, :k], -bound, bound, min_width)
    h_frac, h_edges = _edges(params[:, k:2 * k], -bound, bound, min_height)
    ends = torch.full_like(params[:, :1], end)
    slopes = torch.cat([ends, params[:, 2 * k:], ends], 1)
    search = w_edges.clone()
    search[:, -1] += 1e-6  # nflows' searchsorted
    idx = (torch.sum(xv[:, None] >= search, dim=1) - 1).clamp(0, k - 1)[:, None]
    both = torch.cat([idx, idx + 1], 1)
    x01, y01, s01 = w_edges.gather(1, both), h_edges.gather(1, both), slopes.gather(1, both)

    # θ̃-derivatives of the knots (x0, x1), (y0, y1) and raw slopes of the live features.
    m = x.d.shape[0]
    d_knots = x.v.new_zeros((4, m, *x.v.shape))
    d_slopes = x.v.new_zeros((2, m, *x.v.shape))
    lidx = idx[live]  # (L, 1, N)
    bins = torch.arange(k)[:, None]
    selectors = torch.stack([bins < lidx, bins <= lidx]).to(x.v.dtype)[:, :, :, None]
    for j, (frac, du, minimum) in enumerate(((w_frac, d_params[:, :k], min_width),
                                             (h_frac, d_params[:, k:2 * k], min_height))):
        sums = _selected_sums(frac[live, :, None], selectors, du, p)
        d_knots[2 * j:2 * j + 2, :, live] = (sums * (2 * bound * (1 - minimum * k))
                                             ).transpose(1, 2)
    zero = torch.zeros_like(d_params[:, :1])
    d_raw = torch.cat([zero, d_params[:, 2 * k:], zero], 1)
    for j in range(2):
        at = (lidx + j)[:, :, None].expand(-1, -1, m, -1)
        d_slopes[j][:, live] = d_raw.gather(1, at)[:, 0].transpose(0, 1)
    x0, x1 = Jet(x01[:, 0], d_knots[0], p), Jet(x01[:, 1], d_knots[1], p)
    y0, y1 = Jet(y01[:, 0], d_knots[2], p), Jet(y01[:, 1], d_knots[3], p)
    d0 = softplus(Jet(s01[:, 0], d_slopes[0], p)).shift(min_derivative)
    d1 = softplus(Jet(s01[:, 1], d_slopes[1], p)).shift(min_derivative)

    w, h = x1 - x0, y1 - y0
    inv_w = reciprocal(w)
    delta = mul(h, inv_w)
    t = mul(Jet(xv, x.d, p) - x0, inv_w)
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


def _made_hidden(net: MADE, x: Jet, context: Tensor, weights: dict[int, Tensor]) -> Jet:
    """MADE up to (not including) its output layer, on jets; ``weights`` holds the
    masked weight of each MaskedLinear."""
    p = x.p
    h = linear(x, weights[id(net.initial_layer)], net.initial_layer.bias)
    h = h + silu_of_context(context, net.context_layer, p)
    if not net.use_residual_blocks:
        h = silu(h)
    for block in net.blocks:
        if isinstance(block, MaskedResidualBlock):
            first, second = block.linear_layers
            t = linear(silu(h), weights[id(first)], first.bias)
            t = silu(add_context_(t, context, block.context_layer))
            h = h + linear(t, weights[id(second)], second.bias)
        else:
            h = silu(linear(h, weights[id(block.linear)], block.linear.bias))
    return h


@dataclass
class _Output:
    """A MADE output layer prepared for jets.

    Rows feed feature ``row // mult``; those of the first feature in the autoregressive
    order are masked from every hidden unit, so their spline parameters are constants
    and only the ``live`` features' rows carry derivatives. nflows versions whose MADE
    has ``hidden_features`` divide the width and height logits by its square root:
    that is folded into the weights here.
    """

    weight: Tensor
    bias: Tensor
    live: Tensor
    live_weight: Tensor

    @classmethod
    def of(cls, step: RQTransform) -> _Output:
        net = step.autoregressive_net
        layer = net.final_layer
        mult = step._output_dim_multiplier()
        weight, bias = layer.weight * layer.mask, layer.bias.clone()
        if hasattr(net, "hidden_features"):
            rows = torch.arange(len(bias)) % mult < 2 * step.num_bins
            weight[rows] /= np.sqrt(net.hidden_features)
            bias[rows] /= np.sqrt(net.hidden_features)
        per_feature = layer.mask.view(-1, mult, layer.mask.shape[1]).flatten(1)
        live = torch.nonzero(per_feature.any(1))[:, 0]
        live_weight = weight.view(-1, mult, weight.shape[1])[live].reshape(-1, weight.shape[1])
        return cls(weight.detach(), bias.detach(), live, live_weight.detach())


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
            self.outputs = {id(t): _Output.of(t) for t in self.steps
                            if isinstance(t, RQTransform)}

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
            hidden = _made_hidden(step.autoregressive_net, z, context, self.weights)
            head = self.outputs[id(step)]
            n, dim = z.v.shape
            # Feature-major outputs: (D, 3K − 1, N) and (L, 3K − 1, M, N).
            params = torch.addmm(head.bias[:, None], head.weight, hidden.v.T).view(dim, -1, n)
            d_params = torch.mm(head.live_weight, hidden.d.reshape(-1, hidden.d.shape[-1]).T)
            d_params = d_params.view(len(head.live), -1, hidden.d.shape[0], n)
            out, lad = rq_spline(Jet(z.v.T, z.d.transpose(1, 2), p), params, d_params,
                                 head.live, step.num_bins, step.tail_bound, step.min_bin_width,
                                 step.min_bin_height, step.min_derivative)
            z = Jet(out.v.T, out.d.transpose(1, 2), p)
            total = total + Jet(lad.v.sum(0), lad.d.sum(1), p)
        sq = square(z)
        base = Jet(sq.v.sum(-1), sq.d.sum(-1), p).scale(-0.5)
        const = 0.5 * z.v.shape[1] * np.log(2 * np.pi) + torch.log(flow.summary_sd).sum()
        result = (base + total).shift(-const)
        hess = result.v.new_empty((result.v.shape[0], p, p))
        for k, (i, j) in enumerate(pairs(p)):
            hess[:, i, j] = result.d[p + k]
            hess[:, j, i] = result.d[p + k]
        return result.v, result.d[:p].T, hess
