"""Protocol-free spectral features of a cleaned series.

The surrogate must serve any TR in [0.5, 3] s and any run of ≥ 150 frames, so its input
is fixed in physical frequency: the log of the periodogram averaged over fixed
log-spaced bands in Hz. A band is *masked* when the run has no periodogram ordinate in
it (below 1/duration), when it reaches past Nyquist, or when it reaches past the
low-pass cut-off of the cleaning; the mask and the protocol (log TR, log duration,
log highest usable frequency, share of the frames spent on confound regressors) are
inputs too, so one network covers all protocols and confound strategies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Band edges in Hz. The lowest edge sits at the 1/128 Hz high-pass of the default
# cleaning; the highest is Nyquist at the shortest supported TR (0.5 s).
BAND_LOW_HZ = 1.0 / 128.0
BAND_HIGH_HZ = 1.0
N_BANDS = 48  # ~22 per decade: 48 beat 24 on held-out MSE (model card)
N_PROTOCOL = 4  # entries of protocol_vector
# Vertices whose band powers are averaged per block (see band_log_power_from_periodogram).
FEATURE_ROWS = 2048


@dataclass(frozen=True)
class Protocol:
    """Acquisition and cleaning facts that change what a spectrum looks like.

    Attributes
    ----------
    tr : float
        Repetition time in s.
    n_frames : int
        Frames in the run.
    lowpass : float or None
        Low-pass cut-off in Hz applied by the cleaning (None: none).
    n_regressors : int
        Confound regressors removed by the cleaning (besides drift and high-pass); each
        removes a degree of freedom, mostly at low frequencies, which changes the
        spectrum of a short run (24 of 300 frames) as much as the HRF does.
    """

    tr: float
    n_frames: int
    lowpass: float | None = None
    n_regressors: int = 0

    @property
    def duration(self) -> float:
        """Run length in s."""
        return self.tr * self.n_frames

    @property
    def max_frequency(self) -> float:
        """Highest frequency (Hz) that carries signal: Nyquist or the low-pass cut-off."""
        nyquist = 0.5 / self.tr
        return min(nyquist, self.lowpass) if self.lowpass else nyquist


def band_edges(n_bands: int = N_BANDS) -> np.ndarray:
    """Log-spaced band edges (n_bands + 1,) in Hz."""
    return np.geomspace(BAND_LOW_HZ, BAND_HIGH_HZ, n_bands + 1)


def band_mask(protocol: Protocol, n_bands: int = N_BANDS) -> np.ndarray:
    """Bands (n_bands,) bool that hold at least one ordinate and lie below the
    protocol's highest usable frequency."""
    edges = band_edges(n_bands)
    freqs = _ordinate_frequencies(protocol)
    counts = np.histogram(freqs, bins=edges)[0]
    return (counts > 0) & (edges[1:] <= protocol.max_frequency)


def ordinate_bands(n_frames: int, tr: float, n_bands: int = N_BANDS) -> np.ndarray:
    """Band (⌊T/2⌋,) int of each periodogram ordinate, −1 where it is in none (below
    ``BAND_LOW_HZ`` or at/above ``BAND_HIGH_HZ``): the grouping the features average over."""
    which = np.digitize(_ordinate_frequencies(Protocol(tr, n_frames)), band_edges(n_bands)) - 1
    return np.where(which < n_bands, which, -1)


