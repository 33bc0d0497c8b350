"""BOLD forward model y = h_θ * s + noise, and simulated training sets.

Series are simulated in fixed-size chunks of vertices, so memory stays bounded and a
given seed gives the same data whatever the machine.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import fft as sp_fft

from bids_app.models import HRFModel
from bids_app.preprocess import Preprocessing, clean
from bids_app.simulate.hrf import default_kernel_duration, hrf_kernels, resolve_model
from bids_app.simulate.neural import poisson_events

NUISANCE_KEYS = ("noise_sd", "amp_low", "amp_high", "rate", "ar_coef")
# Series per chunk: ~4k × ~1.5k frames keeps each FFT buffer under ~100 MB.
CHUNK_SERIES = 4096


@dataclass(frozen=True)
class NuisancePrior:
    """Ranges of the nuisance settings, drawn independently per series.

    Attributes
    ----------
    noise_sd : (low, high)
        Marginal sd σ_e of the measurement noise (signal units), drawn log-uniformly
        (a scale parameter; uniformly when low is 0); a degenerate range fixes it.
    amplitude : (a_min, a_max)
        Bounds of the uniform distribution of every event's amplitude.
    rate : (low, high)
        Event rate λ in events per second, drawn uniformly per series
        (log-uniformly when ``rate_log_uniform``).
    ar_coef : (low, high)
        AR(1) coefficient φ of the noise, drawn uniformly; (0, 0) is white noise.
        The noise keeps marginal sd σ_e for any φ.
    rate_log_uniform : bool
        Draw λ log-uniformly, which spreads broad robustness priors over decades.
    """

    noise_sd: tuple[float, float]
    amplitude: tuple[float, float]
    rate: tuple[float, float]
    ar_coef: tuple[float, float] = (0.0, 0.0)
    rate_log_uniform: bool = False

    def __post_init__(self) -> None:
        for name in ("noise_sd", "amplitude", "rate", "ar_coef"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"NuisancePrior.{name}: low {low} > high {high}")
        if self.noise_sd[0] < 0 or self.rate[0] < 0:
            raise ValueError("NuisancePrior: noise_sd and rate must be non-negative")
        if not -1.0 < self.ar_coef[0] <= self.ar_coef[1] < 1.0:
            raise ValueError("NuisancePrior.ar_coef must lie in (-1, 1)")

    def to_dict(self) -> dict:
        return asdict(self)


# Spectral-moment-matched to one HCP subject (TR 0.72 s, 1200 frames), DESIGN.md §2.
HCP_1P = NuisancePrior(noise_sd=(0.1515, 0.1515), amplitude=(0.7435, 0.8373),
                       rate=(0.00395, 0.2168))
HCP_2P = NuisancePrior(noise_sd=(0.2421, 0.2421), amplitude=(1.0, 1.0),
                       rate=(0.01135, 0.0696))


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int,
             log: bool = False) -> np.ndarray:
    low, high = bounds
    if low == high:
        return np.full(n, float(low))
    if log:
        return np.exp(rng.uniform(np.log(low), np.log(high), n))
    return rng.uniform(low, high, n)


def sample_nuisance(prior: NuisancePrior, n: int, rng: np.random.Generator
                    ) -> dict[str, np.ndarray]:
    """Per-series nuisance settings: keys noise_sd, amp_low, amp_high, rate (1/s),
    ar_coef, each an array (n,)."""
    return {
        "noise_sd": _uniform(rng, prior.noise_sd, n, log=prior.noise_sd[0] > 0),
        "amp_low": np.full(n, float(prior.amplitude[0])),
        "amp_high": np.full(n, float(prior.amplitude[1])),
        "rate": _uniform(rng, prior.rate, n, log=prior.rate_log_uniform),
        "ar_coef": _uniform(rng, prior.ar_coef, n),
    }


def fft_convolve(signal: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Causal linear convolution along the last axis, truncated to the signal length.

    out[..., t] = Σ_k kernel[..., k]·signal[..., t − k]; rows of ``signal`` and
    ``kernel`` pair up (or broadcast). Zero-padded FFT, so no wrap-around.
    """
    n, k = signal.shape[-1], kernel.shape[-1]
    n_fft = sp_fft.next_fast_len(n + k - 1, real=True)
    spectrum = sp_fft.rfft(signal, n_fft, axis=-1) * sp_fft.rfft(kernel, n_fft, axis=-1)
    return sp_fft.irfft(spectrum, n_fft, axis=-1)[..., :n]


def ar1_noise(sd: np.ndarray, coef: np.ndarray, n_frames: int, rng: np.random.Generator
              ) -> np.ndarray:
    """Stationary AR(1) noise (N, n_frames) with marginal sd ``sd`` and coefficient ``coef``."""
    eps = rng.standard_normal((sd.shape[0], n_frames), dtype=np.float32)
    if not np.any(coef):
        return sd[:, None].astype(np.float32) * eps
    innovation_scale = np.sqrt(1.0 - coef**2)
    out = np.empty_like(eps)
    out[:, 0] = eps[:, 0]
    for t in range(1, n_frames):  # a loop over time, vectorised over series
        out[:, t] = coef * out[:, t - 1] + innovation_scale * eps[:, t]
    return sd[:, None].astype(np.float32) * out


