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

    Events arrive at ``rate`` per **second** (exponential inter-arrival times), so the
    count in a bin of width TR is Poisson(rate·TR). Each event carries an amplitude
    U(amp_low, amp_high); amplitudes falling in the same bin add up.

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
    counts = rng.poisson(np.repeat(rate * tr, n_bins).reshape(n, n_bins))
    flat_counts = counts.ravel()
    bin_of_event = np.repeat(np.arange(flat_counts.size), flat_counts)
    series_of_event = bin_of_event // n_bins
    low = np.asarray(amp_low, dtype=float)[series_of_event]
    high = np.asarray(amp_high, dtype=float)[series_of_event]
    amplitudes = low + (high - low) * rng.random(bin_of_event.size)
    summed = np.bincount(bin_of_event, weights=amplitudes, minlength=flat_counts.size)
    return summed.reshape(n, n_bins)
