"""Vertex-wise random-effects meta-regression of participant estimates with known SEs.

Model per vertex: y_i = x_iᵀβ + u_i + e_i, u_i ~ N(0, τ²) between participants and
e_i ~ N(0, s_i²) the participant's own sampling error (s_i from its bootstrap). τ² is
estimated by REML (Fisher scoring, started at DerSimonian–Laird); a vertex where REML
does not converge keeps the DerSimonian–Laird value. Every function works on a whole
block of vertices at once: arrays are (participants, vertices), the design is shared.

Inference uses the Knapp–Hartung (Hartung–Knapp–Sidik–Jonkman) variance scale with
t(k − p) reference, floored at the model-based variance, and weights from τ² moderated
toward its median over vertices (:func:`moderate_tau2`). With 20–30 participants whose
SEs differ tenfold, a vertex's own τ̂² is so noisy that where it comes out near 0 a few
precise participants carry the fit: Wald z gave a false discovery proportion of 0.12 at
q = 0.05, Knapp–Hartung alone 0.24–0.29, both together ≤ 0.05
(benchmarks/bench_group.py --part study, seeds 0–2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import false_discovery_control, norm
from scipy.stats import t as student_t

REML_MAX_ITER = 100
REML_TOL = 1e-8


@dataclass
class RandomEffectsFit:
    """Per-vertex results: coefficients (p, V), their SEs (p, V) and covariance (V, p, p),
    the vertex's own τ² estimate (V), N (V); the weights used ``tau2_weights``."""

    beta: np.ndarray
    se: np.ndarray
    cov: np.ndarray
    tau2: np.ndarray
    n: np.ndarray
    method: np.ndarray  # per vertex: "REML", "DL" or "" (not estimable)
    df: np.ndarray  # residual degrees of freedom k − p of the t reference
    tau2_weights: np.ndarray  # τ² in the weights 1/(s² + τ²)


def _solve_weighted(y, v, x, tau2):
    """β̂, (XᵀWX)⁻¹ and W for weights 1/(v + τ²); missing participants have weight 0."""
    finite = np.isfinite(y) & np.isfinite(v) & (v > 0)
    w = np.where(finite, 1.0 / (np.where(finite, v, 1.0) + tau2), 0.0)
    yz = np.where(finite, y, 0.0)
    a = np.einsum("iv,ip,iq->vpq", w, x, x)
    b = np.einsum("iv,ip,iv->vp", w, x, yz)
    a_inv = np.linalg.pinv(a, hermitian=True)
    beta = np.einsum("vpq,vq->vp", a_inv, b)
    return beta, a_inv, w, yz


def _residual(yz, x, beta):
    return yz - np.einsum("ip,vp->iv", x, beta)


