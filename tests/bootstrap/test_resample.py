import numpy as np
import pytest

from bids_app.bootstrap.resample import block_frames, stationary_indices
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
