"""Posterior mode of the latent θ̃ field under the SPDE prior, by damped Newton.

Minimises f(θ̃) = −Σ_v log q(S_v | θ̃_v) + ½ θ̃ᵀQθ̃ (docs/method.md §4). Each step solves
(D + Q) d = −∇f with a sparse Cholesky whose symbolic analysis is reused (the pattern
of D + Q is fixed). D is the per-vertex likelihood curvature −∂²log q: exact whenever
D + Q is positive definite (a learned likelihood is often locally convex where it is
flat, and the prior usually outweighs that), else with each vertex's eigenvalues
floored. Whenever a factor of a matrix on the same pattern is already held (an earlier
iterate, the neighbouring grid point), the step is first tried by conjugate gradients
preconditioned with it, and refactorised when that fails or needed many iterations.
From the second iteration the step is the model minimiser on the plane of the Newton
direction and the previous step (floored curvature slows the smooth directions), and an
Armijo backtracking line search damps it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from bids_app.inference.system import (
    NewtonSystem,
    block_prior,
    floor_blocks,
    stack,
    symmetric_blocks,
    unstack,
)
from bids_app.prior.cholesky import SparseCholesky

LogLik = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]

_ARMIJO = 1e-4
_MAX_HALVINGS = 40
# Longest first trial move of any latent value (latent units): the probit link maps ±4
# to within 3e-5 of the range ends, so a longer move overshoots every mode. Where the
# curvature is floored and the prior weak (the flat 2p latency) the Newton step is
# huge, and starting the line search here saves its halvings (likelihood calls).
_MAX_MOVE = 4.0
# Largest first-order error (nats) accepted when the Laplace log-determinant is taken
# from the factorisation of the previous iterate instead of refactorising at the mode
# (or ftol, if larger: the objective itself is only that accurate).
_LOGDET_TOL = 1e-3
# One factorisation object (and Newton system) per thread when the caller passes none,
# so repeated fits on one pattern (bootstrap refits) reuse its symbolic analysis without
# sharing a factor between threads.
_PER_THREAD = threading.local()
# Newton directions by preconditioned CG with a held factor: relative residual at which
# the direction is accepted (its predicted decrease is then exact to ~1e-8 relative)
# and the iteration budget beyond which refactorising is cheaper (a CHOLMOD solve is
# ~1/60 of a factorisation on fsLR 32k; CG needs two solves' worth of work per
# iteration at most).
_CG_RTOL = 1e-4
_CG_MAX_ITER = 30
# A direction that needed more CG iterations than this (with the held factor as
# preconditioner) means that factor is stale: the next direction comes from a fresh
# factorisation. Measured on fsLR 32k (1p, OpenBLAS): a solve is ~1/20 of a
# factorisation, so ~12 iterations plus the ~10 that follow a stale preconditioner cost
# about what refactorising does, and it keeps later iterations at 5–10.
_CG_REFRESH = 12


@dataclass(frozen=True)
class MapResult:
    """Outcome of :func:`fit_map`.

    Attributes
    ----------
    theta_t : ndarray (V, P)
        Latent MAP estimate θ̂̃.
    n_iter : int
        Newton iterations taken.
    grad_norm : float
        Final ‖∇f‖_∞.
    objective : float
        Final f(θ̂̃) (nats).
    converged : bool
        Whether a stopping criterion on the gradient or objective change was met.
    log_likelihood : float
        Σ_v log q(S_v | θ̂̃_v) over observed vertices (nats).
    prior_quadratic : float
        θ̂̃ᵀQθ̂̃.
    logdet_hessian : float
        log det(D + Q) at the mode (D the exact curvature when positive definite there),
        for the Laplace evidence; NaN if ``laplace=False`` skipped it. Where a tabulated
        likelihood is locally convex at many vertices (wiggles on a flat likelihood),
        whether the exact Hessian is positive definite can change between modes within
        0.05 nats of f, and the value with it (by 270 on the fsLR 1p study).
    history : dict of ndarray
        Per iteration (index 0 = start): ``objective``, ``grad_norm``, ``step`` (the
        accepted line-search step length; NaN at the start), ``cg_iterations`` (0 when
        the step came from a fresh factorisation, else the preconditioned-CG iterations).
    """

    theta_t: np.ndarray
    n_iter: int
    grad_norm: float
    objective: float
    converged: bool
    log_likelihood: float
    prior_quadratic: float
    logdet_hessian: float
    history: dict[str, np.ndarray] = field(repr=False)

    @property
    def objective_trace(self) -> np.ndarray:
        """f after each iteration (index 0 = start)."""
        return self.history["objective"]

    @property
    def grad_norm_trace(self) -> np.ndarray:
        """‖∇f‖_∞ after each iteration (index 0 = start)."""
        return self.history["grad_norm"]


class _Objective:
    """f, its gradient and the likelihood curvature at one point (stacked vectors)."""

    def __init__(self, loglik: LogLik, Q: sp.csc_matrix, n_params: int,
                 observed: np.ndarray | None) -> None:
        self.loglik, self.Q, self.P, self.observed = loglik, Q, n_params, observed

    def __call__(self, x: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray, float]:
        """(f, Σ log q, ∇f, −hess blocks (V, P, P), xᵀQx); f = inf where not finite."""
        theta = unstack(x, self.P)
        value, grad, hess = self.loglik(theta)
        value = np.asarray(value, dtype=float).reshape(-1)
        grad = np.asarray(grad, dtype=float).reshape(theta.shape)
        hess = np.asarray(hess, dtype=float).reshape(theta.shape[0], self.P, self.P)
        if self.observed is not None:
            value = np.where(self.observed, value, 0.0)
            grad = np.where(self.observed[:, None], grad, 0.0)
            hess = np.where(self.observed[:, None, None], hess, 0.0)
        qx = self.Q @ x
        quad = float(x @ qx)
        total = float(value.sum())
        f = -total + 0.5 * quad
        if not np.isfinite(f) or not np.all(np.isfinite(grad)) or not np.all(np.isfinite(hess)):
            return np.inf, total, qx, -hess, quad
        return f, total, qx - stack(grad), -hess, quad


def objective(loglik: LogLik, Q: sp.spmatrix, theta_t: np.ndarray,
              observed: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """f(θ̃) = −Σ_v log q(S_v | θ̃_v) + ½ θ̃ᵀQθ̃ (nats) and its gradient (V, P).

    ``Q`` and ``observed`` as in :func:`fit_map`; f is inf where the likelihood is not
    finite.
    """
    theta = np.asarray(theta_t, dtype=float)
    theta = theta[:, None] if theta.ndim == 1 else theta
    V, P = theta.shape
    mask = None if observed is None else np.asarray(observed, dtype=bool).reshape(V)
    f, _, grad, _, _ = _Objective(loglik, block_prior(Q, V, P), P, mask)(stack(theta))
    return f, unstack(grad, P)


def fit_map(loglik: LogLik, Q: sp.spmatrix, theta_t0: np.ndarray,
            chol: SparseCholesky | None = None, max_iter: int = 50, gtol: float = 1e-6,
            ftol: float = 1e-4, hess_floor: float = 1e-8,
            observed: np.ndarray | None = None, laplace: bool = True,
            reuse_factor: bool = False, keep_floor: bool = False,
            cg_rtol: float = _CG_RTOL) -> MapResult:
    """Latent MAP field by damped Newton with a reused sparse Cholesky analysis.

    Parameters
    ----------
    loglik : callable
        ``loglik(theta_t (V, P)) -> (value (V,), grad (V, P), hess (V, P, P))``, the
        per-vertex log q(S_v | θ̃_v) and its derivatives (CONTRIBUTING.md).
    Q : sparse matrix
        Prior precision, (V, V) — shared by the P fields — or (P·V, P·V) block-diagonal
        with the fields stacked field-major.
    theta_t0 : ndarray (V, P) or (V,)
        Start, usually the pointwise estimate S(y).
    chol : SparseCholesky, optional
        Reused across calls with the same pattern (grid points, bootstrap refits);
        default: one per thread, kept between calls.
    max_iter : int
        Maximum Newton iterations.
    gtol : float
        Stop when ‖∇f‖_∞ ≤ gtol (nats per latent unit).
    ftol : float
        Or when the objective change a full Newton step predicts, λ²/2 with λ the Newton
        decrement (exact for a quadratic f), is at most ftol nats.
    hess_floor : float
        Floor on the eigenvalues of each vertex's likelihood curvature block.
    observed : ndarray of bool (V,), optional
        False where a vertex has no usable data (NaN or constant series): its likelihood
        is dropped and the prior alone sets its value.
    laplace : bool
        Whether to make sure ``logdet_hessian`` is exact at the mode (one more
        factorisation when the last one was elsewhere); False for refits that only need
        the estimate (``logdet_hessian`` is then NaN unless already available).
    reuse_factor : bool
        Whether a factor ``chol`` holds from before this call (same pattern: another
        (κ, τ²), a previous fit) may precondition the first steps. It saves
        factorisations in a sequential evidence search, but makes the result depend,
        within the tolerances, on what ran before; False (default) keeps each fit a
        function of its own inputs, as parallel bootstrap refits need.
    keep_floor : bool
        Once the exact Newton matrix proved indefinite, take every later direction from
        the floored one without trying the exact one first. Refits (``laplace`` off) use
        it: where a field lies in the likelihood's flat end the exact curvature stays
        indefinite, and each failed trial cost CG iterations and, through them, stale
        factors (benchmarks/bench_refit_steps.py).
    cg_rtol : float
        Relative residual at which a preconditioned-CG Newton direction is accepted.

    Returns
    -------
    MapResult
    """
    theta0 = np.asarray(theta_t0, dtype=float)
    if theta0.ndim == 1:
        theta0 = theta0[:, None]
    V, P = theta0.shape
    if observed is not None:
        observed = np.asarray(observed, dtype=bool).reshape(V)
        theta0 = np.where(observed[:, None], theta0, 0.0)
    if not np.all(np.isfinite(theta0)):
        raise ValueError("theta_t0 has NaN/Inf at observed vertices; pass observed=False there")
    Qb = block_prior(Q, V, P)
    Qb.sort_indices()
    system = _thread_system(Qb, P)
    chol = chol or _thread_cholesky()
    objective = _Objective(loglik, Qb, P, observed)

    x = stack(theta0)
    f, total, grad, neg_hess, quad = objective(x)
    if not np.isfinite(f):
        raise ValueError("log-likelihood is not finite at the start theta_t0")
    trace_f, trace_g, trace_step, trace_cg = [f], [np.abs(grad).max()], [np.nan], [0]
    converged = False
    held, held_at_x = None, False  # curvature chol holds; whether it is that of x
    n_iter = 0
    own_factor = False  # chol holds a factor made in this call
    stale = was_indefinite = False  # refactorise: CG needed many iterations last time
    floored_only = False  # keep_floor and the exact matrix proved indefinite
    last_step = None  # the previous accepted step, for the subspace step
    while True:
        if trace_g[-1] <= gtol:
            converged = True
            break
        d, cg_iter, indefinite = None, 0, False
        if not stale and (own_factor or reuse_factor) and chol.holds(system.pattern):
            if not floored_only:
                exact = symmetric_blocks(neg_hess)
                d, cg_iter, indefinite = _pcg_direction(system.assemble(Qb, exact), grad, chol,
                                                       cg_rtol)
            if floored_only or indefinite:  # the step a failed exact factorisation takes
                floored = floor_blocks(neg_hess, hess_floor)[0]
                d, more, _ = _pcg_direction(system.assemble(Qb, floored), grad, chol, cg_rtol)
                cg_iter, indefinite = cg_iter + more, True
        if d is None:
            held, fell_back = _factorize_newton(chol, system, Qb, neg_hess, hess_floor,
                                                indefinite or (stale and was_indefinite)
                                                or floored_only)
            held_at_x = own_factor = True
            d = -chol.solve(grad)
            floored_only = floored_only or (keep_floor and fell_back)
        stale, was_indefinite = cg_iter > _CG_REFRESH, indefinite
        floored_only = floored_only or (keep_floor and indefinite)
        decrement = -0.5 * float(grad @ d)  # λ²/2: the decrease a full step predicts
        if decrement <= ftol:
            converged = True
            break
        if n_iter == max_iter:
            break
        direction, step = d, None
        if last_step is not None:  # one trial of the full subspace step, else along d
            direction = _subspace_step(Qb, neg_hess, grad, d, last_step)
            step = (_full_step(objective, x, direction, f, float(grad @ direction))
                    if direction is not d else None)
        if step is None:
            direction = d
            step = _armijo(objective, x, d, f, -2.0 * decrement)
        if step is None:  # no decrease along d: stop at x, not converged
            break
        n_iter += 1
        f_old = f
        x = x + step[0] * direction
        # only a full step vouches for the model on that plane (wiggly curvature
        # elsewhere makes it useless, and a tiny last step makes it ill-conditioned)
        last_step = direction if step[0] == 1.0 else None
        f, total, grad, neg_hess, quad = step[1]
        held_at_x = False
        trace_f.append(f)
        trace_g.append(np.abs(grad).max())
        trace_step.append(step[0])
        trace_cg.append(cg_iter)
        # Quadratic convergence: a full Newton step that achieved the predicted decrease
        # from a point where λ²/2 ≤ √ftol leaves λ²/2 ≲ ftol, so no factorisation is
        # needed to confirm it. A subspace step's decrease says nothing of the kind.
        if (direction is d and step[0] == 1.0 and decrement <= np.sqrt(ftol)
                and abs((f_old - f) - decrement) <= 0.1 * decrement):
            converged = True
            break

    if _holds_mode(held, held_at_x, neg_hess, hess_floor, max(ftol, _LOGDET_TOL)):
        logdet = chol.logdet()
    elif laplace:
        _factorize_newton(chol, system, Qb, neg_hess, hess_floor)
        logdet = chol.logdet()
    else:
        logdet = np.nan
    return MapResult(
        theta_t=unstack(x, P), n_iter=n_iter, grad_norm=float(trace_g[-1]), objective=f,
        converged=bool(converged), log_likelihood=total, prior_quadratic=quad,
        logdet_hessian=logdet,
        history={"objective": np.array(trace_f), "grad_norm": np.array(trace_g),
                 "step": np.array(trace_step), "cg_iterations": np.array(trace_cg)})


def _subspace_step(Qb: sp.csc_matrix, neg_hess: np.ndarray, grad: np.ndarray,
                   d: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The minimiser of the exact quadratic model of f over span{d, last} (d the Newton
    direction, last the previous step); d itself when the model is not convex on that
    plane or the combination does not descend. The caller tries it as a full step only
    and otherwise searches along d, so a poor model costs one likelihood evaluation
    (0.12 s for the 2p surrogate on fsaverage5).

    Where the floor replaced negative likelihood curvature, the floored matrix
    overestimates the curvature of smooth fields (the negative blocks of neighbouring
    vertices would have cancelled the positive ones), so the Newton steps fall short
    along them and successive steps line up: linear convergence, 20–40 iterations at
    weak-prior grid points of the fsLR study. The previous step spans that slow
    direction, and two exact Hessian-vector products (sparse, no solve) recover it.
    """
    P = neg_hess.shape[1]
    blocks = symmetric_blocks(neg_hess)

    def hess_times(v: np.ndarray) -> np.ndarray:
        return Qb @ v + stack(np.einsum("vij,vj->vi", blocks, unstack(v, P)))

    hd, hl = hess_times(d), hess_times(last)
    model = np.array([[d @ hd, d @ hl], [d @ hl, last @ hl]])
    if model[0, 0] <= 0.0 or np.linalg.det(model) <= 1e-12 * model[0, 0] * abs(model[1, 1]):
        return d
    a, b = np.linalg.solve(model, [-float(grad @ d), -float(grad @ last)])
    combined = a * d + b * last
    return combined if float(grad @ combined) < 0.0 else d


