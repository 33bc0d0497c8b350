"""Stationary block bootstrap of time (Politis & Romano 1994), jointly for all vertices.

Resting-state series are autocorrelated over tens of seconds, so resampling single
frames would destroy the spectrum the surrogate summarises. The stationary bootstrap
glues together blocks of geometric random length (mean ``block_frames``) starting at
uniform random frames, wrapping around the end of the run. One index array is applied
to every vertex, which keeps the spatial dependence between vertices intact.
"""

from __future__ import annotations

import numpy as np

from bids_app.errors import UsageError


def block_frames(block_s: float, tr: float) -> float:
    """Mean block length in frames for a mean block length of ``block_s`` seconds.

    The length is set in seconds so that the same option resamples the same amount of
    hemodynamic memory at any TR; it never drops below one frame.
    """
    if not (np.isfinite(block_s) and block_s > 0):
        raise UsageError(f"bootstrap block length must be > 0 seconds, got {block_s}")
    if not (np.isfinite(tr) and tr > 0):
        raise UsageError(f"repetition time must be > 0 seconds, got {tr}")
    return max(1.0, float(block_s) / float(tr))


def stationary_indices(
    n_frames: int, mean_block: float, n: int, rng: np.random.Generator | int | None
) -> np.ndarray:
    """Draw ``n`` stationary-bootstrap resamples of the frame axis.

    Parameters
    ----------
    n_frames : int
        Number of frames T in the run.
    mean_block : float
        Mean block length in frames (≥ 1); blocks have geometric lengths with
        success probability ``1 / mean_block``.
    n : int
        Number of resamples.
    rng : numpy Generator or seed
        Source of randomness; the same seed gives the same indices.

    Returns
    -------
    array (n, n_frames), int64
        Frame indices; ``y[:, idx[i]]`` is resample ``i`` of a (V, T) block.
    """
    if n_frames < 1:
        raise UsageError(f"cannot resample a run of {n_frames} frames")
    rng = np.random.default_rng(rng)
    t = np.arange(n_frames)
    new_block = rng.random((n, n_frames)) < 1.0 / max(1.0, float(mean_block))
    new_block[:, 0] = True
    starts = rng.integers(0, n_frames, size=(n, n_frames))
    # Frame at which the block covering position t began, and where it jumped to.
    block_begin = np.maximum.accumulate(np.where(new_block, t, 0), axis=1)
    jump_to = np.take_along_axis(starts, block_begin, axis=1)
    return (jump_to + (t - block_begin)) % n_frames
