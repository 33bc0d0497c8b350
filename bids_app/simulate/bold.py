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
from bids_app.simulate.nuisance import (
    CARDIAC_HZ,
    RESPIRATION_HZ,
    drift,
    physiological_noise,
    power_law_noise,
    shared_fluctuation,
)

NUISANCE_KEYS = ("noise_sd", "amp_low", "amp_high", "rate", "ar_coef")
# Shares of the noise variance taken by each beyond-AR(1) component (absent: 0).
NOISE_SHARES = ("powerlaw", "physio", "drift", "shared")
# The AR(1) part keeps at least this share of the noise variance.
MIN_AR_SHARE = 0.05
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
    powerlaw, physio, drift, shared : (low, high)
        Shares of the noise variance, drawn uniformly per series, of power-law noise
        (exponent in ``powerlaw_exponent``), aliased respiratory and cardiac rhythms,
        random-walk drift, and a slow fluctuation common to all series of one call (one
        run); the AR(1) noise keeps the rest (at least :data:`MIN_AR_SHARE`; larger
        draws are scaled down together). (0, 0) turns a component off and draws nothing.
    neural_fluctuation : (low, high)
        Share of the neural drive's variance from power-law fluctuations (exponent in
        ``neural_exponent``) added to the events: resting drive is not only sparse events.
    clean_fraction : float
        Share of series drawn with none of the components above (white or AR(1) noise
        and events only, the paper's model), so that model keeps its prior mass.
    """

    noise_sd: tuple[float, float]
    amplitude: tuple[float, float]
    rate: tuple[float, float]
    ar_coef: tuple[float, float] = (0.0, 0.0)
    rate_log_uniform: bool = False
    powerlaw: tuple[float, float] = (0.0, 0.0)
    powerlaw_exponent: tuple[float, float] = (0.5, 1.5)
    physio: tuple[float, float] = (0.0, 0.0)
    drift: tuple[float, float] = (0.0, 0.0)
    shared: tuple[float, float] = (0.0, 0.0)
    neural_fluctuation: tuple[float, float] = (0.0, 0.0)
    neural_exponent: tuple[float, float] = (0.0, 1.0)
    clean_fraction: float = 0.0

    @property
    def beyond_ar1(self) -> bool:
        """Whether any component beyond white/AR(1) noise and events is switched on."""
        return any(getattr(self, name)[1] > 0 for name in (*NOISE_SHARES, "neural_fluctuation"))

    def __post_init__(self) -> None:
        for name in ("powerlaw", "physio", "drift", "shared", "neural_fluctuation"):
            low, high = getattr(self, name)
            if not 0.0 <= low <= high < 1.0:
                raise ValueError(f"NuisancePrior.{name}: a share needs 0 <= low <= high < 1")
        if not 0.0 <= self.clean_fraction <= 1.0:
            raise ValueError("NuisancePrior.clean_fraction must lie in [0, 1]")
        for name in ("noise_sd", "amplitude", "rate", "ar_coef", "powerlaw_exponent",
                     "neural_exponent"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"NuisancePrior.{name}: low {low} > high {high}")
        if self.noise_sd[0] < 0 or self.rate[0] < 0:
            raise ValueError("NuisancePrior: noise_sd and rate must be non-negative")
        if not -1.0 < self.ar_coef[0] <= self.ar_coef[1] < 1.0:
            raise ValueError("NuisancePrior.ar_coef must lie in (-1, 1)")

    def to_dict(self) -> dict:
        return asdict(self)


# Spectral-moment-matched to one HCP subject (TR 0.72 s, 1200 frames), docs/method.md §2.
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
    """Per-series nuisance settings, each an array (n,): noise_sd, amp_low, amp_high,
    rate (1/s), ar_coef; with beyond-AR(1) components on, also their shares
    (:data:`NOISE_SHARES`, neural_fluctuation), exponents and rhythm frequencies (Hz).

    Nothing more is drawn for a prior without those components, so its random stream
    (and every series simulated from it) is unchanged."""
    draw = {
        "noise_sd": _uniform(rng, prior.noise_sd, n, log=prior.noise_sd[0] > 0),
        "amp_low": np.full(n, float(prior.amplitude[0])),
        "amp_high": np.full(n, float(prior.amplitude[1])),
        "rate": _uniform(rng, prior.rate, n, log=prior.rate_log_uniform),
        "ar_coef": _uniform(rng, prior.ar_coef, n),
    }
    if not prior.beyond_ar1:
        return draw
    on = rng.random(n) >= prior.clean_fraction
    shares = np.stack([_uniform(rng, getattr(prior, name), n) for name in NOISE_SHARES]) * on
    total = shares.sum(axis=0)
    limit = 1.0 - MIN_AR_SHARE
    shares *= np.where(total > limit, limit / np.maximum(total, 1e-12), 1.0)
    draw.update(zip(NOISE_SHARES, shares, strict=True))
    draw.update(
        powerlaw_exponent=_uniform(rng, prior.powerlaw_exponent, n),
        respiration_hz=_uniform(rng, RESPIRATION_HZ, n),
        cardiac_hz=_uniform(rng, CARDIAC_HZ, n),
        respiration_share=rng.random(n),
        neural_fluctuation=_uniform(rng, prior.neural_fluctuation, n) * on,
        neural_exponent=_uniform(rng, prior.neural_exponent, n),
    )
    return draw


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
    shared: np.ndarray | None = None,
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
    shared : array (n_frames,), optional
        The run's common fluctuation (unit variance) for a nuisance with a ``shared``
        share; drawn here when not given.

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
    beyond = "powerlaw" in nuisance
    if beyond and shared is None and np.any(nuisance["shared"] > 0):
        shared = shared_fluctuation(n_frames, tr, rng)
    out = np.empty((theta.shape[0], n_frames), dtype=np.float32)
    for start in range(0, theta.shape[0], CHUNK_SERIES):
        rows = slice(start, start + CHUNK_SERIES)
        # Single precision: rounding (~1e-7 relative) is far below any noise level.
        kernels = hrf_kernels(model, theta[rows], tr, kernel_s).astype(np.float32)
        events = poisson_events(nuisance["rate"][rows], nuisance["amp_low"][rows],
                                nuisance["amp_high"][rows], tr, n_burn + n_frames, rng)
        part = {key: np.asarray(value)[rows] for key, value in nuisance.items()}
        if beyond:
            events = events + neural_fluctuations(part, tr, n_burn + n_frames, rng)
        signal = fft_convolve(events.astype(np.float32), kernels)[:, n_burn:]
        noise = ar1_noise(part["noise_sd"], part["ar_coef"], n_frames, rng)
        if beyond:
            noise = mixed_noise(noise, part, shared, tr, rng)
        out[rows] = signal + noise
    return out


def neural_fluctuations(part: dict[str, np.ndarray], tr: float, n_bins: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Power-law neural fluctuations (N, n_bins) taking each series' share of the neural
    drive's variance (the events' expected variance per bin is λ·TR·E[a²])."""
    share = part["neural_fluctuation"]
    low, high = part["amp_low"], part["amp_high"]
    event_var = part["rate"] * tr * (low**2 + low * high + high**2) / 3.0
    scale = np.sqrt(share / (1.0 - share) * event_var)
    if not np.any(scale > 0):
        return np.zeros((share.shape[0], n_bins))
    return scale[:, None] * power_law_noise(part["neural_exponent"], n_bins, tr, rng)


def mixed_noise(ar_noise: np.ndarray, part: dict[str, np.ndarray], shared: np.ndarray | None,
                tr: float, rng: np.random.Generator) -> np.ndarray:
    """AR(1) noise (sd σ_e) mixed with the beyond-AR(1) components at their shares of the
    noise variance; the total keeps variance σ_e². Components are drawn only for the
    series that carry them."""
    n_frames = ar_noise.shape[1]
    scale = {name: part["noise_sd"] * np.sqrt(part[name]) for name in NOISE_SHARES}
    rest = 1.0 - sum(part[name] for name in NOISE_SHARES)
    total = np.sqrt(rest)[:, None] * ar_noise
    draws = {
        "powerlaw": lambda rows: power_law_noise(part["powerlaw_exponent"][rows], n_frames,
                                                 tr, rng),
        "physio": lambda rows: physiological_noise(
            part["respiration_share"][rows], part["respiration_hz"][rows],
            part["cardiac_hz"][rows], n_frames, tr, rng),
        "drift": lambda rows: drift(len(rows), n_frames, rng),
    }
    for name, draw in draws.items():
        rows = np.flatnonzero(scale[name] > 0)
        if rows.size:
            total[rows] += scale[name][rows, None] * draw(rows)
    if shared is not None:
        total += scale["shared"][:, None] * shared[None, :]
    return total.astype(np.float32)


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
    shared: np.ndarray | None = None,
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
    shared : array (n_frames,), optional
        The run's common fluctuation (see :func:`simulate_bold`), e.g. the one in the
        global signal of ``confounds``.

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
        raw = simulate_bold(model, theta, tr, n_frames, nuisance, rng, shared=shared)
        y_clean[rows] = clean(raw, tr, preprocessing, confounds)
    return (theta_t, y_clean, ar_coef) if with_ar_coef else (theta_t, y_clean)
