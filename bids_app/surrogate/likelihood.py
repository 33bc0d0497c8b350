"""Fast per-vertex log q(S_v | θ̃_v) with gradient and Hessian in θ̃ (CONTRIBUTING.md).

Vertices are independent given θ̃, so derivatives of Σ_v log q_v with respect to the
stacked θ̃ are the per-vertex derivatives ("sum trick"): one backward pass gives every
gradient and one more per parameter gives every Hessian row, instead of a
double-backward per vertex. For the one-parameter model the flow is tabulated once per
protocol on a fine (S, θ̃) grid and interpolated with a bicubic spline (C², analytic
derivatives), which turns each Newton iteration into a few array look-ups. The
two-parameter flow is differentiated exactly in one forward pass that carries first and
second θ̃-derivatives (:mod:`bids_app.surrogate.flow_derivatives`); autograd remains
the reference and the fallback for flow structures that module does not know.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from scipy.interpolate import RectBivariateSpline, make_interp_spline

from bids_app.surrogate.flow_derivatives import CHUNK as JET_CHUNK
from bids_app.surrogate.flow_derivatives import FlowJet, supports

LoglikFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]

# Latent range of the table; N(0, 1) training draws almost never leave it.
THETA_LIMIT = 5.0
CHUNK = 16384


def autograd_loglik(flow: torch.nn.Module, summaries: np.ndarray, protocol_vec: np.ndarray,
                    n_params: int | None = None) -> LoglikFn:
    """Exact log q(S | θ̃) and its θ̃-derivatives by automatic differentiation.

    Parameters
    ----------
    flow : ScalarFlow or VectorFlow
        Context is (θ̃, protocol vector).
    summaries : array (V, S)
    protocol_vec : array (3,)
    n_params : int, optional
        P, the θ̃ columns of the context (default S: one summary per parameter).

    Returns
    -------
    callable theta_t (V, P) -> value (V,), grad (V, P), hess (V, P, P), float64.
    """
    dtype = next(flow.parameters()).dtype
    s_all = torch.as_tensor(np.asarray(summaries), dtype=dtype)
    proto = torch.as_tensor(np.asarray(protocol_vec), dtype=dtype)
    shape = (len(s_all), n_params or s_all.shape[1])

    def loglik(theta_t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        theta_t = np.asarray(theta_t, dtype=float).reshape(shape)
        n, p = theta_t.shape
        value, grad, hess = np.empty(n), np.empty((n, p)), np.empty((n, p, p))
        for start in range(0, n, CHUNK):
            rows = slice(start, start + CHUNK)
            th = torch.tensor(theta_t[rows], dtype=dtype, requires_grad=True)
            context = torch.cat([th, proto.expand(th.shape[0], -1)], dim=1)
            lp = flow.log_prob(s_all[rows], context)
            (g,) = torch.autograd.grad(lp.sum(), th, create_graph=True)
            for i in range(p):
                (h_row,) = torch.autograd.grad(g[:, i].sum(), th, retain_graph=i < p - 1)
                hess[rows, i, :] = h_row.numpy()
            value[rows] = lp.detach().numpy()
            grad[rows] = g.detach().numpy()
        return value, grad, hess

    return loglik


def flow_loglik(flow: torch.nn.Module, summaries: np.ndarray, protocol_vec: np.ndarray,
                n_params: int | None = None) -> LoglikFn:
    """The fastest exact log q(S | θ̃) with derivatives that the flow's structure allows.

    Flows :mod:`bids_app.surrogate.flow_derivatives` understands (the shipped 2p
    VectorFlow) get forward-mode second-order propagation; anything else gets
    :func:`autograd_loglik`. Both agree to rounding.
    """
    if not supports(flow):
        return autograd_loglik(flow, summaries, protocol_vec, n_params)
    dtype = next(flow.parameters()).dtype
    s_all = torch.as_tensor(np.asarray(summaries), dtype=dtype)
    proto = torch.as_tensor(np.asarray(protocol_vec), dtype=dtype)
    shape = (len(s_all), n_params or s_all.shape[1])
    jet = FlowJet(flow, shape[1])

    def loglik(theta_t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        theta = torch.as_tensor(np.asarray(theta_t, dtype=float).reshape(shape),
                                dtype=dtype)
        context = torch.cat([theta, proto.expand(theta.shape[0], -1)], dim=1)
        parts = [jet(s_all[rows], context[rows])
                 for rows in (slice(a, a + JET_CHUNK) for a in range(0, len(theta), JET_CHUNK))]
        value, grad, hess = (torch.cat(x).double().numpy() for x in zip(*parts, strict=True))
        return value, grad, hess

    return loglik


class LoglikTable:
    """Bicubic-spline tabulation of log q(s | θ̃, protocol) for a scalar summary.

    Parameters
    ----------
    flow : ScalarFlow
    protocol_vec : array (3,)
    n_s, n_theta : int
        Grid sizes over s ∈ mean ± ``s_sds``·sd of the training summaries and
        θ̃ ∈ [−5, 5].

    Notes
    -----
    Inside the grid the interpolant is C² in θ̃. Summaries outside the s range are
    clipped onto it; θ̃ beyond ±5 continues the boundary value and slope with a
    concave quadratic (C¹ there), which only a wildly diverging optimiser reaches.
    """

    def __init__(self, flow: torch.nn.Module, protocol_vec: np.ndarray, n_s: int = 601,
                 n_theta: int = 321, s_sds: float = 6.0):
        mean, sd = float(flow.summary_mean), float(flow.summary_sd)
        self.s_grid = np.linspace(mean - s_sds * sd, mean + s_sds * sd, n_s)
        self.theta_grid = np.linspace(-THETA_LIMIT, THETA_LIMIT, n_theta)
        self.table = exact_grid(flow, protocol_vec, self.s_grid, self.theta_grid)
        self.spline = RectBivariateSpline(self.s_grid, self.theta_grid, self.table,
                                          kx=3, ky=3, s=0)
        self.s_knots, self.theta_knots = self.spline.get_knots()
        self.coeffs = self.spline.get_coeffs().reshape(self.s_knots.size - 4,
                                                       self.theta_knots.size - 4)

    def evaluate(self, s: np.ndarray, theta_t: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Value, d/dθ̃ and d²/dθ̃² at paired points s (V,), θ̃ (V,)."""
        return self._evaluate(self._s_weights(s), theta_t)

    def _s_weights(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Knot span and cubic B-spline weights (V, 4) of summaries s (clipped onto the
        grid): fixed for a bound likelihood, so a Newton iteration only evaluates θ̃."""
        s = np.clip(np.asarray(s, dtype=np.float64), self.s_grid[0], self.s_grid[-1])
        span, bases = cubic_bases(self.s_knots, s)
        return span, bases[2]

    def _evaluate(self, s_weights: tuple[np.ndarray, np.ndarray], theta_t: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The spline and its θ̃-derivatives in one pass (three ``spline.ev`` calls cost
        four times as much, 16 % of a bootstrap refit at fsLR 32k: benchmarks/RESULTS.md,
        "fsLR 32k intervals under 10 minutes"); equal to them to rounding. Per vertex the
        s-weights contract the coefficients to a cubic spline in θ̃."""
        theta_t = np.asarray(theta_t, dtype=np.float64)
        inner = np.clip(theta_t, -THETA_LIMIT, THETA_LIMIT)
        s_span, s_basis = s_weights
        span, bases = cubic_bases(self.theta_knots, inner)
        # the 4 × 4 coefficients around each point, gathered as four runs of four
        windows = sliding_window_view(self.coeffs, 4, axis=1)
        block = windows[s_span[:, None] + np.arange(-3, 1), (span - 3)[:, None]]
        c = np.einsum("va,vab->vb", s_basis, block)  # coefficients d_{i-3..i} in θ̃
        return theta_spline(self.theta_knots, span, bases, c, theta_t - inner)

    def bind(self, summaries: np.ndarray) -> LoglikFn:
        """The contract callable for fixed summaries (V, 1)."""
        s_weights = self._s_weights(np.asarray(summaries, dtype=np.float64).reshape(-1))

        def loglik(theta_t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            th = np.asarray(theta_t, dtype=np.float64).reshape(-1)
            value, d1, d2 = self._evaluate(s_weights, th)
            return value, d1[:, None], d2[:, None, None]

        return loglik


class LoglikTable2:
    """Tricubic-spline tabulation of log q(s₁, s₂ | θ̃, protocol) for a one-parameter
    summary with a second output (``hemocoupling-train --summary-extra``).

    As :class:`LoglikTable` with one more summary axis: the flow is evaluated once per
    protocol on a grid, interpolated by a not-a-knot tensor-product cubic spline, and
    for fixed summaries each vertex's weights contract the coefficients to one cubic
    spline in θ̃, so a Newton iteration costs a few array look-ups. The two outputs are
    nearly collinear (correlation −0.90 to −0.99 given θ̃ for the slow-end cards), so the
    grid is laid along the summaries' principal axes (:func:`summary_axes`), each spanning
    ``s_sds`` of its own SD: on the raw axes the narrow one fell between grid lines.
    Figures (table error, build and evaluation time against the exact jets):
    benchmarks/RESULTS.md, "the two-output summary, tabulated".
    """

    def __init__(self, flow: torch.nn.Module, protocol_vec: np.ndarray, n_s: int = 101,
                 n_theta: int = 161, s_sds: float = 6.0):
        self.centre, self.rotation, scales = summary_axes(flow, protocol_vec)
        self.s_grids = [np.linspace(-s_sds * d, s_sds * d, n_s) for d in scales]
        self.theta_grid = np.linspace(-THETA_LIMIT, THETA_LIMIT, n_theta)
        u = np.stack(np.meshgrid(*self.s_grids, indexing="ij"), -1).reshape(-1, 2)
        s = self.centre + u @ self.rotation.T
        coeffs = exact_grid2(flow, protocol_vec, s, self.theta_grid).reshape(n_s, n_s, -1)
        knots = []
        for axis, grid in enumerate((*self.s_grids, self.theta_grid)):
            spline = make_interp_spline(grid, coeffs, k=3, axis=axis)
            coeffs = np.moveaxis(spline.c, 0, axis)
            knots.append(spline.t)
        self.s_knots, self.theta_knots = knots[:2], knots[2]
        self.coeffs = coeffs  # (n_s, n_s, n_theta)

    def s_weights(self, summaries: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per principal axis the knot spans (V,) and cubic B-spline weights (V, 4) of the
        summaries (V, 2), clipped onto the grid: fixed for a bound likelihood."""
        u = (np.asarray(summaries, dtype=np.float64).reshape(-1, 2) - self.centre) @ self.rotation
        weights = []
        for i, (knots, grid) in enumerate(zip(self.s_knots, self.s_grids, strict=True)):
            span, bases = cubic_bases(knots, np.clip(u[:, i], grid[0], grid[-1]))
            weights.append((span, bases[2]))
        return weights

    def bind(self, summaries: np.ndarray) -> LoglikFn:
        """The contract callable for fixed summaries (V, 2): per evaluation, the 4 × 4 × 4
        coefficients around each point are contracted to a cubic in θ̃."""
        (span1, w1), (span2, w2) = self.s_weights(summaries)
        i1 = (span1[:, None] + np.arange(-3, 1))[:, :, None, None]
        i2 = (span2[:, None] + np.arange(-3, 1))[:, None, :, None]

        def loglik(theta_t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            th = np.asarray(theta_t, dtype=np.float64).reshape(-1)
            inner = np.clip(th, -THETA_LIMIT, THETA_LIMIT)
            span, bases = cubic_bases(self.theta_knots, inner)
            i3 = (span[:, None] + np.arange(-3, 1))[:, None, None, :]
            c = np.einsum("va,vb,vabt->vt", w1, w2, self.coeffs[i1, i2, i3])
            value, d1, d2 = theta_spline(self.theta_knots, span, bases, c, th - inner)
            return value, d1[:, None], d2[:, None, None]

        return loglik


def theta_spline(knots: np.ndarray, span: np.ndarray, bases: list[np.ndarray],
                 c: np.ndarray, beyond: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value and first two derivatives of per-point cubic splines in θ̃ (coefficients
    ``c`` (V, 4) on the knot span, B-spline ``bases`` from :func:`cubic_bases`): the
    derivatives are the splines of the differenced coefficients (de Boor). Points
    ``beyond`` the table continue its boundary value and slope with a concave quadratic."""
    b1, b2, b3 = bases
    j = span[:, None] + np.arange(-2, 1)
    c1 = 3.0 * np.diff(c, axis=1) / (knots[j + 3] - knots[j])
    j = span[:, None] + np.arange(-1, 1)
    c2 = 2.0 * np.diff(c1, axis=1) / (knots[j + 2] - knots[j])
    value = np.einsum("vb,vb->v", b3, c)
    d1 = np.einsum("vb,vb->v", b2, c1)
    d2 = np.einsum("vb,vb->v", b1, c2)
    if np.any(beyond):
        curv = np.minimum(d2, -1.0)
        value = value + d1 * beyond + 0.5 * curv * beyond**2
        d1 = d1 + curv * beyond
        d2 = np.where(beyond != 0, curv, d2)
    return value, d1, d2


def cubic_bases(knots: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Knot span i of each x (knots[i] ≤ x < knots[i + 1]; the last span at the right
    end) and the non-zero B-splines there of degree 1, 2 and 3, B_{i−p … i, p}(x):
    arrays (n, 2), (n, 3), (n, 4) (Cox–de Boor, The NURBS Book algorithm A2.2)."""
    span = np.clip(np.searchsorted(knots, x, side="right") - 1, 3, knots.size - 5)
    left = [x - knots[span + 1 - j] for j in range(4)]
    right = [knots[span + j] - x for j in range(4)]
    basis, out = [np.ones_like(x)], []
    for j in range(1, 4):
        saved, new = np.zeros_like(x), []
        for r in range(j):
            temp = basis[r] / (right[r + 1] + left[j - r])
            new.append(saved + right[r + 1] * temp)
            saved = left[j - r] * temp
        basis = [*new, saved]
        out.append(np.stack(basis, axis=1))
    return span, out


@torch.no_grad()
def exact_grid(flow: torch.nn.Module, protocol_vec: np.ndarray, s_grid: np.ndarray,
               theta_grid: np.ndarray) -> np.ndarray:
    """log q(s | θ̃) of the flow itself on the outer grid (n_s, n_theta), float64."""
    dtype = next(flow.parameters()).dtype
    proto = torch.as_tensor(np.asarray(protocol_vec), dtype=dtype)
    theta = torch.as_tensor(theta_grid, dtype=dtype)[:, None]
    context = torch.cat([theta, proto.expand(theta.shape[0], -1)], dim=1)
    s = torch.as_tensor(s_grid, dtype=dtype)
    return flow.log_prob_grid(s, context).double().numpy()


@torch.no_grad()
def exact_grid2(flow: torch.nn.Module, protocol_vec: np.ndarray, s_points: np.ndarray,
                theta_grid: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """log q(s | θ̃) of a two-output flow at summaries (n, 2) × θ̃ values: (n, n_θ),
    float64."""
    dtype = next(flow.parameters()).dtype
    n, n_theta = len(s_points), len(theta_grid)
    s_all = np.repeat(s_points, n_theta, axis=0)
    theta_all = np.tile(theta_grid, n)[:, None]
    proto = torch.as_tensor(np.asarray(protocol_vec), dtype=dtype)
    out = np.empty(len(s_all))
    for start in range(0, len(s_all), chunk):
        rows = slice(start, start + chunk)
        theta = torch.as_tensor(theta_all[rows], dtype=dtype)
        context = torch.cat([theta, proto.expand(len(theta), -1)], dim=1)
        out[rows] = flow.log_prob(torch.as_tensor(s_all[rows], dtype=dtype),
                                  context).double().numpy()
    return out.reshape(n, n_theta)


@torch.no_grad()
def summary_axes(flow: torch.nn.Module, protocol_vec: np.ndarray, n: int = 20000,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre (2,), principal axes (2, 2; columns) and their SDs (2,) of summaries the
    flow draws at the protocol, θ̃ ~ N(0, 1) as in training (a fixed seed: the same
    table every time)."""
    dtype = next(flow.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)
    theta = torch.randn(n, 1, generator=generator, dtype=dtype)
    proto = torch.as_tensor(np.asarray(protocol_vec), dtype=dtype)
    s = flow.sample(torch.cat([theta, proto.expand(n, -1)], dim=1), generator)
    s = s.double().numpy()
    variances, rotation = np.linalg.eigh(np.cov(s, rowvar=False))
    return s.mean(axis=0), rotation, np.sqrt(variances)


def table_error(flow: torch.nn.Module, protocol_vec: np.ndarray, n: int = 5000,
                seed: int = 0) -> dict[str, float]:
    """Tabulation error against the flow itself at random off-grid points.

    Points are drawn uniformly over the table's (s, θ̃ ∈ [−4, 4]) box; errors are also
    reported where the density matters (log q within 10 nats of its maximum over the
    sample). RQ splines are C¹ in θ̃, so the flow's own gradient jumps at knots and
    the gradient error is largest there.
    """
    table = LoglikTable(flow, protocol_vec)
    rng = np.random.default_rng(seed)
    s = rng.uniform(table.s_grid[0], table.s_grid[-1], n)
    theta = rng.uniform(-4.0, 4.0, n)
    value, grad, _ = table.bind(s[:, None])(theta[:, None])
    exact, exact_grad, _ = autograd_loglik(flow, s[:, None], protocol_vec)(theta[:, None])
    bulk = exact > exact.max() - 10.0
    err, gerr = np.abs(value - exact), np.abs(grad - exact_grad)[:, 0]
    return {"value_max": float(err.max()), "value_max_bulk": float(err[bulk].max()),
            "value_median": float(np.median(err)),
            "grad_median_bulk": float(np.median(gerr[bulk])),
            "grad_p99_bulk": float(np.percentile(gerr[bulk], 99)), "n_points": n}
