"""Neural series estimates: each vertex's cleaned BOLD deconvolved by its own HRF."""

from __future__ import annotations

import numpy as np

from bids_app.models import HRFModel
from bids_app.simulate.hrf import hrf_kernels

NOISE_TO_SIGNAL = 0.1  # Wiener regulariser, as a fraction of each kernel's peak power


def wiener_deconvolve(y_clean: np.ndarray, theta: np.ndarray, model: HRFModel | str,
                      tr: float) -> np.ndarray:
    """Neural series estimate per vertex, deconvolving each vertex's own estimated HRF.

    Wiener filter Ŝ = conj(H)·Y / (|H|² + λ) with λ = NOISE_TO_SIGNAL · max|H|², computed
    with zero padding (no wrap-around); the result is z-scored over time (units are
    arbitrary: only the timing is identified).
    """
    kernels = hrf_kernels(model, theta, tr)
    n_frames = y_clean.shape[1]
    n_fft = int(2 ** np.ceil(np.log2(n_frames + kernels.shape[1])))
    h = np.fft.rfft(kernels, n_fft, axis=1)
    power = np.abs(h) ** 2
    lam = NOISE_TO_SIGNAL * power.max(axis=1, keepdims=True)
    s = np.fft.irfft(np.conj(h) * np.fft.rfft(y_clean, n_fft, axis=1) / (power + lam), n_fft,
                     axis=1)[:, :n_frames]
    s -= s.mean(axis=1, keepdims=True)
    sd = s.std(axis=1, keepdims=True)
    return (s / np.where(sd > 0, sd, 1.0)).astype(np.float32)
