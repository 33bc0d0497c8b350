"""Hall–Horowitz calibration of the nominal level of bootstrap normal intervals.

A normal interval θ̃ ± z_{1−a/2}·se built from a block bootstrap is usually too narrow
(the bootstrap under-represents long-range dependence, and the MAP is biased towards
the prior). The double bootstrap measures how often intervals built at level a on each
outer resample actually contain the original estimate, and picks the level that makes
that empirical coverage reach 1 − α0 (docs/method.md §5):

    π̂(v, a) = mean_b 1{θ̃̂(v) ∈ θ̃*_b(v) ± z_{1−a/2}·sd*_b(v)}
    β̂(v)   = the largest grid level a with π̂(v, a) ≥ 1 − α0
    α̂      = ξ-quantile of β̂(v) over vertices

π̂ is non-increasing in a (a smaller a gives a wider interval), so β̂ is where it
crosses 1 − α0. Taking a low quantile ξ makes the global level conservative: about
1 − ξ of the vertices reach 1 − α0 coverage at level α̂.

Edge cases at a vertex (documented in the sidecar through α̂):
- every grid level covers (π̂ ≥ 1 − α0 even at the largest level, e.g. a vertex whose
  resamples all reproduce the estimate): β̂ = the largest grid level;
- no grid level covers (π̂ < 1 − α0 even at the smallest level, i.e. the bootstrap
  spread is far too small): β̂ = the smallest grid level, the widest interval offered;
- a vertex with any non-finite input (masked, failed fit) gets β̂ = NaN and is left out
  of the quantile; if every vertex is NaN, α̂ = α0 (no calibration possible).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

ALPHA0 = 0.05
XI = 0.05
# Smallest level offered, z_{1-a/2} = 8.03. The grid used to stop at 1e-4 (z = 3.89);
# on the fsLR 32k study most vertices needed more (their outer refits sat a median 6.7
# inner SDs from the estimate), so α̂ sat on that floor and the check did not measure
# anything. The floor only has to keep intervals finite where an inner spread is zero;
# 1e-15 is about where 1 - a/2 stops being representable next to 1 in double precision,
# and a vertex there says its refits do not scatter around the estimate at all. The
# fraction of vertices on the floor is reported (``floor_fraction``).
LEVEL_FLOOR = 1e-15
# Log-spaced from the floor to 0.5 (over-wide spreads show up too), 2.8 % apart: as
# fine as the earlier 400 levels over [1e-4, 0.5].
DEFAULT_LEVELS = np.geomspace(LEVEL_FLOOR, 0.5, 1230)


def normal_quantile(alpha: np.ndarray | float) -> np.ndarray:
    """z_{1−a/2}, computed as −Φ⁻¹(a/2) so it stays exact for tiny a (1 − a/2 rounds
    to 1 below a ≈ 1e-16)."""
    return -ndtri(np.asarray(alpha, dtype=float) / 2.0)


def floor_fraction(beta: np.ndarray, levels: np.ndarray = DEFAULT_LEVELS) -> float:
    """Fraction of finite per-vertex levels β̂(v) on the smallest grid level: where the
    calibration wanted an even wider interval than the grid offers. Above ξ the global
    α̂ itself is clipped and the interval is a lower bound on what calibration asked."""
    finite = np.isfinite(beta)
    return float(np.mean(beta[finite] <= levels[0])) if finite.any() else 0.0


def coverage_curve(
    theta_hat: np.ndarray, outer: np.ndarray, inner_sd: np.ndarray, levels: np.ndarray
) -> np.ndarray:
    """Empirical coverage π̂(v, a) of intervals built on each outer resample.

    Parameters
    ----------
    theta_hat : array (V,)
        Latent estimate on the original data.
    outer : array (B, V)
        Latent estimates θ̃*_b on the outer resamples.
    inner_sd : array (B, V)
        Standard deviation sd*_b over the inner resamples of each outer resample.
    levels : array (A,)
        Nominal levels a in (0, 1).

    Returns
    -------
    array (V, A)
        Fraction of outer resamples whose level-a interval contains ``theta_hat``.
    """
    z = normal_quantile(levels)  # (A,)
    distance = np.abs(np.asarray(theta_hat, dtype=float)[None, :] - outer)  # (B, V)
    covered = distance[:, :, None] <= z[None, None, :] * np.asarray(inner_sd)[:, :, None]
    return covered.mean(axis=0)


def vertex_levels(
    theta_hat: np.ndarray,
    outer: np.ndarray,
    inner_sd: np.ndarray,
    levels: np.ndarray,
    alpha0: float = ALPHA0,
) -> np.ndarray:
    """β̂(v): the largest grid level whose coverage π̂(v, a) still reaches 1 − α0.

    Computed without the (B, V, A) coverage array: π̂(v, a) ≥ 1 − α0 holds exactly
    when z_{1−a/2} is at least the k-th smallest ratio |θ̃̂ − θ̃*_b| / sd*_b with
    k = ⌈(1 − α0)·B⌉, and z_{1−a/2} decreases in a, so the covering levels are a prefix
    of the grid. Inputs as in :func:`coverage_curve`; ``levels`` strictly increasing.
    """
    levels = np.asarray(levels, dtype=float)
    if np.any(np.diff(levels) <= 0):
        raise ValueError("calibration levels must be strictly increasing")
    distance = np.abs(np.asarray(theta_hat, dtype=float)[None, :] - outer)
    sd = np.asarray(inner_sd, dtype=float)
    # 0/0 covers at every level (0 <= z*0); d/0 with d > 0 never covers.
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(distance == 0, 0.0, distance / sd)
    n_outer = ratio.shape[0]
    k = min(n_outer, max(1, int(np.ceil((1.0 - alpha0) * n_outer - 1e-9))))
    kth = np.partition(ratio, k - 1, axis=0)[k - 1]
    z = normal_quantile(levels)
    n_ok = np.searchsorted(-z, -kth, side="right")
    return levels[np.clip(n_ok - 1, 0, levels.size - 1)]


def calibrate_level(
    theta_hat: np.ndarray,
    outer: np.ndarray,
    inner_sd: np.ndarray,
    levels: np.ndarray = DEFAULT_LEVELS,
    alpha0: float = ALPHA0,
    xi: float = XI,
) -> tuple[float, np.ndarray]:
    """Global calibrated level α̂ for one parameter.

    Parameters
    ----------
    theta_hat : array (V,)
        Latent estimate on the original data.
    outer : array (B, V)
        Outer-resample latent estimates.
    inner_sd : array (B, V)
        Inner-resample standard deviations of each outer resample.
    levels : array (A,), increasing
        Candidate nominal levels.
    alpha0 : float
        Target miscoverage (0.05 for a 95 % interval).
    xi : float
        Quantile of the per-vertex levels taken as the global level.

    Returns
    -------
    alpha_hat : float
        Level to plug into θ̃̂ ± z_{1−α̂/2}·se.
    beta : array (V,)
        Per-vertex levels β̂(v); NaN where inputs were not finite.
    """
    theta_hat = np.asarray(theta_hat, dtype=float)
    outer = np.asarray(outer, dtype=float)
    inner_sd = np.asarray(inner_sd, dtype=float)
    finite = (
        np.isfinite(theta_hat)
        & np.isfinite(outer).all(axis=0)
        & np.isfinite(inner_sd).all(axis=0)
    )
    beta = np.full(theta_hat.shape, np.nan)
    if not finite.any():
        return float(alpha0), beta
    beta[finite] = vertex_levels(
        theta_hat[finite], outer[:, finite], inner_sd[:, finite], levels, alpha0
    )
    return float(np.quantile(beta[finite], xi)), beta


def without_common_shift(draws: np.ndarray) -> np.ndarray:
    """Resamples (..., N, V) less each one's hemisphere-wide shift: the difference between
    its mean over vertices and the mean of that over the N resamples (axis −2). Vertices
    with a non-finite value in any resample are left out of the means."""
    draws = np.asarray(draws, dtype=float)
    finite = np.isfinite(draws).all(axis=tuple(range(draws.ndim - 1)))
    level = draws[..., finite].mean(axis=-1) if finite.any() else np.zeros(draws.shape[:-1])
    return draws - (level - level.mean(axis=-1, keepdims=True))[..., None]


def pooled_level(outer: np.ndarray, inner: np.ndarray, alpha0: float = ALPHA0) -> float:
    """Hall–Horowitz level pooled over vertices, centred on the outer resamples' mean,
    with each level's hemisphere-wide shifts removed before the two are compared.

    For the local periodogram bootstrap (:mod:`bids_app.bootstrap.periodogram`) the
    outer world's "true value" is not the estimate θ̃̂: its resamples scatter around the
    estimator applied to the smoothed spectrum Ŝ, i.e. around their own mean θ̄*(v),
    and an offset θ̄* − θ̃̂ is the smoothing's, not a bias the interval should absorb.
    So the check is whether θ̄*(v) ∈ θ̃*_b(v) ± c·sd*_b(v), and c is the (1 − α0)
    quantile of the standardised distances |θ̃*_b(v) − θ̄*(v)| / sd*_b(v) pooled over
    every vertex and outer resample.

    Pooled, because B = 100 distances per vertex pin a 95 % point down poorly, and the
    ξ-quantile of per-vertex levels (:func:`calibrate_level`) then selects the vertices
    whose noise asked for the widest interval: average coverage above 1 − α0, which is
    a miss too. The pooled level makes the coverage right on average over vertices.

    Both levels are compared without their hemisphere-wide shifts
    (:func:`without_common_shift`): the same frequency draws at every vertex shift a
    whole resample's map together, and an inner resample, drawn from an outer one that
    already repeats ordinates, shifts about twice as much as an outer one (SD of the
    vertices' mean 0.037 against 0.019 latent on fsLR 32k, 0.073 against 0.042 on
    fsaverage5; benchmarks/bench_bootstrap.py, "common mode"). Compared with the shifts
    in, c measured that difference of the artefact between the levels rather than the
    spread (z 1.25 on fsLR 32k, coverage 0.84); without them the two levels' spreads
    agree within 1.0–1.3× where the noise is independent across vertices. The interval
    keeps the full SE (:func:`bids_app.bootstrap.double.run_plan`), shifts included, so the
    uncertainty of the map's overall level stays in it.

    sd*_b comes from R inner resamples, the interval's se from B outer ones, so c is read
    as a level on Student's t with R − 1 degrees of freedom (what c would be if the
    resampling were exact and normal) and that level is returned: the interval uses
    z_{1−α̂/2}, as an exact bootstrap with many resamples would. A level on the normal
    would widen every interval by t_{R−1}/z (15 % at R = 10) for the inner noise alone.

    Parameters
    ----------
    outer : array (B, V)
        Outer-resample latent estimates (non-finite vertices are left out).
    inner : array (B, R, V)
        The inner resamples' latent estimates of each outer resample.
    alpha0 : float
        Target miscoverage.

    Returns
    -------
    float
        α̂ in [LEVEL_FLOOR, 1); α0 when no vertex is finite.
    """
    from scipy.stats import t as student_t

    outer = np.asarray(outer, dtype=float)
    inner = np.asarray(inner, dtype=float)
    finite = np.isfinite(outer).all(axis=0) & np.isfinite(inner).all(axis=(0, 1))
    if not finite.any():
        return float(alpha0)
    outer = without_common_shift(outer[:, finite])
    sd = without_common_shift(inner[:, :, finite]).std(axis=1, ddof=1)
    distance = np.abs(outer - outer.mean(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(distance == 0, 0.0, distance / sd)
    c = float(np.quantile(ratio, 1.0 - alpha0))
    return float(np.clip(2.0 * student_t.sf(c, inner.shape[1] - 1), LEVEL_FLOOR, 1.0 - 1e-12))
