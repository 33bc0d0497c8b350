"""Group level: per-vertex mean, SD and N of participant maps, participant table, parcels.

Reads what the participant level wrote to OUTPUT_DIR, never the inputs. Participants are
grouped by (task, space, density, model, file format); within a group each participant
contributes one map per parameter: its map combined over runs when present (maps without
a ``run`` entity), else the vertex-wise mean of its per-run maps; several sessions are
averaged the same way. Outputs go to the OUTPUT_DIR root (no ``sub-`` entity), with
``group_participants.tsv`` saying who was included and why others were not.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from bids_app import __version__
from bids_app.errors import MissingInputError, NothingSelectedError
from bids_app.io.atomic import write_text
from bids_app.io.dataset_description import (
    is_finished,
    write_bidsignore,
    write_dataset_description,
)
from bids_app.io.derivatives import (
    CIFTI_EXT,
    MapFile,
    derivative_name,
    find_maps,
    map_path,
    read_map,
    sidecar_path,
    split_hemispheres,
    write_json,
    write_map,
)
from bids_app.io.spaces import space_label
from bids_app.io.surface_files import HEMI_STRUCTURE
from bids_app.io.templates import Parcellation, templateflow_parcellations
from bids_app.models import DERIVED_UNITS
from bids_app.report.group import write_group_report
from bids_app.report.surfaces import MeshLookup

LOGGER = logging.getLogger(__name__)

GROUP_STATS = ("mean", "sd", "n")
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
        "participant level as complete (yes/no)."
    },
}
_PARAM_MODEL = {param: model for model, units in DERIVED_UNITS.items() for param in units}



@dataclass(frozen=True)
class GroupKey:
    """What makes participant maps comparable vertex by vertex."""

    task: str | None
    space: str
    den: str | None
    model: str
    extension: str

    @property
    def entities(self) -> dict[str, str]:
        ents = {"task": self.task, "space": self.space, "den": self.den}
        return {k: v for k, v in ents.items() if v}

    @property
    def label(self) -> str:
        parts = [f"{k}-{v}" for k, v in self.entities.items()]
        return " ".join([*parts, f"model-{self.model}"])


@dataclass
class SubjectMaps:
    """One participant's contribution: parameter → hemisphere → full-length estimate."""

    subject: str
    values: dict[str, dict[str, np.ndarray]]
    how: str
    sources: list[str]


@dataclass
class GroupResult:
    """Aggregates of one group and the participant rows behind them."""

    key: GroupKey
    included: list[SubjectMaps] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)


# --------------------------------------------------------------------------- selection


def group_key(item: MapFile) -> GroupKey:
    ents = item.entities
    return GroupKey(
        task=ents.get("task"),
        space=ents.get("space", ""),
        den=ents.get("den"),
        model=_PARAM_MODEL[ents["param"]],
        extension=CIFTI_EXT if item.path.name.endswith(CIFTI_EXT) else ".func.gii",
    )


def _select(
    output_dir: Path, participants: Sequence[str], space: str | None
) -> dict[GroupKey, dict[str, list[MapFile]]]:
    """Estimate maps by group and subject, filtered by participant and space."""
    files = [
        f
        for f in find_maps(output_dir)
        if f.entities["stat"] == "estimate" and f.entities["param"] in _PARAM_MODEL
    ]
    if not files:
        raise MissingInputError(
            f"no participant maps under {output_dir}; run the participant level first"
        )
    if participants:
        files = [f for f in files if f.entities["sub"] in set(participants)]
    if space:
        files = [f for f in files if space in (f.entities.get("space"), space_label(f.entities))]
    if not files:
        raise NothingSelectedError(
            f"no participant maps in {output_dir} match participant_label "
            f"{list(participants) or 'any'} and --space {space or 'any'}; check the labels"
        )
    groups: dict[GroupKey, dict[str, list[MapFile]]] = defaultdict(lambda: defaultdict(list))
    for item in files:
        groups[group_key(item)][item.entities["sub"]].append(item)
    return groups


