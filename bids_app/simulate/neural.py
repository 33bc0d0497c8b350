"""Neural activity: a marked Poisson event process per series, binned onto the TR grid."""

from __future__ import annotations

import numpy as np


def poisson_events(
    rate: np.ndarray,
    amp_low: np.ndarray,
    amp_high: np.ndarray,
    tr: float,
    n_bins: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Binned marked Poisson events for many independent series at once.

    Events arrive at ``rate`` per **second** (exponential inter-arrival times). Drawn
    exactly and cheaply: the count over the whole window is Poisson(rate·n_bins·TR) and,
    given the count, arrival times are independent and uniform on the window. Each event
    carries an amplitude U(amp_low, amp_high); amplitudes in the same TR bin add up.

    Parameters
    ----------
    rate, amp_low, amp_high : array (N,)
        Per-series event rate (1/s) and amplitude bounds.
    tr : float
        Bin width (repetition time) in s.
    n_bins : int
        Number of TR bins.
    rng : numpy.random.Generator

    Returns
    -------
    array (N, n_bins) float64
    """
    rate = np.asarray(rate, dtype=float)
    n = rate.shape[0]
    counts = rng.poisson(rate * (n_bins * tr))
    series = np.repeat(np.arange(n), counts)
    bins = np.minimum((rng.random(series.size) * n_bins).astype(np.int64), n_bins - 1)
    low = np.asarray(amp_low, dtype=float)[series]
    high = np.asarray(amp_high, dtype=float)[series]
    amplitudes = low + (high - low) * rng.random(series.size)
    summed = np.bincount(series * n_bins + bins, weights=amplitudes, minlength=n * n_bins)
    return summed.reshape(n, n_bins)
