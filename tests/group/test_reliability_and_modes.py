"""Test–retest ICC from streamed participants, and mass-weighted population modes."""

from __future__ import annotations

import numpy as np

from bids_app.group.modes import population_modes
from bids_app.group.reliability import ReliabilityAccumulator


def _icc31(table):
    """Textbook ICC(3,1) of an n × k table (Shrout & Fleiss)."""
    n, k = table.shape
    grand = table.mean()
    ss_rows = k * ((table.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((table.mean(axis=0) - grand) ** 2).sum()
    ss_error = ((table - grand) ** 2).sum() - ss_rows - ss_cols
    ms_r, ms_e = ss_rows / (n - 1), ss_error / ((n - 1) * (k - 1))
    return (ms_r - ms_e) / (ms_r + (k - 1) * ms_e)


def test_streamed_icc_matches_the_textbook_formula():
    rng = np.random.default_rng(0)
    session_shift = np.array([0, 0.5, 1])[None, :, None]
    data = rng.normal(size=(12, 3, 4)) + rng.normal(size=(12, 1, 4)) + session_shift
    data[2, 1, 3] = np.nan  # participant 2 leaves vertex 3
    acc = ReliabilityAccumulator(3, 4)
    for participant in data:
        acc.add(participant, np.full((3, 4), 0.1))
    out = acc.result()
    for j in range(3):
        assert abs(out["icc"][j] - _icc31(data[:, :, j])) < 1e-12
    keep = np.isfinite(data[:, :, 3]).all(axis=1)
    assert abs(out["icc"][3] - _icc31(data[keep, :, 3])) < 1e-12
    np.testing.assert_array_equal(out["n"], [12, 12, 12, 11])
    np.testing.assert_allclose(out["meanse"], 0.1)


def test_modes_recover_a_planted_pattern_with_mass_weights():
    rng = np.random.default_rng(1)
    n, v = 60, 200
    pattern = np.sin(np.linspace(0, 3 * np.pi, v))
    mass = rng.uniform(0.5, 2.0, v)
    scores = rng.normal(0, 1.0, n)
    maps = 1.0 + scores[:, None] * pattern + rng.normal(0, 0.05, (n, v))
    maps[:, 0] = np.nan  # a vertex nobody has
    modes = population_modes(lambda: iter([maps[:30], maps[30:]]), mass, 2)
    assert np.isnan(modes.modes[:, 0]).all()
    first = modes.modes[0, 1:]
    weighted = np.average(first**2, weights=mass[1:])
    assert abs(weighted - 1.0) < 1e-9  # unit mean square over the surface
    assert abs(np.corrcoef(first, pattern[1:])[0, 1]) > 0.99
    assert modes.explained_ratio[0] > 0.9
    assert abs(abs(np.corrcoef(modes.scores[:, 0], scores)[0, 1]) - 1) < 1e-3