def simulate_bold(
    model: HRFModel | str,
    theta: np.ndarray,
    tr: float,
    n_frames: int,
    nuisance: dict[str, np.ndarray],
    rng: np.random.Generator,
    burn_in_s: float | None = None,
) -> np.ndarray:
    """Raw (uncleaned) BOLD series, one per row of ``theta``.

    Neural events are simulated for a burn-in period plus ``n_frames``, convolved with
    each series' HRF by FFT, the burn-in is dropped (so series start in steady state)
    and noise is added.

    Parameters
    ----------
    model : HRFModel or {"1p", "2p"}
    theta : array (N, P)
        Natural HRF parameters per series.
    tr : float
        Repetition time in s (any value; tested on 0.4–3.0 s).
    n_frames : int
        Frames kept.
    nuisance : dict of arrays (N,)
        From :func:`sample_nuisance`.
    rng : numpy.random.Generator
    burn_in_s : float, optional
        Seconds simulated and dropped; default (and minimum) the kernel length.

    Returns
    -------
    array (N, n_frames) float32
    """
    model = resolve_model(model)
    theta = np.asarray(theta, dtype=float).reshape(-1, model.n_params)
    if not (tr > 0 and n_frames >= 1):
        raise ValueError(f"need tr > 0 s and n_frames >= 1, got {tr}, {n_frames}")
    short = [k for k in NUISANCE_KEYS if np.shape(nuisance[k]) != (theta.shape[0],)]
    if short:
        raise ValueError(f"nuisance {short} must have one value per series ({theta.shape[0]})")
    kernel_s = default_kernel_duration(model)
    burn_in_s = kernel_s if burn_in_s is None else max(float(burn_in_s), kernel_s)
    n_burn = math.ceil(burn_in_s / tr)
    out = np.empty((theta.shape[0], n_frames), dtype=np.float32)
    for start in range(0, theta.shape[0], CHUNK_SERIES):
        rows = slice(start, start + CHUNK_SERIES)
        # Single precision: rounding (~1e-7 relative) is far below any noise level.
        kernels = hrf_kernels(model, theta[rows], tr, kernel_s).astype(np.float32)
        events = poisson_events(nuisance["rate"][rows], nuisance["amp_low"][rows],
                                nuisance["amp_high"][rows], tr, n_burn + n_frames, rng)
        signal = fft_convolve(events.astype(np.float32), kernels)[:, n_burn:]
        noise = ar1_noise(nuisance["noise_sd"][rows], nuisance["ar_coef"][rows], n_frames, rng)
        out[rows] = signal + noise
    return out


def simulate_training_set(
    model: HRFModel | str,
    n: int,
    tr: float,
    n_frames: int,
    prior: NuisancePrior,
    preprocessing: Preprocessing,
    rng: np.random.Generator,
    confounds: np.ndarray | None = None,
    with_ar_coef: bool = False,
) -> tuple[np.ndarray, ...]:
    """Simulated (θ̃, cleaned series) pairs for training the surrogate.

    θ̃ ~ N(0, 1) per parameter (θ uniform on the link box), nuisance drawn from
    ``prior``, and every series cleaned with exactly the app's :func:`clean`.

    Parameters
    ----------
    model : HRFModel or {"1p", "2p"}
    n : int
        Number of series.
    tr : float
        Repetition time in s.
    n_frames : int
    prior : NuisancePrior
    preprocessing : Preprocessing
        The recipe applied to real data.
    rng : numpy.random.Generator
    confounds : array (n_frames, k), optional
        Regressors removed as in real data (costs the same degrees of freedom).
    with_ar_coef : bool
        Also return the noise AR(1) coefficient each series was drawn with, for a caller
        that conditions on it (a surrogate told the run's noise colour). Reported, not
        drawn again, so the random stream is the same either way.

    Returns
    -------
    theta_t : array (n, P) float32
    y_clean : array (n, n_frames) float32
    ar_coef : array (n,) float32, with ``with_ar_coef``
    """
    model = resolve_model(model)
    theta_t = rng.standard_normal((n, model.n_params)).astype(np.float32)
    y_clean = np.empty((n, n_frames), dtype=np.float32)
    ar_coef = np.empty(n, dtype=np.float32)
    for start in range(0, n, CHUNK_SERIES):
        rows = slice(start, start + CHUNK_SERIES)
        theta = model.to_theta(theta_t[rows])
        nuisance = sample_nuisance(prior, theta.shape[0], rng)
        ar_coef[rows] = nuisance["ar_coef"]
        raw = simulate_bold(model, theta, tr, n_frames, nuisance, rng)
        y_clean[rows] = clean(raw, tr, preprocessing, confounds)
    return (theta_t, y_clean, ar_coef) if with_ar_coef else (theta_t, y_clean)
