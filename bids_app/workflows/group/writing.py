"""Group maps and tables on disk: GIFTI per hemisphere or one CIFTI, TSVs, sidecars."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from bids_app.io.atomic import write_text
from bids_app.io.derivatives import CIFTI_EXT, map_path, sidecar_path, write_json, write_map
from bids_app.io.surface_files import HEMI_STRUCTURE
from bids_app.workflows.group.selection import GroupKey


def _cifti_axis(masks: Mapping[str, np.ndarray]) -> nib.cifti2.BrainModelAxis:
    axes = [
        nib.cifti2.BrainModelAxis.from_mask(masks[h], name=HEMI_STRUCTURE[h]) for h in sorted(masks)
    ]
    axis = axes[0]
    for extra in axes[1:]:
        axis = axis + extra
    return axis


def write_group_maps(
    output_dir: Path,
    key: GroupKey,
    param: str,
    maps: Mapping[str, Mapping[str, np.ndarray]],
    sidecars: Mapping[str, Mapping[str, Any]],
    masks: Mapping[str, np.ndarray],
    desc: str | None = None,
) -> list[Path]:
    """Write ``stat → hemi → values`` maps of one parameter (GIFTI per hemisphere, or one
    CIFTI over ``masks``) with their sidecars."""
    ents = {**key.entities, **({"desc": desc} if desc else {})}
    written = []
    for stat, per_hemi in maps.items():
        if key.extension == CIFTI_EXT:
            values = np.concatenate([per_hemi[h][masks[h]] for h in sorted(masks)])
            path = map_path(output_dir, ents, param, stat, CIFTI_EXT)
            write_json(sidecar_path(path), sidecars[stat])
            write_map(path, values, brain_models=_cifti_axis(masks), name=f"{param}_{stat}")
            written.append(path)
            continue
        for hemi, values in per_hemi.items():
            path = map_path(output_dir, {**ents, "hemi": hemi}, param, stat)
            write_json(sidecar_path(path), sidecars[stat])
            write_map(path, values, hemi=hemi, name=f"{param}_{stat}")
            written.append(path)
    return written


def sidecar(param: str, stat: str, units: str, text: str, record: Mapping[str, Any]) -> dict:
    """The JSON sidecar of one group map: what it is, then the group's record."""
    return {"Units": units, "Description": text, "Parameter": param, "Statistic": stat, **record}


def write_tsv(path: Path, table: pd.DataFrame) -> Path:
    return write_text(path, table.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.7g"))
