"""A real, cheap refit for bootstrap tests: lag-1 autocorrelation in probit space.

Not a stand-in for the MAP: it is a genuine per-vertex estimator of a smooth
feature of the series, so resampling changes it the way it changes a spectral summary.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri


def simulate_ar1(n_vertices: int, n_frames: int, seed: int) -> np.ndarray:
    """AR(1) series with per-vertex coefficients in [0.2, 0.9], z-scored, (V, T) float32."""
    rng = np.random.default_rng(seed)
    phi = np.linspace(0.2, 0.9, n_vertices)[:, None]
    noise = rng.standard_normal((n_vertices, n_frames))
    y = np.empty_like(noise)
    y[:, 0] = noise[:, 0]
    for t in range(1, n_frames):
        y[:, t] = phi[:, 0] * y[:, t - 1] + noise[:, t]
    y = (y - y.mean(1, keepdims=True)) / y.std(1, keepdims=True)
    return y.astype(np.float32)


def lag1_latent(y: np.ndarray) -> np.ndarray:
    """Probit of (1 + r1)/2 for the lag-1 autocorrelation r1 of each row; (V, 1)."""
    y = y - y.mean(axis=1, keepdims=True)
    r1 = (y[:, 1:] * y[:, :-1]).sum(1) / (y * y).sum(1)
    return ndtri(np.clip((1 + r1) / 2, 1e-6, 1 - 1e-6))[:, None]


class CountingRefit:
    """Refit that counts its calls and can fail after ``fail_after`` of them."""

    cache_token = "lag1-latent"

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, y: np.ndarray) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash of a bootstrap run")
        self.calls += 1
        return lag1_latent(y)
