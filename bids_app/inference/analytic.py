"""Closed-form log-likelihoods that follow the ``loglik`` contract (CONTRIBUTING.md).

They have exact derivatives and known optima, so the MAP and evidence code can be
verified and timed without a trained surrogate; the Gaussian one is also the Laplace
(normal) approximation of any per-vertex likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GaussianLoglik:
    """log q(S_v | θ̃_v) = log N(S_v; θ̃_v, Σ_v), per vertex.

    Attributes
    ----------
    summaries : ndarray (V, P)
        Observed summaries S_v (latent units).
    precision : ndarray (V, P, P) or (V,) or float
        Per-vertex inverse covariance Σ_v⁻¹ (1/latent units²); a scalar or (V,) means
        that value times the identity.
    """

    summaries: np.ndarray
    precision: np.ndarray | float

    def _precision_blocks(self) -> np.ndarray:
        V, P = np.shape(self.summaries)
        prec = np.asarray(self.precision, dtype=float)
        if prec.ndim == 3:
            return prec
        return np.broadcast_to(prec, (V,)).reshape(V, 1, 1) * np.eye(P)

    def __call__(self, theta_t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        prec = self._precision_blocks()
        r = np.asarray(self.summaries, dtype=float) - theta_t
        pr = np.einsum("vij,vj->vi", prec, r)
        P = r.shape[1]
        logdet = np.linalg.slogdet(prec)[1]
        value = -0.5 * (r * pr).sum(1) + 0.5 * logdet - 0.5 * P * np.log(2 * np.pi)
        return value, pr, -prec.copy()


@dataclass(frozen=True)
class PoissonLoglik:
    """Counts k_vp ~ Poisson(exposure · exp(θ̃_vp)), independent over parameters: a
    strictly concave, non-quadratic log-likelihood (constant log k! dropped).

    Attributes
    ----------
    counts : ndarray (V, P)
    exposure : float
    """

    counts: np.ndarray
    exposure: float = 1.0

    def __call__(self, theta_t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = np.asarray(self.counts, dtype=float)
        rate = self.exposure * np.exp(theta_t)
        value = (k * (np.log(self.exposure) + theta_t) - rate).sum(1)
        V, P = theta_t.shape
        hess = np.zeros((V, P, P))
        hess[:, np.arange(P), np.arange(P)] = -rate
        return value, k - rate, hess
