"""Who enters a group and why the others do not: flags, exclusion reasons and the
``group_participants.tsv`` that records both.

Participants whose sidecars record a failed ``QualityControl`` or a weakly identified
parameter are left out unless ``--include-flagged``; so are those without a full map on
the group's mesh or without a finished record vouching for their maps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_app.group.latent import analysed_params
from bids_app.io.derivatives import MapFile, sidecar_path, write_json
from bids_app.io.group_inputs import read_sidecar
from bids_app.io.surface_files import HEMI_STRUCTURE
from bids_app.models import DERIVED_UNITS
from bids_app.workflows.group.participant_maps import SubjectMaps
from bids_app.workflows.group.selection import PARAM_MODEL, GroupKey
from bids_app.workflows.group.writing import write_tsv

PARTICIPANTS_TSV = "group_participants.tsv"
PARTICIPANTS_COLUMNS = {
    "participant_id": {"Description": "Participant label (sub-<label>)."},
    "task": {"Description": "Task of the maps considered."},
    "space": {"Description": "Surface space of the maps."},
    "den": {"Description": "Surface density of the maps (n/a when not in the names)."},
    "model": {"Description": "HRF model: 1p (double-gamma rate) or 2p (canonical + derivative)."},
    "status": {
        "Description": "Whether the participant entered the group maps.",
        "Levels": {"included": "in the mean/SD/N maps", "excluded": "left out; see reason"},
    },
    "reason": {"Description": "Which maps were used (included) or why none could be (excluded)."},
    "finished": {
        "Description": "Whether logs/sub-<label>_finished.json records the "
        "participant level as complete with exactly these maps (sha256); participants "
        "with 'no' are excluded (yes/no)."
    },
    "identifiability": {
        "Description": "Lowest regional information fraction of the participant's maps "
        "(sidecar Identifiability; below 0.5 is flagged as weakly identified).",
        "Units": "arbitrary",
    },
}


def _hemi_records(record: Any) -> list[tuple[str, Mapping[str, Any]]]:
    """A sidecar record as (where, record) pairs: one per hemisphere for CIFTI sidecars."""
    if not isinstance(record, Mapping) or not record:
        return []
    if set(record) <= set(HEMI_STRUCTURE) and all(isinstance(v, Mapping) for v in record.values()):
        return [(f" in hemi-{h}", v) for h, v in sorted(record.items())]
    return [("", record)]


def participant_flags(
    sidecars: Sequence[tuple[str, Mapping[str, Any]]],
) -> tuple[list[str], float]:
    """Why a participant is flagged, and its lowest regional information fraction.

    ``sidecars`` are (parameter, sidecar) of the maps the participant contributes; a
    participant is flagged when a ``QualityControl`` record has ``Pass`` false or an
    ``Identifiability`` record has ``Identified`` false (per hemisphere for CIFTI).
    """
    reasons: list[str] = []
    fractions: list[float] = []
    for param, meta in sidecars:
        for where, qc in _hemi_records(meta.get("QualityControl")):
            if qc.get("Pass") is False:
                why = "; ".join(str(r) for r in qc.get("Reasons") or []) or "no reason recorded"
                reasons.append(f"failed quality control{where} ({why})")
        for where, ident in _hemi_records(meta.get("Identifiability")):
            fraction = ident.get("RegionalInformationFraction")
            known = isinstance(fraction, (int, float))
            if known:
                fractions.append(float(fraction))
            if ident.get("Identified") is False:
                detail = f" (regional information fraction {fraction:.2f})" if known else ""
                reasons.append(f"{param} weakly identified{where}{detail}")
    return list(dict.fromkeys(reasons)), min(fractions, default=np.nan)


def exclusion_reason(maps: SubjectMaps, params: list[str], lengths: Mapping[str, int]
                     ) -> str | None:
    """Why a participant cannot enter the group average, or None."""
    for param in params:
        for hemi, n in lengths.items():
            arr = maps.values.get(param, {}).get(hemi)
            if arr is None:
                return f"no {param} map for hemi-{hemi}"
            if arr.shape[0] != n:
                return f"{arr.shape[0]} vertices in hemi-{hemi}, the group has {n}"
    if not any(np.isfinite(a).any() for per in maps.values.values() for a in per.values()):
        return "no vertex was estimated (all NaN)"
    return None


def medians(maps: SubjectMaps) -> dict[str, float]:
    """Median over both hemispheres of each parameter (for spotting outlying participants)."""
    out = {}
    for param, per_hemi in maps.values.items():
        values = np.concatenate(list(per_hemi.values()))
        finite = values[np.isfinite(values)]
        out[f"{param}_median"] = float(np.median(finite)) if finite.size else np.nan
    return out


def participant_row(key: GroupKey, maps: SubjectMaps, chosen: Sequence[list[MapFile]],
                    unvouched: str | None, lengths: Mapping[str, int],
                    include_flagged: bool) -> dict[str, Any]:
    """The participant's row of ``group_participants.tsv``: included (with the maps used
    and any flags), or excluded and why. ``unvouched`` says why its finished record does
    not vouch for the maps (None when it does)."""
    analysed = analysed_params(key.model)
    flags, fraction = participant_flags(
        [
            (item.entities["param"], read_sidecar(item.path))
            for fit in chosen
            for item in fit
            if item.entities["stat"] == "estimate" and item.entities["param"] in analysed
        ]
    )
    reason = unvouched or exclusion_reason(maps, list(DERIVED_UNITS[key.model]), lengths)
    if reason is None and flags and not include_flagged:
        reason = "; ".join(flags) + " (--include-flagged keeps it)"
    return {
        "participant_id": f"sub-{maps.subject}",
        **{k: getattr(key, k) or "n/a" for k in ("task", "space", "den", "model")},
        "status": "excluded" if reason else "included",
        "reason": reason or maps.how + (f"; flagged: {'; '.join(flags)}" if flags else ""),
        "finished": "no" if unvouched else "yes",
        "identifiability": fraction,
        **({} if reason else medians(maps)),
    }


def _column_descriptions(columns: Sequence[str]) -> dict[str, Any]:
    """Sidecar of group_participants.tsv for the columns it has."""
    out = {}
    for column in columns:
        param = column.removesuffix("_median")
        if column in PARTICIPANTS_COLUMNS:
            out[column] = PARTICIPANTS_COLUMNS[column]
        elif param in PARAM_MODEL:
            out[column] = {
                "Description": f"Median over vertices of the participant's {param} estimates.",
                "Units": DERIVED_UNITS[PARAM_MODEL[param]][param],
            }
    return out


def write_participants_table(output_dir: Path, rows: Sequence[Mapping[str, Any]],
                             requested: Sequence[str]) -> Path:
    """``group_participants.tsv`` (+ its column sidecar): every row, and a row for each
    requested label that matched no participant outputs."""
    rows = list(rows)
    seen = {row["participant_id"] for row in rows}
    for label in requested:
        if f"sub-{label}" not in seen:
            rows.append(
                {
                    "participant_id": f"sub-{label}",
                    "status": "excluded",
                    "reason": "no participant outputs match the selection",
                }
            )
    table = pd.DataFrame(rows)
    path = write_tsv(output_dir / PARTICIPANTS_TSV, table)
    write_json(sidecar_path(path), _column_descriptions(table.columns))
    return path
