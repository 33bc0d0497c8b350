"""Per-vertex mean, SD and N with absent values."""

from __future__ import annotations

import numpy as np

from bids_app.group.descriptive import vertex_stats


def test_vertex_stats_handles_missing_values():
    stack = np.array([[1.0, np.nan, np.nan], [3.0, 2.0, np.nan]])
    stats = vertex_stats(stack)
    np.testing.assert_array_equal(stats["n"], [2, 1, 0])
    np.testing.assert_allclose(stats["mean"], [2, 2, np.nan])
    np.testing.assert_allclose(stats["sd"], [np.sqrt(2), np.nan, np.nan])
