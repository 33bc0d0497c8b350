"""Laplace evidence of the SPDE hyperparameters (κ, τ²) and their selection on a grid.

log p(S | κ, τ²) ≈ Σ_v log q(S_v | θ̂̃_v) − ½ θ̂̃ᵀQθ̂̃ + ½ log|Q| − ½ log|D + Q|
(docs/method.md §4; the 2π terms cancel), with θ̂̃ the MAP at (κ, τ²). log|D + Q| comes from
the factorisation the Newton solver already holds at the mode and log|Q| from the
sparser operator κ²C + G.

For the two-parameter model both latent fields share one (κ, τ²): each θ̃ has the
same N(0, 1) scale by construction of the probit link, a 4-D search would quadruple
the cost, and the weakly identified second parameter (docs/method.md §6) would otherwise
get hyperparameters driven by a flat likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_app import config
from bids_app.inference.map import LogLik, MapResult, fit_map
from bids_app.prior.cholesky import SparseCholesky
from bids_app.prior.spde import SPDEPrior

DEFAULT_KAPPAS = np.asarray(config.DEFAULT_KAPPAS)  # 1/mm
DEFAULT_TAU2S = np.asarray(config.DEFAULT_TAU2S)
# Newton tolerance (nats) while scanning the grid: neighbouring grid points differ by
# far more than this, and the selected point is refined to the caller's ftol.
SEARCH_FTOL = 1e-2
# "lines" search: a line (one κ) is extended along τ², and further κ lines are visited,
# while the newest value is within this many nats of the best so far. Evidence that far
# below the maximum has posterior odds below e⁻²⁰; the margin also steps over small
# dips of a surface that is not exactly unimodal.
SEARCH_MARGIN = 20.0
SEARCHES = ("lines", "grid", "ascent")


@dataclass(frozen=True)
class EvidenceResult:
    """Selected hyperparameters, the MAP there, and the evidence surface.

    Attributes
    ----------
    kappa, tau2 : float
        Selected κ (1/mm) and τ².
    map : MapResult
        MAP at the selected (κ, τ²).
    log_evidence : float
        Laplace log evidence there (nats).
    surface : ndarray (n_kappa, n_tau2)
        Log evidence over the grid (NaN where not evaluated or not finite).
    kappas, tau2s : ndarray
        The grid axes.
    iterations : ndarray of int (n_kappa, n_tau2)
        Newton iterations per grid point (−1 where not evaluated).
    restart_gain : float
        Log evidence of the MAP restarted from the pointwise start at the selected
        (κ, τ²) minus that of the warm-started one (nats): positive when the restart
        found a better mode, which was then kept.
    """

    kappa: float
    tau2: float
    map: MapResult
    log_evidence: float
    surface: np.ndarray
    kappas: np.ndarray
    tau2s: np.ndarray
    iterations: np.ndarray
    restart_gain: float = 0.0

    @property
    def map_result(self) -> MapResult:
        """Alias of :attr:`map`."""
        return self.map

    @property
    def grid(self) -> np.ndarray:
        """Alias of :attr:`surface`."""
        return self.surface


def log_evidence(result: MapResult, prior: SPDEPrior, kappa: float, tau2: float) -> float:
    """Laplace log evidence of (κ, τ²) from the MAP at those values (nats)."""
    n_params = result.theta_t.shape[1]
    logdet_q = n_params * prior.logdet_precision(kappa, tau2)
    return (result.log_likelihood - 0.5 * result.prior_quadratic + 0.5 * logdet_q
            - 0.5 * result.logdet_hessian)


def select_hyperparameters(loglik: LogLik, prior: SPDEPrior, theta_t0: np.ndarray,
                           kappas: np.ndarray | None = None, tau2s: np.ndarray | None = None,
                           kappa: float | None = None, tau2: float | None = None,
                           observed: np.ndarray | None = None,
                           chol: SparseCholesky | None = None, search: str = "lines",
                           **map_options) -> EvidenceResult:
    """Maximise the Laplace evidence over a (κ, τ²) grid, warm-starting each MAP.

    The learned likelihood makes the MAP objective multimodal, so which mode a
    warm-started Newton path reaches can depend on the path. The selected (κ, τ²) is
    therefore also fitted from ``theta_t0`` and the mode with the higher evidence kept
    (:attr:`EvidenceResult.restart_gain`), so the answer does not hinge on the visiting
    order.

    Parameters
    ----------
    loglik : callable
        Per-vertex log-likelihood (see :func:`fit_map`).
    prior : SPDEPrior
        The mesh prior; Q(κ, τ²) is shared by the P fields.
    theta_t0 : ndarray (V, P)
        Start of the first MAP (the pointwise estimate).
    kappas, tau2s : array-like, optional
        Grid axes (κ in 1/mm); defaults :data:`DEFAULT_KAPPAS`, :data:`DEFAULT_TAU2S`.
    kappa, tau2 : float, optional
        Fix one or both values (``--kappa``, ``--tau2``); the axis collapses to it.
    observed : ndarray of bool (V,), optional
        Vertices with usable data (see :func:`fit_map`).
    chol : SparseCholesky, optional
        Factorisation object reused across the grid (one symbolic analysis).
    search : {"lines", "grid", "ascent"}
        "lines" (default) searches one κ line at a time along τ², starting from the
        middle κ and the best τ² of the neighbouring line, and stops a line, or the
        walk over κ lines in one direction, once the newest value falls
        :data:`SEARCH_MARGIN` nats below the best so far: about half the grid on the
        studies of benchmarks/bench_map.py, assuming the evidence is unimodal along each
        axis up to that margin (unvisited points stay NaN). "grid" evaluates every point
        (in an order where each MAP starts from a neighbour's); "ascent" climbs from the grid centre
        to the best of the 8 neighbours until none is better.
    **map_options
        Passed to :func:`fit_map` (``max_iter``, ``gtol``, ``ftol``...); each MAP may
        start from the factor the previous one left (``reuse_factor``: the visiting
        order is fixed, so the result stays deterministic). The grid is
        scanned with ``ftol`` at least :data:`SEARCH_FTOL` and the selected point is
        then refined with the options as given.

    Returns
    -------
    EvidenceResult
    """
    kappas = _axis(kappa, kappas, DEFAULT_KAPPAS, "kappa")
    tau2s = _axis(tau2, tau2s, DEFAULT_TAU2S, "tau2")
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {SEARCHES}, got {search!r}")
    chol = chol or SparseCholesky(prior.backend)
    surface = np.full((kappas.size, tau2s.size), np.nan)
    iterations = np.full(surface.shape, -1)
    fits: dict[tuple[int, int], MapResult] = {}

    scan_options = {**map_options, "ftol": max(map_options.get("ftol", 0.0), SEARCH_FTOL)}

    def evaluate(i: int, j: int, start: np.ndarray, options: dict = scan_options
                 ) -> tuple[MapResult, float]:
        Q = prior.precision(kappas[i], tau2s[j])
        result = fit_map(loglik, Q, start, chol=chol, observed=observed, reuse_factor=True,
                         **options)
        value = log_evidence(result, prior, kappas[i], tau2s[j])
        iterations[i, j] = max(iterations[i, j], 0) + result.n_iter
        fits[i, j], surface[i, j] = result, value
        return result, value

    def selected(i: int, j: int, best: tuple[MapResult, float], gain: float
                 ) -> EvidenceResult:
        fits[i, j], surface[i, j] = best
        return EvidenceResult(kappa=float(kappas[i]), tau2=float(tau2s[j]), map=best[0],
                              log_evidence=float(best[1]), surface=surface, kappas=kappas,
                              tau2s=tau2s, iterations=iterations,
                              restart_gain=float(gain) if np.isfinite(gain) else 0.0)

    theta_t0 = np.asarray(theta_t0, dtype=float)
    if surface.size == 1:  # (κ, τ²) fixed: one fit from the start, nothing to compare
        return selected(0, 0, evaluate(0, 0, theta_t0, map_options), 0.0)
    if search == "lines":
        _search_lines(surface.shape, lambda i, j, start: evaluate(i, j, start)[1],
                      lambda cell: fits[cell].theta_t, theta_t0)
    elif search == "grid":
        start = theta_t0
        for i, j in _snake(kappas.size, tau2s.size):
            evaluate(i, j, start)
            start = fits[i, j].theta_t  # warm start for the neighbouring grid point
    else:
        current = (kappas.size // 2, tau2s.size // 2)
        evaluate(*current, theta_t0)
        while True:
            for cell in _neighbours(current, surface.shape):
                if cell not in fits:
                    evaluate(*cell, fits[current].theta_t)
            best = max(fits, key=lambda c: _finite_or_low(surface[c]))
            if best == current:
                break
            current = best

    if not np.any(np.isfinite(surface)):
        raise RuntimeError("the Laplace evidence is not finite anywhere on the grid")
    i, j = np.unravel_index(np.nanargmax(surface), surface.shape)
    warm = evaluate(i, j, fits[i, j].theta_t, map_options)  # refine to the caller's ftol
    cold = evaluate(i, j, theta_t0, map_options)  # mode check: restart from the start
    gain = _finite_or_low(cold[1]) - _finite_or_low(warm[1])
    return selected(i, j, cold if gain > 0 else warm, gain)


def _search_lines(shape: tuple[int, int], value, mode, theta_t0: np.ndarray) -> None:
    """The "lines" search of :func:`select_hyperparameters` over index space.

    ``value(i, j, start)`` evaluates grid cell (i, j) from ``start`` and returns its log
    evidence; ``mode(cell)`` is the MAP at an evaluated cell (the next warm start).
    """
    seen: dict[tuple[int, int], float] = {}

    def visit(cell: tuple[int, int], start: np.ndarray) -> float:
        seen[cell] = _finite_or_low(value(cell[0], cell[1], start))
        return seen[cell]

    def line(i: int, j0: int, start: np.ndarray) -> int:
        """Extend κ line i both ways along τ² from j0; returns its best column."""
        visit((i, j0), start)
        for step in (-1, 1):
            j = j0
            while 0 <= j + step < shape[1]:
                value_j = visit((i, j + step), mode((i, j)))
                j += step
                if value_j < max(seen.values()) - SEARCH_MARGIN:
                    break
        return max((c for c in seen if c[0] == i), key=seen.get)[1]

    middle = shape[0] // 2
    best_j = line(middle, shape[1] // 2, theta_t0)
    for step in (-1, 1):
        i, j = middle, best_j
        while 0 <= i + step < shape[0]:
            j = line(i + step, j, mode((i, j)))
            i += step
            if seen[i, j] < max(seen.values()) - SEARCH_MARGIN:
                break


def grid_boundary(result: EvidenceResult) -> dict[str, str]:
    """Searched axes whose selected value is the smallest ("lower") or largest ("upper").

    There the evidence may still rise outside the grid (e.g. along the ridge of constant
    marginal variance κ²τ² on nearly flat fields), so the selection is not a maximum.
    Axes with one value (fixed by the user) are never reported.
    """
    edges = {}
    for name, axis, value in (("kappa", result.kappas, result.kappa),
                              ("tau2", result.tau2s, result.tau2)):
        if axis.size > 1 and value <= axis[0]:
            edges[name] = "lower"
        elif axis.size > 1 and value >= axis[-1]:
            edges[name] = "upper"
    return edges


def evidence_gap(result: EvidenceResult) -> float | None:
    """Log evidence of the best grid point minus the second best (nats); None if fewer
    than two points were evaluated. A gap below ~1 nat means weakly determined (κ, τ²)."""
    values = np.sort(result.surface[np.isfinite(result.surface)])
    return float(values[-1] - values[-2]) if values.size > 1 else None


def _finite_or_low(value: float) -> float:
    return float(value) if np.isfinite(value) else -np.inf


def _neighbours(cell: tuple[int, int], shape: tuple[int, int]) -> list[tuple[int, int]]:
    """The up to 8 grid cells around ``cell``."""
    i, j = cell
    return [(a, b) for a in range(max(i - 1, 0), min(i + 2, shape[0]))
            for b in range(max(j - 1, 0), min(j + 2, shape[1])) if (a, b) != cell]


def _axis(fixed: float | None, values, default: np.ndarray, name: str) -> np.ndarray:
    if fixed is not None:
        return np.array([float(fixed)])
    axis = np.asarray(default if values is None else values, dtype=float).ravel()
    if axis.size == 0 or np.any(~np.isfinite(axis)) or np.any(axis <= 0):
        raise ValueError(f"{name} grid must hold positive finite values, got {axis}")
    return np.sort(axis)


def _snake(n_rows: int, n_cols: int) -> list[tuple[int, int]]:
    """Grid order in which consecutive points are neighbours (boustrophedon)."""
    order = []
    for i in range(n_rows):
        cols = range(n_cols) if i % 2 == 0 else range(n_cols - 1, -1, -1)
        order.extend((i, j) for j in cols)
    return order
