"""Marked Poisson events on the TR grid."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.simulate.neural import poisson_events


@pytest.mark.parametrize("tr", [0.4, 0.72, 3.0])
def test_rate_is_events_per_second_whatever_the_tr(tr):
    n, duration_s = 400, 2000.0
    rate = np.linspace(0.01, 0.2, n)
    n_bins = int(duration_s / tr)
    events = poisson_events(rate, np.ones(n), np.ones(n), tr, n_bins, np.random.default_rng(1))
    per_second = events.sum(axis=1) / (n_bins * tr)
    expected_sd = np.sqrt(rate / (n_bins * tr))
    assert np.all(np.abs(per_second - rate) < 5 * expected_sd)


def test_amplitudes_are_bounded_and_add_within_a_bin():
    n = 200
    lo, hi = np.full(n, 0.7), np.full(n, 0.9)
    sparse = poisson_events(np.full(n, 0.01), lo, hi, 1.0, 500, np.random.default_rng(2))
    values = sparse[sparse > 0]
    assert values.min() >= 0.7
    busy = poisson_events(np.full(n, 3.0), lo, hi, 1.0, 50, np.random.default_rng(3))
    assert busy.max() > 0.9  # several events in one bin sum up


def test_events_are_reproducible_per_seed():
    args = (np.full(10, 0.1), np.zeros(10), np.ones(10), 0.8, 100)
    a = poisson_events(*args, np.random.default_rng(5))
    b = poisson_events(*args, np.random.default_rng(5))
    assert np.array_equal(a, b)
