"""The simulated subject the participant-level tests run on (and copy to damage)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bids_app.prior import icosphere
from bids_app.simulate.dataset import DatasetSpec, simulate_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """One subject on a 642-vertex sphere (its own 'subject mesh'), TR 1 s, 200 frames."""
    mesh = icosphere(3, radius_mm=50.0)
    root = tmp_path_factory.mktemp("sim") / "fmriprep"
    return simulate_dataset(root, DatasetSpec(n_subjects=1, n_frames=200, tr=1.0, seed=3),
                            meshes={"L": mesh, "R": mesh})