def _full_step(objective: _Objective, x: np.ndarray, direction: np.ndarray, f: float,
               slope: float):
    """(1.0, evaluation) if the full step along ``direction`` moves no latent value more
    than :data:`_MAX_MOVE` and meets the Armijo condition, else None."""
    if float(np.abs(direction).max()) > _MAX_MOVE:
        return None
    trial = objective(x + direction)
    return (1.0, trial) if trial[0] <= f + _ARMIJO * slope else None


def _thread_cholesky() -> SparseCholesky:
    if not hasattr(_PER_THREAD, "chol"):
        _PER_THREAD.chol = SparseCholesky()
    return _PER_THREAD.chol


def _thread_system(Qb: sp.csc_matrix, n_params: int) -> NewtonSystem:
    """The Newton system of this pattern, kept per thread: building it (pattern union and
    positions) was ~2 % of a bootstrap refit at fsLR 32k, and refits share one pattern."""
    held = getattr(_PER_THREAD, "system", None)
    if held is None or held.n_params != n_params or not held.matches(Qb):
        held = _PER_THREAD.system = NewtonSystem(Qb, n_params)
    return held


def _pcg_direction(A: sp.csc_matrix, grad: np.ndarray, chol: SparseCholesky,
                   rtol: float) -> tuple[np.ndarray | None, int, bool]:
    """Newton direction d = −A⁻¹∇f by conjugate gradients preconditioned with the factor
    ``chol`` already holds (an earlier iterate's or grid point's D + Q).

    A solve with a held factor costs ~1/60 of a refactorisation on fsLR 32k, and the
    curvature changes little between late Newton iterates or neighbouring grid points,
    so a few iterations reach the accuracy a factorisation would.

    Returns
    -------
    d : ndarray or None
        None when CG failed: the caller refactorises.
    iterations : int
    indefinite : bool
        A is not positive definite: CG met non-positive curvature, or converged to a
        direction that does not descend (impossible for SPD A). The caller then floors
        the curvature without trying to factorise the exact Hessian.
    """
    b = -grad
    tol = rtol * float(np.linalg.norm(b))
    x = np.zeros_like(b)
    r = b.copy()
    z = chol.solve(r)
    p = z.copy()
    rz = float(r @ z)
    for k in range(1, _CG_MAX_ITER + 1):
        ap = A @ p
        curvature = float(p @ ap)
        if curvature <= 0.0:
            return None, k, True
        alpha = rz / curvature
        x += alpha * p
        r -= alpha * ap
        if float(np.linalg.norm(r)) <= tol:
            return (x, k, False) if float(grad @ x) < 0.0 else (None, k, True)
        z = chol.solve(r)
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return None, _CG_MAX_ITER, False


