"""Small readers the group level needs besides the maps: sidecars and participants.tsv."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from bids_app.errors import InputValidationError
from bids_app.io.derivatives import sidecar_path


def read_sidecar(map_file: Path | str) -> dict[str, Any]:
    """The JSON sidecar of a map, ``{}`` when it has none."""
    path = sidecar_path(map_file)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputValidationError(
            f"sidecar {path} is not valid JSON ({err.msg}); re-run that participant"
        ) from err


def read_participants_table(path: Path | str) -> pd.DataFrame | None:
    """BIDS ``participants.tsv`` (``n/a`` = missing), or None when the file is absent."""
    path = Path(path)
    if not path.is_file():
        return None
    table = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=True)
    if "participant_id" not in table.columns:
        raise InputValidationError(f"{path} has no participant_id column; add it (BIDS)")
    return table
