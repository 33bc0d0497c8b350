"""A run's own noise regime, by spectral moment matching (docs/method.md §2).

The surrogate marginalises the nuisance over a deliberately wide training prior, but one
run's vertices share a far narrower regime, and there the learned likelihood is biased
(README, Known limitations). To simulate that regime, the run's noise AR(1) coefficient
and event-rate range (at a fixed noise sd: after z-scoring only their ratio is seen) are
fitted so that series at the estimated θ, cleaned exactly like the run, have the run's
across-vertex mean periodogram.

Two choices make the fit identify the noise colour. The distance is taken between log
periodograms, which weights every frequency alike, so the band above the HRF's, where only
noise lives, pins the colour; the linear L1 of the published calibration is dominated by
the signal band. And the spectrum is modelled rather than simulated per evaluation: a
marked Poisson event train is white, so a vertex's cleaned series is √g·x + e with x its
HRF applied to unit white noise and e unit AR(1) noise, both cleaned once (the recipe is
linear before z-scoring), g = λ·TR·E[a²]/σ². The objective is then smooth and cheap,
where a simulated one (events re-drawn as λ moves) stalled Nelder–Mead at its start
(measured: φ 0.054 fitted to white noise on the HCP-calibrated fsLR study).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.signal import lfilter

from bids_app.models import HRFModel
from bids_app.preprocess import Preprocessing, residualise
from bids_app.simulate.bold import NuisancePrior, fft_convolve
from bids_app.simulate.hrf import hrf_kernels

# Vertices modelled: the mean periodogram of 2,000 series has a sampling error of ~2 % per
# frequency, well below the differences the fit resolves.
MATCH_SERIES = 2000
# The AR(1) coefficient is searched inside this range (stationary, and wider than any
# training prior, so a run outside the prior shows as such).
AR_BOUNDS = (-0.5, 0.5)
# Event rates (1/s) are searched inside this range.
RATE_BOUNDS = (1e-4, 10.0)
# A regime reproduces the run's spectrum when the RMS log ratio is at most this: fits to
# simulated runs reach 0.03-0.04 (the sampling error of 2,000 periodograms); the shared
# real fsaverage5 run, low-passed before it reached us, 0.31-0.42 with the fit on its
# bounds.
MAX_DISTANCE = 0.1


@dataclass(frozen=True)
class NoiseMatch:
    """A fitted nuisance regime and how well it reproduces the run's spectrum.

    Attributes
    ----------
    prior : NuisancePrior
        One noise sd and AR(1) coefficient for the run, a uniform event-rate range, the
        amplitude range it was given.
    distance : float
        Root-mean-square of log P_model(f) − log P_run(f) over frequencies.
    n_evaluations : int
        Objective evaluations of the optimiser.
    """

    prior: NuisancePrior
    distance: float
    n_evaluations: int

    def misfit(self) -> str | None:
        """Why this regime does not describe the run, or None when it does."""
        phi, (low, high) = self.prior.ar_coef[0], self.prior.rate
        if self.distance > MAX_DISTANCE:
            return (f"the AR(1) noise model does not reproduce the run's spectrum (RMS log "
                    f"ratio {self.distance:.2f} > {MAX_DISTANCE})")
        if min(abs(phi - b) for b in AR_BOUNDS) < 1e-3 or low <= RATE_BOUNDS[0] * 1.001 \
                or high >= RATE_BOUNDS[1] * 0.999:
            return "the noise model's fit sits on the edge of its search range"
        return None

    def sidecar(self) -> dict:
        return {"NoiseSD": self.prior.noise_sd[0], "NoiseAR": self.prior.ar_coef[0],
                "EventRate": list(self.prior.rate), "EventAmplitude": list(self.prior.amplitude),
                "LogSpectrumDistance": self.distance}


def periodogram(y: np.ndarray) -> np.ndarray:
    """Periodogram along the last axis, without the zero frequency."""
    return (np.abs(np.fft.rfft(y, axis=-1)) ** 2)[..., 1:] / y.shape[-1]


def rate_gain(tr: float, amplitude: tuple[float, float], noise_sd: float) -> float:
    """g / λ: the event train's variance per frame, λ·TR·E[a²] (a uniform on ``amplitude``),
    over the noise variance σ², per unit event rate."""
    low, high = amplitude
    return tr * (low**2 + low * high + high**2) / 3.0 / noise_sd**2


def passband(n_frames: int, tr: float, preprocessing: Preprocessing) -> np.ndarray:
    """Periodogram frequencies the recipe keeps (above the high-pass, below the low-pass):
    elsewhere both spectra are filter residue, whose logs would dominate the distance."""
    freqs = np.fft.rfftfreq(n_frames, tr)[1:]
    keep = np.ones(freqs.size, dtype=bool)
    if preprocessing.highpass:
        keep &= freqs >= preprocessing.highpass
    if preprocessing.lowpass:
        keep &= freqs <= preprocessing.lowpass
    return keep


def vertex_rates(y_clean: np.ndarray, theta: np.ndarray, model: HRFModel, tr: float,
                 preprocessing: Preprocessing, match: NoiseMatch) -> np.ndarray:
    """Each vertex's event rate (1/s) under the matched regime, from its own spectrum.

    The run-level fit describes the mean spectrum only, and a single signal-to-noise ratio
    reproduces it as well as the true spread does; but how far the MAP is shrunk, and so
    its bias, depends on each vertex's ratio (measured: simulating one ratio for a run whose
    vertices span four decades tripled the error's spatial SD, 0.028 → 0.080). So the
    ratio g_v of each vertex is fitted by Whittle's likelihood with the expected spectra,
    g·|H_θv(f)|² + S_φ(f), the scale profiled out, on a grid of g over the recipe's pass band
    (above twice the high-pass, where its roll-off no longer bends the spectrum).
    """
    prior = match.prior
    phi = prior.ar_coef[0]
    gain = rate_gain(tr, prior.amplitude, prior.noise_sd[0])
    n_frames = y_clean.shape[1]
    freqs = np.fft.rfftfreq(n_frames, tr)[1:]
    band = passband(n_frames, tr, preprocessing)
    if preprocessing.highpass:
        band &= freqs >= 2 * preprocessing.highpass
    omega = 2 * np.pi * freqs[band] * tr
    noise = (1 - phi**2) / (1 - 2 * phi * np.cos(omega) + phi**2)
    grid = np.geomspace(1e-3, 1e3, 61)
    g = np.empty(len(y_clean))
    for start in range(0, len(y_clean), 4096):
        rows = slice(start, start + 4096)
        kernels = hrf_kernels(model, np.asarray(theta, dtype=float)[rows], tr)[:, :n_frames]
        hrf_power = (np.abs(np.fft.rfft(kernels, n_frames, axis=1)) ** 2)[:, 1:][:, band]
        power = periodogram(np.asarray(y_clean[rows], dtype=np.float64))[:, band]
        profile = np.empty((grid.size, hrf_power.shape[0]))
        for i, ratio in enumerate(grid):
            expected = ratio * hrf_power + noise
            scale = (power / expected).mean(axis=1)
            profile[i] = -np.log(expected).sum(axis=1) - band.sum() * np.log(scale)
        g[rows] = grid[profile.argmax(axis=0)]
    return np.clip(g / gain, *RATE_BOUNDS)


def unit_ar1(eps: np.ndarray, phi: float) -> np.ndarray:
    """Stationary AR(1) series with unit marginal variance driven by ``eps`` (N, T)."""
    out = np.empty_like(eps)
    out[:, 0] = eps[:, 0]
    out[:, 1:], _ = lfilter([np.sqrt(1.0 - phi**2)], [1.0, -phi], eps[:, 1:], axis=-1,
                            zi=phi * eps[:, :1])
    return out


def match_nuisance(y_clean: np.ndarray, theta: np.ndarray, model: HRFModel, tr: float,
                   preprocessing: Preprocessing, amplitude: tuple[float, float],
                   noise_sd: float, confounds: np.ndarray | None = None, seed: int = 0,
                   n_series: int = MATCH_SERIES) -> NoiseMatch:
    """Fit the run's noise AR(1) coefficient and (uniform) event-rate range.

    Parameters
    ----------
    y_clean : array (V, T)
        The run's cleaned series (as summarised).
    theta : array (V, P)
        Estimated HRF parameters (natural units) of the same vertices.
    model : HRFModel
    tr : float
        Repetition time, s.
    preprocessing : Preprocessing
        The recipe the run was cleaned with; modelled series get the same.
    amplitude : (low, high)
        Event amplitude range (uniform), kept fixed.
    noise_sd : float
        Noise sd, kept fixed: the rates absorb the signal-to-noise ratio.
    confounds : array (T, k), optional
        The regressors removed from the run; removed from modelled series too.
    seed : int
        Seeds the vertex subset and the modelled series.
    n_series : int
        Vertices modelled.
    """
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(y_clean), min(n_series, len(y_clean)), replace=False))
    n, n_frames = len(rows), y_clean.shape[1]
    band = passband(n_frames, tr, preprocessing)
    target = np.log(periodogram(np.asarray(y_clean[rows], dtype=np.float64)).mean(axis=0))
    kernels = hrf_kernels(model, np.asarray(theta, dtype=float)[rows], tr)
    n_burn = kernels.shape[1]
    drive = rng.standard_normal((n, n_burn + n_frames))
    signal = residualise(fft_convolve(drive, kernels)[:, n_burn:], tr, preprocessing, confounds)
    signal_power, signal_var = periodogram(signal), signal.var(axis=1)
    eps = rng.standard_normal((n, n_frames))
    position = (np.arange(n) + 0.5) / n  # each vertex's quantile of the rate range
    rng.shuffle(position)
    gain = rate_gain(tr, amplitude, noise_sd)
    noise_cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def noise(phi: float) -> tuple[np.ndarray, np.ndarray]:
        if phi not in noise_cache:
            e = residualise(unit_ar1(eps, phi), tr, preprocessing, confounds)
            noise_cache.clear()
            noise_cache[phi] = periodogram(e), e.var(axis=1)
        return noise_cache[phi]

    def unpack(params: np.ndarray) -> tuple[float, float, float]:
        log_low, log_span, phi = params
        return float(np.exp(log_low)), float(np.exp(log_low + log_span)), float(phi)

    def distance(params: np.ndarray) -> float:
        low, high, phi = unpack(params)
        g = gain * (low + position * (high - low))
        noise_power, noise_var = noise(phi)
        model_power = ((g[:, None] * signal_power + noise_power)
                       / (g * signal_var + noise_var)[:, None]).mean(axis=0)
        return float(np.sqrt(np.mean((np.log(model_power[band]) - target[band]) ** 2)))

    log_rates = np.log(RATE_BOUNDS)
    bounds = [tuple(log_rates), (0.0, log_rates[1] - log_rates[0]), AR_BOUNDS]
    starts = [np.array([np.log(0.01), np.log(20.0), phi]) for phi in (0.0, 0.2)]
    fits = [minimize(distance, x0, method="L-BFGS-B", bounds=bounds) for x0 in starts]
    fit = min(fits, key=lambda f: f.fun)
    low, high, phi = unpack(fit.x)
    low = float(np.clip(low, *RATE_BOUNDS))  # exp(log(bound)) may round past the bound
    high = float(np.clip(high, low, RATE_BOUNDS[1]))
    prior = NuisancePrior(noise_sd=(noise_sd, noise_sd), amplitude=tuple(amplitude),
                          rate=(low, high), ar_coef=(phi, phi))
    return NoiseMatch(prior, float(fit.fun), int(sum(f.nfev for f in fits)))