def _armijo(objective: _Objective, x: np.ndarray, d: np.ndarray, f: float, slope: float):
    """Backtracking (halving) until the Armijo condition holds: (step, evaluation); the
    first trial moves no latent value by more than :data:`_MAX_MOVE`."""
    step = min(1.0, _MAX_MOVE / max(float(np.abs(d).max()), 1e-300))
    for _ in range(_MAX_HALVINGS):
        trial = objective(x + step * d)
        if trial[0] <= f + _ARMIJO * step * slope:
            return step, trial
        step *= 0.5
    return None


def _holds_mode(held: np.ndarray | None, held_at_x: bool, neg_hess: np.ndarray,
                floor: float, tol: float) -> bool:
    """Whether the held factorisation serves as the posterior precision at the final point:
    it was made there (exact, or floored because the exact one was not positive
    definite), or one step before with positive curvature blocks at both points that
    barely moved."""
    if held is None:
        return False
    if held_at_x:
        return True
    if floor_blocks(held, floor)[1] or floor_blocks(neg_hess, floor)[1]:
        return False
    return _logdet_shift_bound(held, neg_hess) <= tol


def _logdet_shift_bound(held: np.ndarray, neg_hess: np.ndarray) -> float:
    """Bound on |log det(D₁ + Q) − log det(D₀ + Q)| to first order, Σ_v tr(D₀ᵥ⁻¹ |ΔDᵥ|).

    H = D₀ + Q ⪰ D₀ gives H⁻¹ ⪯ D₀⁻¹, so |tr(H⁻¹ ΔD)| ≤ tr(D₀⁻¹ |ΔD|) vertex by vertex.
    """
    delta = symmetric_blocks(neg_hess) - held
    if held.shape[1] == 1:
        return float(np.sum(np.abs(delta[:, 0, 0]) / held[:, 0, 0]))
    val, vec = np.linalg.eigh(delta)
    abs_delta = np.einsum("vij,vj,vkj->vik", vec, np.abs(val), vec)
    return float(np.einsum("vij,vji->", np.linalg.inv(held), abs_delta))


def _factorize_newton(chol: SparseCholesky, system: NewtonSystem, Qb: sp.csc_matrix,
                      neg_hess: np.ndarray, floor: float, indefinite: bool = False
                      ) -> tuple[np.ndarray, bool]:
    """Factorise the Newton matrix: the exact Hessian −hess + Q when it is positive
    definite (also where the learned likelihood is locally convex but the prior
    outweighs it: quadratic convergence), else with each vertex's curvature block
    floored at ``floor``; ``indefinite`` (known from CG) skips the exact attempt.
    Returns the curvature blocks used and whether they are floored because the exact
    matrix is indefinite."""
    floored, needs_floor = floor_blocks(neg_hess, floor)
    exact = symmetric_blocks(neg_hess)
    if indefinite:
        chol.factorize(system.assemble(Qb, floored))
        return floored, True
    if not needs_floor:
        chol.factorize(system.assemble(Qb, exact))
        return exact, False
    try:
        chol.factorize(system.assemble(Qb, exact))
        return exact, False
    except np.linalg.LinAlgError:
        chol.factorize(system.assemble(Qb, floored))
        return floored, True