def dersimonian_laird(y: np.ndarray, v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Method-of-moments τ² (generalised to a design): max(0, (Q − (k − p)) / c)."""
    beta, a_inv, w, yz = _solve_weighted(y, v, x, 0.0)
    q = (w * _residual(yz, x, beta) ** 2).sum(axis=0)
    k = (w > 0).sum(axis=0)
    xw2x = np.einsum("iv,ip,iq->vpq", w**2, x, x)
    c = w.sum(axis=0) - np.einsum("vpq,vqp->v", a_inv, xw2x)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau2 = (q - (k - x.shape[1])) / c
    return np.where(np.isfinite(tau2), np.maximum(tau2, 0.0), 0.0)


def reml_tau2(
    y: np.ndarray, v: np.ndarray, x: np.ndarray, start: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """REML τ² by Fisher scoring; returns (τ², converged) per vertex.

    Step: τ² += (rᵀW²r − tr P) / tr(P²) with P = W − WX(XᵀWX)⁻¹XᵀW, clamped at 0;
    the restricted likelihood's score and expected information (Harville 1977).
    """
    tau2 = start.copy()
    converged = np.zeros(tau2.shape, bool)
    active = np.ones(tau2.shape, bool)
    for _ in range(REML_MAX_ITER):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        yy, vv, t = y[:, idx], v[:, idx], tau2[idx]
        beta, a_inv, w, yz = _solve_weighted(yy, vv, x, t)
        r = _residual(yz, x, beta)
        xw2x = np.einsum("iv,ip,iq->vpq", w**2, x, x)
        xw3x = np.einsum("iv,ip,iq->vpq", w**3, x, x)
        tr_p = w.sum(axis=0) - np.einsum("vpq,vqp->v", a_inv, xw2x)
        m = np.einsum("vpq,vqr->vpr", a_inv, xw2x)
        tr_pp = (
            (w**2).sum(axis=0)
            - 2 * np.einsum("vpq,vqp->v", a_inv, xw3x)
            + np.einsum("vpq,vqp->v", m, m)
        )
        score = (w**2 * r**2).sum(axis=0) - tr_p
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(tr_pp > 0, score / tr_pp, 0.0)
        new = np.maximum(t + step, 0.0)
        done = np.abs(new - t) <= REML_TOL * np.maximum(1.0, t)
        tau2[idx] = new
        converged[idx[done]] = True
        active[idx[done]] = False
        bad = ~np.isfinite(new)
        active[idx[bad]] = False
    return tau2, converged & np.isfinite(tau2)


def random_effects(
    y: np.ndarray, v: np.ndarray, x: np.ndarray, tau2_weights: np.ndarray | None = None
) -> RandomEffectsFit:
    """Fit the random-effects model at every vertex of a block.

    Parameters
    ----------
    y : (participants, vertices) estimates in the analysis (latent) scale; NaN = absent.
    v : (participants, vertices) their sampling variances, same scale.
    x : (participants, p) design, full column rank over the participants present.
    tau2_weights : τ² per vertex to weight with (e.g. :func:`moderate_tau2` of a first
        fit); default the vertex's own estimate.
    """
    y, v, x = np.asarray(y, float), np.asarray(v, float), np.asarray(x, float)
    present = np.isfinite(y) & np.isfinite(v) & (v > 0)
    n = present.sum(axis=0)
    estimable = n > x.shape[1]  # τ² needs residual degrees of freedom
    dl = dersimonian_laird(y, v, x)
    reml, ok = reml_tau2(y, v, x, dl)
    tau2 = np.where(ok, reml, dl)
    method = np.where(ok, "REML", "DL")
    tau2 = np.where(estimable, tau2, 0.0)
    method = np.where(estimable, method, "")
    used = tau2 if tau2_weights is None else np.where(estimable, tau2_weights, 0.0)
    beta, a_inv, w, yz = _solve_weighted(y, v, x, used)
    df = (n - x.shape[1]).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = (w * _residual(yz, x, beta) ** 2).sum(axis=0) / df
    scale = np.where(estimable & np.isfinite(scale), np.maximum(scale, 1.0), 1.0)
    a_inv = a_inv * scale[:, None, None]
    se = np.sqrt(np.clip(np.einsum("vpp->vp", a_inv), 0.0, None))
    enough = n >= x.shape[1]
    beta = np.where(enough[:, None], beta, np.nan).T
    se = np.where(enough[:, None], se, np.nan).T
    cov = np.where(enough[:, None, None], a_inv, np.nan)
    tau2 = np.where(estimable, tau2, np.nan)
    used = np.where(estimable, used, np.nan)
    return RandomEffectsFit(beta, se, cov, tau2, n.astype(float), method, df, used)


def moderate_tau2(tau2: np.ndarray) -> np.ndarray:
    """τ² shrunk halfway toward its median over vertices (a prior worth as many degrees
    of freedom as the vertex's own k − p): an empirical-Bayes guard against the
    per-vertex τ̂² noise (module docstring)."""
    finite = np.isfinite(tau2)
    if not finite.any():
        return tau2
    centre = float(np.median(tau2[finite]))
    return np.where(finite, 0.5 * tau2 + 0.5 * centre, np.nan)


def contrast(fit: RandomEffectsFit, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Estimate and SE of cᵀβ at every vertex."""
    weights = np.asarray(weights, float)
    effect = weights @ fit.beta
    var = np.einsum("p,vpq,q->v", weights, fit.cov, weights)
    return effect, np.sqrt(np.clip(var, 0.0, None))


def z_and_p(
    effect: np.ndarray, se: np.ndarray, df: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """z and two-sided p of effect/se: normal, or t(df) with z its normal equivalent.

    NaN where the SE is not positive or df < 1 (e.g. one participant).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(se > 0, effect / se, np.nan)
    if df is None:
        return stat, 2.0 * norm.sf(np.abs(stat))
    df = np.asarray(df, float)
    stat = np.where(df >= 1, stat, np.nan)
    p = 2.0 * student_t.sf(np.abs(stat), np.maximum(df, 1.0))
    return np.sign(stat) * norm.isf(p / 2.0), p


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values over the finite entries (NaN stays NaN)."""
    p = np.asarray(p, float)
    q = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        q[finite] = false_discovery_control(p[finite], method="bh")
    return q


def concatenate(fits: list[RandomEffectsFit]) -> RandomEffectsFit:
    """One fit from fits of consecutive vertex blocks."""
    return RandomEffectsFit(
        beta=np.concatenate([f.beta for f in fits], axis=1),
        se=np.concatenate([f.se for f in fits], axis=1),
        cov=np.concatenate([f.cov for f in fits], axis=0),
        tau2=np.concatenate([f.tau2 for f in fits]),
        n=np.concatenate([f.n for f in fits]),
        method=np.concatenate([f.method for f in fits]),
        df=np.concatenate([f.df for f in fits]),
        tau2_weights=np.concatenate([f.tau2_weights for f in fits]),
    )
