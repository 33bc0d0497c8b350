"""Per-parcel values of a group's maps: per-participant means for the parcel tables, and
parcel means of repeated maps for test–retest by parcel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bids_app.io.templates import Parcellation
from bids_app.workflows.group.layout import VertexLayout
from bids_app.workflows.group.participant_maps import SubjectMaps


def parcel_table(
    included: Sequence[SubjectMaps], params: Sequence[str], parcellation: Parcellation
) -> pd.DataFrame:
    """Per participant and parcel: vertices with an estimate and the mean of each parameter."""
    rows = []
    for maps in included:
        for hemi, (labels, names) in sorted(parcellation.items()):
            for label in np.unique(labels[labels > 0]):
                inside = labels == label
                row: dict[str, Any] = {
                    "participant_id": f"sub-{maps.subject}",
                    "hemi": hemi,
                    "parcel": names.get(int(label), str(label)),
                    "label": int(label),
                }
                for param in params:
                    values = maps.values[param][hemi][inside]
                    finite = values[np.isfinite(values)]
                    row[f"{param}_nvertices"] = int(finite.size)
                    row[f"{param}_mean"] = float(finite.mean()) if finite.size else np.nan
                rows.append(row)
    return pd.DataFrame(rows)


def parcel_index(
    parcellation: Parcellation, layout: VertexLayout
) -> tuple[np.ndarray, list[tuple[str, str, int]]]:
    """Parcel number per vertex on the joined axis (−1 outside) and (hemi, name, label)."""
    index = np.full(layout.total, -1)
    names: list[tuple[str, str, int]] = []
    for hemi, (labels, lookup) in sorted(parcellation.items()):
        for label in np.unique(labels[labels > 0]):
            index[layout.slices[hemi]][labels == label] = len(names)
            names.append((hemi, lookup.get(int(label), str(label)), int(label)))
    return index, names


def parcel_means(values: np.ndarray, index: np.ndarray, n_parcels: int) -> np.ndarray:
    """Mean of finite values per parcel for each row of ``values`` (rows, vertices)."""
    out = np.full((values.shape[0], n_parcels), np.nan)
    inside = index >= 0
    for row, data in enumerate(values):
        ok = inside & np.isfinite(data)
        total = np.bincount(index[ok], weights=data[ok], minlength=n_parcels)
        count = np.bincount(index[ok], minlength=n_parcels)
        out[row] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out
