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


def crossfade_resample(y: np.ndarray, idx: np.ndarray, fade_frames: int) -> np.ndarray:
    """Apply one resample's frame indices to (V, T) series, cross-fading every block join.

    A plain join puts two unrelated frames side by side: a step that adds power at high
    frequencies, which the summary network reads as a faster HRF. Here the block that
    ends keeps running for ``fade_frames`` frames past the join (reflected at the end of
    the run) while the new block fades in, with equal-power weights cos/sin(π/2·λ),
    λ = (k + 1)/(fade_frames + 1) at the k-th frame after the join. Two unrelated blocks
    mixed this way keep the series' variance, and the step becomes a smooth transition,
    so the resample keeps the original's spectrum (checked in the benchmark). The
    wrap from the last frame to the first counts as a join too.

    Parameters
    ----------
    y : array (V, T)
        Series to resample.
    idx : array (T,), int
        Frame indices of the resample, as from :func:`stationary_indices`.
    fade_frames : int
        Frames over which each join is cross-faded; 0 is plain indexing.

    Returns
    -------
    array (V, T), dtype of ``y``
    """
    idx = np.asarray(idx)
    out = np.asarray(y)[:, idx]
    n_frames = y.shape[1]
    if fade_frames < 1 or n_frames < 2:
        return out
    t = np.arange(idx.size)
    join = np.zeros(idx.size, dtype=bool)
    join[1:] = idx[1:] != idx[:-1] + 1
    last_join = np.maximum.accumulate(np.where(join, t, -1))
    k = t - last_join
    fading = (last_join > 0) & (k < fade_frames)
    if not fading.any():
        return out
    pos, k = t[fading], k[fading]
    # The ending block continues; past the last frame it runs back (reflection).
    ending = idx[last_join[fading] - 1] + 1 + k
    ending = np.where(ending > n_frames - 1, 2 * (n_frames - 1) - ending, ending)
    ending = np.clip(ending, 0, n_frames - 1)
    lam = (k + 1.0) / (fade_frames + 1.0)
    w_end = np.cos(0.5 * np.pi * lam).astype(out.dtype)
    w_new = np.sin(0.5 * np.pi * lam).astype(out.dtype)
    out[:, pos] = w_end * np.asarray(y)[:, ending] + w_new * out[:, pos]
    return out


def fade_frames(fade_s: float, tr: float) -> int:
    """Cross-fade length in whole frames for ``fade_s`` seconds (0 disables it)."""
    if not (np.isfinite(fade_s) and fade_s >= 0):
        raise UsageError(f"bootstrap cross-fade must be >= 0 seconds, got {fade_s}")
    return round(float(fade_s) / float(tr))
