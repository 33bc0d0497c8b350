"""Nuisance that real BOLD carries beyond white or AR(1) noise.

fMRIPrep outputs keep power-law (1/f-type) noise, physiological rhythms aliased below
Nyquist, fluctuations shared across the cortex, residual drifts, and neural drive that
is not only sparse events (docs/method.md §2). Each generator returns unit-variance
series (rows) so the caller sets every component's share of the noise variance.
Frequencies are in Hz and times in s, so one prior serves every TR.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft

# Physiological rhythms (Hz): breathing at rest and heart rate of adults; sampled at the
# run's TR they fold back below Nyquist wherever they exceed it.
RESPIRATION_HZ = (0.1, 0.5)
CARDIAC_HZ = (0.8, 1.5)
# Slow wander of each rhythm's rate (relative sd) and of its amplitude envelope.
RATE_WANDER = 0.05
AMPLITUDE_WANDER = 0.3
# Exponent range of the fluctuation shared by all series of one run (global-signal-like).
SHARED_EXPONENT = (1.0, 2.0)

# The fMRIPrep-grade family surrogates are trained on (``hemocoupling-train --nuisance
# real``), as keyword arguments of NuisancePrior on top of a model's white/AR(1) prior.
# Shares are of the noise variance; sources and the check against real spectra are in
# the model card (benchmarks/bench_nuisance_envelope.py). Wider shares bias θ on white
# noise and narrower ones under real nuisance (benchmarks/bench_real_nuisance.py).
FMRIPREP_NUISANCE = dict(
    # 1/f^β noise: β ≈ 0.5-1.5 over 0.01-0.1 Hz in resting BOLD (HCP regions).
    powerlaw=(0.0, 0.6), powerlaw_exponent=(0.5, 1.5),
    # Respiration and heart rhythms aliased at the run's TR.
    physio=(0.0, 0.3),
    # Drifts left after detrending and the 1/128 Hz high-pass.
    drift=(0.0, 0.1),
    # A global-signal-like fluctuation common to a run (removed by 36P's GSR).
    shared=(0.0, 0.2),
    # Up to 30 % of the neural drive's variance from 1/f^β fluctuations besides events.
    neural_fluctuation=(0.0, 0.3), neural_exponent=(0.0, 1.0),
    # Half the series keep the paper's white/AR(1) model.
    clean_fraction=0.5,
)


def _standardize_rows(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True)
    return x / np.where(sd > 0, sd, 1.0)


def power_law_noise(exponent: np.ndarray, n_frames: int, tr: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise (N, n_frames) with spectrum ∝ f^(−exponent), unit variance per row.

    Shaped in the frequency domain over twice the run length and cropped, so the series
    is not periodic; the lowest ordinate stands in for f = 0.
    """
    exponent = np.asarray(exponent, dtype=np.float32)
    n_long = sp_fft.next_fast_len(2 * n_frames, real=True)
    freqs = sp_fft.rfftfreq(n_long, tr)
    freqs[0] = freqs[1]
    log_f = np.log(freqs).astype(np.float32)
    if np.ptp(exponent) == 0:
        gain = np.exp(-exponent[:1, None] / 2 * log_f[None, :])
    else:
        gain = np.exp(np.multiply.outer(-exponent / 2, log_f))
    white = rng.standard_normal((exponent.shape[0], n_long), dtype=np.float32)
    shaped = sp_fft.irfft(sp_fft.rfft(white, axis=1) * gain, n_long, axis=1)[:, :n_frames]
    return _standardize_rows(shaped)


def drift(n: int, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Random-walk drifts (N, n_frames), unit variance per row (scanner and physiology
    drifts that detrending and high-pass filtering remove only in part)."""
    return _standardize_rows(np.cumsum(rng.standard_normal((n, n_frames), dtype=np.float32),
                                       axis=1))


def _slow_wander(n: int, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance random walks (N, n_frames): slow wander of a rhythm's rate or
    amplitude (a 1/f² spectrum)."""
    return drift(n, n_frames, rng)


def rhythm(frequency: np.ndarray, n_frames: int, tr: float, rng: np.random.Generator
           ) -> np.ndarray:
    """A quasi-periodic rhythm (N, n_frames) sampled every TR, unit variance per row.

    The rate wanders slowly around ``frequency`` and the amplitude is modulated; the
    phase is integrated at the sampling instants (each row with its own slice offset),
    so a rhythm faster than Nyquist aliases exactly as a scanner samples it.
    """
    frequency = np.asarray(frequency, dtype=float)
    n = frequency.shape[0]
    rate = frequency[:, None] * (1.0 + RATE_WANDER * _slow_wander(n, n_frames, rng))
    offset = rng.uniform(0.0, tr, n)
    phase = 2 * np.pi * (np.cumsum(rate, axis=1) * tr + frequency[:, None] * offset[:, None]
                         + rng.random(n)[:, None])
    envelope = np.clip(1.0 + AMPLITUDE_WANDER * _slow_wander(n, n_frames, rng), 0.0, None)
    return _standardize_rows(envelope * np.sin(phase))


def physiological_noise(respiration_share: np.ndarray, respiration_hz: np.ndarray,
                        cardiac_hz: np.ndarray, n_frames: int, tr: float,
                        rng: np.random.Generator) -> np.ndarray:
    """Respiratory plus cardiac rhythms (N, n_frames), unit variance per row, mixed in
    ``respiration_share`` : 1 − share of variance."""
    share = np.asarray(respiration_share, dtype=float)[:, None]
    mixed = (np.sqrt(share) * rhythm(respiration_hz, n_frames, tr, rng)
             + np.sqrt(1.0 - share) * rhythm(cardiac_hz, n_frames, tr, rng))
    return _standardize_rows(mixed)


def shared_fluctuation(n_frames: int, tr: float, rng: np.random.Generator) -> np.ndarray:
    """One unit-variance slow fluctuation (n_frames,) common to every series of a run,
    like the global signal (exponent drawn in :data:`SHARED_EXPONENT`)."""
    exponent = rng.uniform(*SHARED_EXPONENT, 1)
    return power_law_noise(exponent, n_frames, tr, rng)[0]
