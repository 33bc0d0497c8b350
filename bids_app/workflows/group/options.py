"""What the group level is asked to do beyond the participant maps it finds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class GroupOptions:
    """The group model and who enters it (defaults: intercept-only random effects), and
    where the vertex-wise work runs."""

    formula: str | None = None
    contrast: str | None = None
    include_flagged: bool = False
    participants_table: pd.DataFrame | None = None
    participants_source: str = "participants.tsv"
    n_modes: int = 5
    work_dir: Path | None = None
    block_values: int = 500_000
    """participants × vertices read back per block (4 MB per float64 array)."""
    dask_scheduler: str | None = None
    """Address of a Dask scheduler whose workers compute the vertex blocks (and see
    ``work_dir``); None computes them in this process."""
