"""HRF kernels of the registered models on a TR grid.

Times are in seconds. Kernels are long enough (in seconds, not taps) that the slowest
HRF in a model's range keeps all but 1e-4 of its absolute mass, whatever the TR
(tests/simulate/test_hrf.py); the shapes themselves live with each model in
:mod:`bids_app.models`.
"""

from __future__ import annotations

import math

import numpy as np

from bids_app.models import (
    MIN_KERNEL_S,
    SPM_UNDERSHOOT,
    TAIL_TOLERANCE,
    UNDERSHOOT,
    HRFModel,
    double_gamma,
    gamma_density,
    kernel_duration,
    resolve_model,
    spm_canonical,
    spm_derivative,
)

__all__ = ["MIN_KERNEL_S", "SPM_UNDERSHOOT", "TAIL_TOLERANCE", "UNDERSHOOT",
           "default_kernel_duration", "double_gamma", "gamma_density", "hrf_kernels",
           "kernel_times", "resolve_model", "spm_canonical", "spm_derivative"]


def default_kernel_duration(model: HRFModel | str, tol: float = TAIL_TOLERANCE) -> float:
    """Kernel length in s so no HRF in the model's (link-widened) range is truncated
    (67 s for 1p, 33 s for 2p at ``tol`` = 1e-4; :func:`bids_app.models.kernel_duration`)."""
    return kernel_duration(resolve_model(model), tol)


def kernel_times(tr: float, duration_s: float) -> np.ndarray:
    """Sampling times 0, TR, 2·TR, … (s) covering ``duration_s``."""
    return np.arange(math.ceil(duration_s / tr)) * tr


def hrf_kernels(
    model: HRFModel | str,
    theta: np.ndarray,
    tr: float,
    duration_s: float | None = None,
) -> np.ndarray:
    """Per-series HRF kernels sampled at t = 0, TR, 2·TR, … .

    Parameters
    ----------
    model : HRFModel or a registered model name
    theta : array (N, P)
        Natural parameters (not latent).
    tr : float
        Repetition time in s.
    duration_s : float, optional
        Kernel length in s; default :func:`default_kernel_duration`.

    Returns
    -------
    array (N, K) float64, K = ceil(duration_s / tr).
    """
    model = resolve_model(model)
    theta = np.asarray(theta, dtype=float).reshape(-1, model.n_params)
    if duration_s is None:
        duration_s = default_kernel_duration(model)
    return model.kernel(kernel_times(tr, duration_s), theta)
