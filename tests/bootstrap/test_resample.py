import numpy as np
import pytest

from bids_app.bootstrap.resample import (
    block_frames,
    crossfade_resample,
    fade_frames,
    stationary_indices,
)
from bids_app.errors import UsageError


def test_block_length_is_given_in_seconds():
    assert block_frames(72.0, 0.72) == pytest.approx(100.0)
    assert block_frames(72.0, 2.0) == pytest.approx(36.0)
    assert block_frames(0.5, 2.0) == 1.0  # never below one frame
    with pytest.raises(UsageError):
        block_frames(0.0, 2.0)


def test_indices_are_seeded_and_in_range():
    a = stationary_indices(300, 20.0, 5, 7)
    assert a.shape == (5, 300) and a.dtype.kind == "i"
    assert a.min() >= 0 and a.max() < 300
    np.testing.assert_array_equal(a, stationary_indices(300, 20.0, 5, 7))
    assert not np.array_equal(a, stationary_indices(300, 20.0, 5, 8))


def test_blocks_have_the_requested_mean_length():
    idx = stationary_indices(1000, 25.0, 200, 0)
    # A block continues (next frame, wrapping) with probability 1 - 1/L.
    continues = (np.diff(idx, axis=1) % 1000) == 1
    assert continues.mean() == pytest.approx(1 - 1 / 25.0, abs=0.005)


def test_every_frame_is_equally_likely():
    idx = stationary_indices(50, 10.0, 4000, 1)
    counts = np.bincount(idx.ravel(), minlength=50) / idx.size
    np.testing.assert_allclose(counts, 1 / 50, rtol=0.05)


def smooth_series(n_vertices: int, n_frames: int, seed: int) -> np.ndarray:
    """Strongly autocorrelated AR(1) rows (phi = 0.95), unit variance."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n_vertices, n_frames))
    y = np.empty_like(noise)
    y[:, 0] = noise[:, 0] / np.sqrt(1 - 0.95**2)
    for t in range(1, n_frames):
        y[:, t] = 0.95 * y[:, t - 1] + noise[:, t]
    return y * np.sqrt(1 - 0.95**2)


def test_no_fade_or_no_join_is_plain_indexing():
    y = smooth_series(3, 80, 0)
    idx = stationary_indices(80, 8.0, 1, 2)[0]
    np.testing.assert_array_equal(crossfade_resample(y, idx, 0), y[:, idx])
    identity = np.arange(80)
    np.testing.assert_array_equal(crossfade_resample(y, identity, 4), y)
    assert fade_frames(6.0, 2.0) == 3 and fade_frames(6.0, 0.72) == 8
    assert fade_frames(0.0, 2.0) == 0
    with pytest.raises(UsageError):
        fade_frames(-1.0, 2.0)


def test_cross_fade_removes_the_step_at_joins_and_keeps_the_variance():
    y = smooth_series(400, 400, 1)
    idx = stationary_indices(400, 20.0, 1, 3)[0]
    steps = np.flatnonzero(idx[1:] != idx[:-1] + 1) + 1
    plain, faded = y[:, idx], crossfade_resample(y, idx, 4)
    original = np.mean(np.diff(y, axis=1) ** 2)  # mean squared step, 2(1 - 0.95) = 0.1
    at_joins = lambda x: np.mean((x[:, steps] - x[:, steps - 1]) ** 2)  # noqa: E731
    assert at_joins(plain) > 10 * original
    assert at_joins(faded) < 3 * original
    assert np.var(faded) == pytest.approx(np.var(y), rel=0.05)
