"""Identifiability reads "no" when the map was not fitted or its intervals say nothing."""

from __future__ import annotations

import numpy as np

from bids_app.bootstrap.natural import MapInterval
from bids_app.inference.hemisphere import flag_degenerate_intervals, identifiability
from bids_app.models import resolve_model
from bids_app.prior import fem_matrices, icosphere

MODEL = resolve_model("1p")
MESH = icosphere(2, 50.0)
FEM = fem_matrices(*MESH)
V = len(MESH[0])


def sharp(theta_t: np.ndarray):
    """A log-likelihood with curvature 50 per vertex: strongly informative data."""
    return 0.0, -50.0 * theta_t, -50.0 * np.ones((len(theta_t), 1, 1))


def test_informative_fitted_map_is_identified():
    record = identifiability(sharp, np.zeros((V, 1)), MODEL, 0.05, FEM, iterations=5)
    assert all(entry["Identified"] and "Reason" not in entry for entry in record.values())


def test_zero_newton_iterations_is_not_identified():
    """However sharp the likelihood looks at the start, an unfitted map is not an estimate."""
    record = identifiability(sharp, np.zeros((V, 1)), MODEL, 0.05, FEM, iterations=0)
    assert not any(entry["Identified"] for entry in record.values())
    assert all("0 iterations" in entry["Reason"] for entry in record.values())


def test_zero_width_intervals_are_not_identified():
    record = identifiability(sharp, np.zeros((V, 1)), MODEL, 0.05, FEM, iterations=5)
    estimate = np.full(V, 1.5)
    flag_degenerate_intervals(record, {
        "theta": MapInterval(estimate, 0 * estimate, estimate, estimate + 1e-9),
        "timetopeak": MapInterval(5 / estimate, 0.1 + 0 * estimate, 3 + 0 * estimate,
                                  4 + 0 * estimate)})
    assert record["theta"]["Identified"] is False and "width" in record["theta"]["Reason"]
    assert record["timetopeak"]["Identified"] is True