# --------------------------------------------------------------------------- per subject


def _nanmean(stack: np.ndarray) -> np.ndarray:
    """Mean over axis 0 of finite values; NaN where none (no warning)."""
    finite = np.isfinite(stack)
    count = finite.sum(axis=0)
    total = np.where(finite, stack, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _read_fit(files: list[MapFile]) -> dict[str, dict[str, np.ndarray]]:
    """Estimate per parameter and hemisphere (full length) of one fit."""
    values: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for item in files:
        loaded = read_map(item.path)
        if loaded.brain_models is not None:
            per_hemi = split_hemispheres(loaded.values, loaded.brain_models)
        else:
            per_hemi = {item.entities["hemi"]: loaded.values}
        values[item.entities["param"]].update(per_hemi)
    return dict(values)


def subject_maps(subject: str, files: list[MapFile], output_dir: Path) -> SubjectMaps:
    """Combine one participant's fits, preferring the most combined maps.

    A fit whose entities include another fit's (``run-1`` beside the run-less map
    combined over runs; per-session maps beside a map over sessions) is left out; the
    remaining fits are averaged vertex-wise (several runs without a combined map).
    """
    fits: dict[tuple, list[MapFile]] = defaultdict(list)
    for item in files:
        fits[item.fit_key].append(item)
    chosen = {k: v for k, v in fits.items() if not any(set(o) < set(k) for o in fits)}
    per_run = all("run" in dict(k) for k in chosen)
    if len(chosen) == 1:
        only = "per-run map" if per_run else "participant map"
        how = "combined map" if len(fits) > 1 else only
    else:
        how = f"mean of {len(chosen)} {'per-run ' if per_run else ''}maps"
        how += " (no combined map)" if per_run else ""
    loaded = [_read_fit(group) for group in chosen.values()]
    values: dict[str, dict[str, np.ndarray]] = {}
    for param in loaded[0]:
        values[param] = {}
        for hemi in loaded[0][param]:
            arrays = [fit.get(param, {}).get(hemi) for fit in loaded]
            if any(a is None for a in arrays) or len({a.shape for a in arrays}) != 1:
                continue  # reported below as incomplete
            values[param][hemi] = _nanmean(np.stack(arrays))
    root = output_dir.resolve()
    sources = sorted(
        f"bids::{item.path.resolve().relative_to(root).as_posix()}"
        for group in chosen.values()
        for item in group
    )
    return SubjectMaps(subject, values, how, sources)


def _medians(maps: SubjectMaps) -> dict[str, float]:
    """Median over both hemispheres of each parameter (for spotting outlying participants)."""
    out = {}
    for param, per_hemi in maps.values.items():
        values = np.concatenate(list(per_hemi.values()))
        finite = values[np.isfinite(values)]
        out[f"{param}_median"] = float(np.median(finite)) if finite.size else np.nan
    return out


def _column_descriptions(columns: Sequence[str]) -> dict[str, Any]:
    """Sidecar of group_participants.tsv for the columns it has."""
    out = {}
    for column in columns:
        param = column.removesuffix("_median")
        if column in PARTICIPANTS_COLUMNS:
            out[column] = PARTICIPANTS_COLUMNS[column]
        elif param in _PARAM_MODEL:
            out[column] = {
                "Description": f"Median over vertices of the participant's {param} estimates.",
                "Units": DERIVED_UNITS[_PARAM_MODEL[param]][param],
            }
    return out


def _exclusion(maps: SubjectMaps, params: list[str], lengths: Mapping[str, int]) -> str | None:
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


# --------------------------------------------------------------------------- statistics


def vertex_stats(stack: np.ndarray) -> dict[str, np.ndarray]:
    """Per-vertex mean, SD (ddof 1; NaN below 2 participants) and N over axis 0."""
    finite = np.isfinite(stack)
    n = finite.sum(axis=0)
    mean = _nanmean(stack)
    centred = np.where(finite, stack - mean, 0.0)
    sd = np.where(n >= 2, np.sqrt((centred**2).sum(axis=0) / np.maximum(n - 1, 1)), np.nan)
    return {"mean": mean, "sd": sd, "n": n.astype(float)}


def _cifti_axis(masks: Mapping[str, np.ndarray]) -> nib.cifti2.BrainModelAxis:
    axes = [
        nib.cifti2.BrainModelAxis.from_mask(masks[h], name=HEMI_STRUCTURE[h]) for h in sorted(masks)
    ]
    axis = axes[0]
    for extra in axes[1:]:
        axis = axis + extra
    return axis


_STAT_TEXT = {
    "mean": "Across-participant mean of the participant MAP estimates of {param}.",
    "sd": "Across-participant standard deviation (ddof 1) of the MAP estimates of {param}.",
    "n": "Number of participants with an estimate of {param} at the vertex.",
}


def _write_stats(
    output_dir: Path,
    key: GroupKey,
    param: str,
    stats: Mapping[str, Mapping[str, np.ndarray]],
    record: Mapping[str, Any],
) -> list[Path]:
    """Write mean/SD/N maps of one parameter (per hemisphere, or one CIFTI) + sidecars."""
    written = []
    for stat in GROUP_STATS:
        sidecar = {
            "Units": "participants" if stat == "n" else DERIVED_UNITS[key.model][param],
            "Description": _STAT_TEXT[stat].format(param=param),
            "Parameter": param,
            "Statistic": stat,
            **record,
        }
        if key.extension == CIFTI_EXT:
            masks = {h: stats["n"][h] > 0 for h in stats["n"]}
            values = np.concatenate([stats[stat][h][masks[h]] for h in sorted(masks)])
            path = map_path(output_dir, key.entities, param, stat, CIFTI_EXT)
            write_json(sidecar_path(path), sidecar)
            write_map(path, values, brain_models=_cifti_axis(masks), name=f"{param}_{stat}")
            written.append(path)
            continue
        for hemi, values in stats[stat].items():
            ents = {**key.entities, "hemi": hemi}
            path = map_path(output_dir, ents, param, stat)
            write_json(sidecar_path(path), sidecar)
            write_map(path, values, hemi=hemi, name=f"{param}_{stat}")
            written.append(path)
    return written


# --------------------------------------------------------------------------- parcels


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


def _write_tsv(path: Path, table: pd.DataFrame) -> Path:
    return write_text(path, table.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.7g"))


# --------------------------------------------------------------------------- group


def aggregate_group(
    output_dir: Path,
    key: GroupKey,
    subjects: Mapping[str, list[MapFile]],
    parcellations: Mapping[str, Parcellation] | None = None,
) -> GroupResult:
    """Mean/SD/N maps, participant rows and parcel tables for one group."""
    result = GroupResult(key)
    params = list(DERIVED_UNITS[key.model])
    candidates = [subject_maps(sub, files, output_dir) for sub, files in sorted(subjects.items())]
    # reference vertex count per hemisphere: the most common one among participants
    lengths: dict[str, int] = {}
    for hemi in ("L", "R"):
        counts = Counter(
            m.values[p][hemi].shape[0] for m in candidates for p in m.values if hemi in m.values[p]
        )
        if counts:
            lengths[hemi] = counts.most_common(1)[0][0]
    native = key.space == "fsnative"
    for maps in candidates:
        reason = (
            "fsnative maps are not in a common space; use a template space for the group"
            if native
            else _exclusion(maps, params, lengths)
        )
        result.rows.append(
            {
                "participant_id": f"sub-{maps.subject}",
                **{k: getattr(key, k) or "n/a" for k in ("task", "space", "den", "model")},
                "status": "excluded" if reason else "included",
                "reason": reason or maps.how,
                "finished": "yes" if is_finished(output_dir, maps.subject) else "no",
                **({} if reason else _medians(maps)),
            }
        )
        if reason is None:
            result.included.append(maps)
    if not result.included:
        LOGGER.warning("group %s: no participant could be included", key.label)
        return result
    parcellations = (
        templateflow_parcellations(key.space, sorted(lengths))
        if parcellations is None
        else parcellations
    )
    tables = []
    for atlas, parcellation in sorted(parcellations.items()):
        if {h: len(parcellation[h][0]) for h in parcellation} != lengths:
            LOGGER.warning("parcellation %s does not match the %s mesh; skipped", atlas, key.space)
            continue
        ents = {**key.entities, "seg": atlas}
        path = Path(output_dir) / derivative_name(ents, "boldparcels", ".tsv")
        tables.append(path.name)
        result.outputs.append(_write_tsv(path, parcel_table(result.included, params, parcellation)))
    if not tables:
        LOGGER.info("no parcellation available for space %s: per-parcel tables skipped", key.space)
    record = {
        "Model": key.model,
        "Participants": [f"sub-{m.subject}" for m in result.included],
        "NParticipants": len(result.included),
        "ParcelTables": tables,
        "ParcelTablesNote": None
        if tables
        else (
            f"No parcellation for space {key.space} was available through TemplateFlow "
            "(offline or none published); per-parcel tables were skipped."
        ),
        "Sources": [s for m in result.included for s in m.sources],
        "SoftwareVersion": __version__,
    }
    for param in params:
        stats: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
        for hemi in lengths:
            stack = np.stack([m.values[param][hemi] for m in result.included])
            for stat, values in vertex_stats(stack).items():
                stats[stat][hemi] = values
        result.outputs += _write_stats(output_dir, key, param, stats, record)
    return result


def group_level(
    output_dir: Path | str,
    participants: Sequence[str] = (),
    space: str | None = None,
    report: bool = True,
    parcellations: Mapping[str, Parcellation] | None = None,
    meshes: MeshLookup | None = None,
) -> list[GroupResult]:
    """Run the group level on OUTPUT_DIR; returns one result per group of comparable maps.

    ``participants`` (labels without ``sub-``) and ``space`` (``fsaverage5``,
    ``fsLR_den-32k`` …) restrict what is aggregated; ``parcellations`` overrides the
    TemplateFlow lookup (``{atlas: {hemi: (labels, names)}}``); ``meshes(space, hemi)``
    gives the report's surfaces (default: template midthickness).
    """
    output_dir = Path(output_dir)
    groups = _select(output_dir, participants, space)
    write_dataset_description(output_dir)
    write_bidsignore(output_dir)
    results = [
        aggregate_group(output_dir, key, subjects, parcellations)
        for key, subjects in sorted(groups.items(), key=lambda kv: kv[0].label)
    ]
    rows = [row for result in results for row in result.rows]
    seen = {row["participant_id"] for row in rows}
    for label in participants:
        if f"sub-{label}" not in seen:
            rows.append(
                {
                    "participant_id": f"sub-{label}",
                    "status": "excluded",
                    "reason": "no participant outputs match the selection",
                }
            )
    table = pd.DataFrame(rows)
    _write_tsv(output_dir / PARTICIPANTS_TSV, table)
    write_json(sidecar_path(output_dir / PARTICIPANTS_TSV), _column_descriptions(table.columns))
    for result in results:
        LOGGER.info(
            "group %s: %d included, %d excluded",
            result.key.label,
            len(result.included),
            len(result.rows) - len(result.included),
        )
    if report:
        write_group_report(output_dir, meshes)
    return results


def run_group(config: Any) -> list[GroupResult]:
    """CLI entry: the group level for a :class:`bids_app.config.Config`."""
    return group_level(
        config.output_dir,
        participants=config.participant_labels,
        space=config.space,
        report=config.report,
    )