def _ordinate_frequencies(protocol: Protocol) -> np.ndarray:
    """Frequencies (Hz) of periodogram ordinates 1 … ⌊T/2⌋ (the mean is excluded)."""
    n = protocol.n_frames
    return np.arange(1, n // 2 + 1) / (n * protocol.tr)


def periodogram(y: np.ndarray) -> np.ndarray:
    """Periodogram |FFT|²/T of (V, T) series at ordinates 1 … ⌊T/2⌋, (V, ⌊T/2⌋) float64.

    The one place the features' periodogram is computed; the bootstrap's frequency-domain
    resampling starts from it too (:mod:`bids_app.bootstrap.periodogram`).
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[-1]
    return np.abs(np.fft.rfft(y, axis=-1)[:, 1: n // 2 + 1]) ** 2 / n


def band_log_power(y_clean: np.ndarray, protocol: Protocol, n_bands: int = N_BANDS
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Log band-averaged periodogram of cleaned (z-scored) series.

    Parameters
    ----------
    y_clean : array (V, T)
        Output of :func:`bids_app.preprocess.clean`; T must equal ``protocol.n_frames``.
    protocol : Protocol
    n_bands : int

    Returns
    -------
    log_power : array (V, n_bands) float32
        log of the mean of |FFT|²/T over the ordinates in each band (variance per
        ordinate, dimensionless since series are z-scored); 0 where masked.
    mask : array (n_bands,) bool
    """
    n = np.shape(y_clean)[-1]
    if n != protocol.n_frames:
        raise ValueError(f"series have {n} frames, protocol says {protocol.n_frames}")
    return band_log_power_from_periodogram(periodogram(y_clean), protocol, n_bands)


def band_log_power_from_periodogram(power: np.ndarray, protocol: Protocol,
                                    n_bands: int = N_BANDS) -> tuple[np.ndarray, np.ndarray]:
    """:func:`band_log_power` of a periodogram (V, ⌊T/2⌋) as from :func:`periodogram`
    (T = ``protocol.n_frames``): the same features, bit for bit, without the series."""
    power = np.asarray(power, dtype=np.float64)
    if power.shape[-1] != protocol.n_frames // 2:
        raise ValueError(f"periodogram has {power.shape[-1]} ordinates, a run of "
                         f"{protocol.n_frames} frames has {protocol.n_frames // 2}")
    mask = band_mask(protocol, n_bands)
    which = ordinate_bands(protocol.n_frames, protocol.tr, n_bands)
    bands = np.flatnonzero(mask)
    # a band's ordinates are contiguous (frequencies increase): one slice each
    members = [np.flatnonzero(which == band) for band in bands]
    starts, stops = [m[0] for m in members], [m[-1] + 1 for m in members]
    out = np.zeros((power.shape[0], n_bands), dtype=np.float32)
    # Row blocks keep each band's copy in cache (the mean of a contiguous copy, as the
    # boolean selection made it: the same rounding); a third less CPU at fsLR 32k than
    # copies of whole columns.
    for first in range(0, power.shape[0], FEATURE_ROWS):
        block = power[first:first + FEATURE_ROWS]
        for band, start, stop in zip(bands, starts, stops, strict=True):
            mean_power = np.ascontiguousarray(block[:, start:stop]).mean(axis=1)
            out[first:first + FEATURE_ROWS, band] = np.log(mean_power + 1e-8)
    return out, mask


def protocol_vector(protocol: Protocol) -> np.ndarray:
    """(log TR, log duration, log highest usable frequency, regressors per frame), each
    roughly in [-1, 1] over the supported range, so networks see well-scaled inputs.

    Regressors enter as a fraction of the frames (0 to 36/150 = 0.24 over the trained
    strategies and run lengths): what one regressor removes from a spectrum shrinks
    with the run's length."""
    return np.array([
        (np.log(protocol.tr) - np.log(1.2)) / 0.9,
        (np.log(protocol.duration) - np.log(600.0)) / 1.5,
        (np.log(protocol.max_frequency) - np.log(0.2)) / 1.2,
        protocol.n_regressors / protocol.n_frames / 0.12 - 1.0,
    ], dtype=np.float32)


def feature_matrix(y_clean: np.ndarray, protocol: Protocol, n_bands: int = N_BANDS,
                   context: Protocol | None = None) -> np.ndarray:
    """Network input (V, 2·n_bands + N_PROTOCOL): log band power, mask, protocol vector.

    ``context`` overrides the protocol fed to the network (runs longer than any
    training run are described as the longest trained run, a conservative choice).
    """
    log_power, mask = band_log_power(y_clean, protocol, n_bands)
    return _network_input(log_power, mask, context or protocol)


def feature_matrix_from_periodogram(power: np.ndarray, protocol: Protocol,
                                    n_bands: int = N_BANDS, context: Protocol | None = None
                                    ) -> np.ndarray:
    """:func:`feature_matrix` of a periodogram (V, ⌊T/2⌋) of cleaned series."""
    log_power, mask = band_log_power_from_periodogram(power, protocol, n_bands)
    return _network_input(log_power, mask, context or protocol)


def _network_input(log_power: np.ndarray, mask: np.ndarray, protocol: Protocol) -> np.ndarray:
    v, n_bands = log_power.shape
    return np.concatenate([
        log_power,
        np.broadcast_to(mask.astype(np.float32), (v, n_bands)),
        np.broadcast_to(protocol_vector(protocol), (v, N_PROTOCOL)),
    ], axis=1).astype(np.float32)
