"""Group level: participant maps → mean/SD/N, random-effects, test–retest and mode maps.

Reads what the participant level wrote to OUTPUT_DIR, never the inputs. Participants are
grouped by (task, space, density, model, file format); within a group each participant
contributes one map per parameter: its map combined over runs when present (maps without
a ``run`` entity), else the vertex-wise mean of its per-run maps; several sessions are
averaged the same way. Participants whose sidecars record a failed ``QualityControl`` or
a weakly identified parameter are left out unless ``include_flagged``. One participant
is read at a time and spilled to disk (:mod:`bids_app.io.spill`); the statistics
(:mod:`bids_app.group`) then run on blocks of vertices. Outputs go to the OUTPUT_DIR
root (no ``sub-`` entity): ``stat-{mean,sd,n}`` maps; per design term ``desc-<term>``
maps of ``stat-{effect,se,z,p,q}`` (plus ``cilower``/``ciupper`` for the mean) and
``desc-re`` between-participant SD and N; ``desc-retest`` ICC maps and per-parcel tables
when sessions or runs repeat; ``desc-modes`` population modes with a ``_boldmodes.tsv``
of scores; and ``group_participants.tsv`` saying who was included and why others were not.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from bids_app import __version__
from bids_app.errors import (
    HemocouplingError,
    InputValidationError,
    MissingInputError,
    NothingSelectedError,
)
from bids_app.group.design import build_design, parse_contrast
from bids_app.group.latent import analysed_params, latent_estimate
from bids_app.group.modes import population_modes
from bids_app.group.random_effects import concatenate, moderate_tau2, random_effects
from bids_app.group.reliability import ReliabilityAccumulator
from bids_app.group.summaries import term_maps
from bids_app.io.atomic import write_text
from bids_app.io.dataset_description import (
    outputs_mismatch,
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
from bids_app.io.group_inputs import read_sidecar
from bids_app.io.spaces import space_label
from bids_app.io.spill import SpillStore
from bids_app.io.surface_files import HEMI_STRUCTURE
from bids_app.io.templates import Parcellation, templateflow_parcellations
from bids_app.models import DERIVED_UNITS
from bids_app.prior.mesh import fem_matrices
from bids_app.report.group import write_group_report
from bids_app.report.surfaces import MeshLookup

LOGGER = logging.getLogger(__name__)

GROUP_STATS = ("mean", "sd", "n")
PARTICIPANTS_TSV = "group_participants.tsv"
MODES_SUFFIX = "boldmodes"
"""Suffix of the population-mode scores table (one row per participant)."""
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
    files = [f for f in find_maps(output_dir) if f.entities["param"] in _PARAM_MODEL]
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
    native = sorted(
        {f.entities["sub"] for f in files}
        - {f.entities["sub"] for f in files if f.entities.get("space") != "fsnative"}
    )
    if native:
        raise InputValidationError(
            f"sub-{', sub-'.join(native)} in {output_dir} have only fsnative maps, which are "
            "not in a common space; rerun the participant level with --space fsaverage5 (or "
            "another template space) and pass that --space to the group level"
        )
    files = [f for f in files if f.entities.get("space") != "fsnative"]
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


def _read_fit(files: list[MapFile], stat: str = "estimate") -> dict[str, dict[str, np.ndarray]]:
    """One statistic per parameter and hemisphere (full length) of one fit."""
    values: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for item in files:
        if item.entities["stat"] != stat:
            continue
        loaded = read_map(item.path)
        if loaded.brain_models is not None:
            per_hemi = split_hemispheres(loaded.values, loaded.brain_models)
        else:
            per_hemi = {item.entities["hemi"]: loaded.values}
        values[item.entities["param"]].update(per_hemi)
    return dict(values)


def _fits(files: list[MapFile]) -> dict[tuple, list[MapFile]]:
    fits: dict[tuple, list[MapFile]] = defaultdict(list)
    for item in files:
        fits[item.fit_key].append(item)
    return fits


def _chosen(fits: Mapping[tuple, list[MapFile]]) -> dict[tuple, list[MapFile]]:
    """The most combined fits: those whose entities include no other fit's."""
    return {k: v for k, v in fits.items() if not any(set(o) < set(k) for o in fits)}


def repeat_fits(files: list[MapFile]) -> list[list[MapFile]]:
    """A participant's repeated measurements for test–retest, in name order.

    Per-session maps (``ses`` without ``run``) when there are two sessions or more, else
    per-run maps when there are two runs or more; empty when nothing repeats.
    """
    fits = _fits(files)
    sessions = sorted(k for k in fits if "ses" in dict(k) and "run" not in dict(k))
    runs = sorted(k for k in fits if "run" in dict(k))
    for keys in (sessions, runs):
        if len(keys) >= 2:
            return [fits[k] for k in keys]
    return []


def subject_maps(subject: str, files: list[MapFile], output_dir: Path) -> SubjectMaps:
    """Combine one participant's fits, preferring the most combined maps.

    A fit whose entities include another fit's (``run-1`` beside the run-less map
    combined over runs; per-session maps beside a map over sessions) is left out; the
    remaining fits are averaged vertex-wise (several runs without a combined map).
    """
    fits = _fits(files)
    chosen = _chosen(fits)
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
        if item.entities["stat"] == "estimate"
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


def _write_group_maps(
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


def _write_stats(
    output_dir: Path,
    key: GroupKey,
    param: str,
    stats: Mapping[str, Mapping[str, np.ndarray]],
    record: Mapping[str, Any],
) -> list[Path]:
    """Write mean/SD/N maps of one parameter (per hemisphere, or one CIFTI) + sidecars."""
    sidecars = {
        stat: {
            "Units": "participants" if stat == "n" else DERIVED_UNITS[key.model][param],
            "Description": _STAT_TEXT[stat].format(param=param),
            "Parameter": param,
            "Statistic": stat,
            **record,
        }
        for stat in GROUP_STATS
    }
    masks = {h: stats["n"][h] > 0 for h in stats["n"]}
    maps = {stat: stats[stat] for stat in GROUP_STATS}
    return _write_group_maps(output_dir, key, param, maps, sidecars, masks)


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


# --------------------------------------------------------------------------- who is in


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


# --------------------------------------------------------------------------- group


@dataclass(frozen=True)
class GroupOptions:
    """The group model and who enters it (defaults: intercept-only random effects)."""

    formula: str | None = None
    contrast: str | None = None
    include_flagged: bool = False
    participants_table: pd.DataFrame | None = None
    participants_source: str = "participants.tsv"
    n_modes: int = 5
    work_dir: Path | None = None
    block_values: int = 500_000
    """participants × vertices read back per block (4 MB per float64 array)."""


class _Layout:
    """Both hemispheres on one vertex axis (L then R), as the statistics see them."""

    def __init__(self, lengths: Mapping[str, int]) -> None:
        self.lengths = dict(sorted(lengths.items()))
        edges = np.cumsum([0, *self.lengths.values()])
        self.slices = {
            h: slice(int(a), int(b))
            for h, a, b in zip(self.lengths, edges[:-1], edges[1:], strict=True)
        }
        self.total = int(edges[-1])

    def join(self, per_hemi: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(per_hemi[h], float) for h in self.lengths])

    def split(self, values: np.ndarray) -> dict[str, np.ndarray]:
        return {h: np.asarray(values[s], float) for h, s in self.slices.items()}

    def blocks(self, rows: int, budget: int) -> list[slice]:
        size = int(np.clip(budget // max(rows, 1), 256, max(self.total, 1)))
        return [slice(a, min(a + size, self.total)) for a in range(0, self.total, size)]


def _read_joined(files: list[MapFile], stat: str, param: str, layout: _Layout) -> np.ndarray | None:
    per_hemi = _read_fit(files, stat).get(param, {})
    if set(per_hemi) != set(layout.lengths):
        return None
    if any(per_hemi[h].shape[0] != n for h, n in layout.lengths.items()):
        return None
    return layout.join(per_hemi)


def _latent_row(
    model: str, param: str, fits: Sequence[list[MapFile]], layout: _Layout
) -> tuple[np.ndarray, np.ndarray]:
    """A participant's latent estimate and variance, averaged over its chosen fits."""
    ys, vs = [], []
    for files in fits:
        estimate = _read_joined(files, "estimate", param, layout)
        if estimate is None:
            continue
        y, v = latent_estimate(
            model,
            param,
            estimate,
            _read_joined(files, "se", param, layout),
            _read_joined(files, "cilower", param, layout),
            _read_joined(files, "ciupper", param, layout),
        )
        ys.append(y)
        vs.append(v)
    y_stack, v_stack = np.stack(ys), np.stack(vs)
    count = np.isfinite(y_stack).sum(axis=0)
    y = _nanmean(y_stack)
    complete = (np.isfinite(v_stack) | ~np.isfinite(y_stack)).all(axis=0)
    total = np.where(np.isfinite(v_stack), v_stack, 0.0).sum(axis=0)
    v = np.where(complete & (count > 0), total / np.maximum(count, 1) ** 2, np.nan)
    return y, v


@dataclass
class _Retest:
    """Test–retest accumulators of one group: per reported parameter, vertex and parcels."""

    repeats: int
    vertex: dict[str, ReliabilityAccumulator]
    parcels: dict[str, tuple[np.ndarray, list[tuple[str, str, int]], dict]]


def _parcel_index(
    parcellation: Parcellation, layout: _Layout
) -> tuple[np.ndarray, list[tuple[str, str, int]]]:
    """Parcel number per vertex on the joined axis (−1 outside) and (hemi, name, label)."""
    index = np.full(layout.total, -1)
    names: list[tuple[str, str, int]] = []
    for hemi, (labels, lookup) in sorted(parcellation.items()):
        for label in np.unique(labels[labels > 0]):
            index[layout.slices[hemi]][labels == label] = len(names)
            names.append((hemi, lookup.get(int(label), str(label)), int(label)))
    return index, names


def _parcel_means(values: np.ndarray, index: np.ndarray, n_parcels: int) -> np.ndarray:
    """Mean of finite values per parcel for each row of ``values`` (rows, vertices)."""
    out = np.full((values.shape[0], n_parcels), np.nan)
    inside = index >= 0
    for row, data in enumerate(values):
        ok = inside & np.isfinite(data)
        total = np.bincount(index[ok], weights=data[ok], minlength=n_parcels)
        count = np.bincount(index[ok], minlength=n_parcels)
        out[row] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def _add_retest(retest: _Retest, files: list[MapFile], params: Sequence[str], layout: _Layout
                ) -> bool:
    """Add one participant's first ``repeats`` repeated maps; False when it has too few."""
    fits = repeat_fits(files)[: retest.repeats]
    if len(fits) < retest.repeats:
        return False
    for param in params:
        estimates = [_read_joined(f, "estimate", param, layout) for f in fits]
        if any(e is None for e in estimates):
            return False
        ses = [_read_joined(f, "se", param, layout) for f in fits]
        est = np.stack(estimates)
        se = None if any(e is None for e in ses) else np.stack(ses)
        retest.vertex[param].add(est, se)
        for index, names, accumulators in retest.parcels.values():
            means = _parcel_means(est, index, len(names))
            se_means = None if se is None else _parcel_means(se, index, len(names))
            accumulators[param].add(means, se_means)
    return True


def _mass(space: str, layout: _Layout, meshes: MeshLookup | None) -> tuple[np.ndarray, str]:
    """Lumped FEM mass per vertex (mm²) of the space's meshes, or 1 with a note."""
    from bids_app.io.templates import template_mesh

    lookup = meshes or template_mesh
    pieces = []
    for hemi, n in layout.lengths.items():
        try:
            vertices, faces = lookup(space, hemi)
        except (HemocouplingError, OSError) as exc:
            return np.ones(layout.total), f"no {space} mesh ({exc}); vertices weighted equally"
        if len(vertices) != n:
            return np.ones(layout.total), f"no {space} mesh matches; vertices weighted equally"
        fem = fem_matrices(np.asarray(vertices, float), np.asarray(faces))
        pieces.append(fem.expand(fem.C, fill=0.0))
    return np.concatenate(pieces), "lumped FEM mass of the template midthickness (mm²)"


def _sidecar(param: str, stat: str, units: str, text: str, record: Mapping[str, Any]) -> dict:
    return {"Units": units, "Description": text, "Parameter": param, "Statistic": stat, **record}


_TERM_TEXT = {
    "effect": "Random-effects estimate of {what} for {param}",
    "se": "Standard error of the random-effects estimate of {what} for {param}",
    "z": "Normal-equivalent z of the Knapp-Hartung t test of {what} for {param} against "
    "{null}, in the latent probit scale",
    "p": "Two-sided p-value (t with participants minus design columns degrees of freedom) "
    "of {what} for {param}",
    "q": "Benjamini-Hochberg adjusted p-value (FDR over all vertices) of {what} for {param}",
    "cilower": "Lower bound of the 95% t interval (latent scale, mapped) of {what}",
    "ciupper": "Upper bound of the 95% t interval (latent scale, mapped) of {what}",
    "betweensd": "Between-participant SD of {param} (REML tau, delta method at the average "
    "participant)",
    "n": "Participants in the random-effects model with an estimate and SE of {param}",
}


def _term_units(stat: str, unit: str, column: str, mean_like: bool) -> str:
    if stat in ("z", "p", "q"):
        return "arbitrary"
    if stat == "n":
        return "participants"
    return unit if mean_like else f"{unit} per unit of {column}"


def aggregate_group(
    output_dir: Path,
    key: GroupKey,
    subjects: Mapping[str, list[MapFile]],
    parcellations: Mapping[str, Parcellation] | None = None,
    options: GroupOptions | None = None,
    meshes: MeshLookup | None = None,
) -> GroupResult:
    """Every group output of one group, reading one participant at a time.

    Participant maps are spilled to disk as they are read (estimates, latent estimates and
    variances), so memory is set by the vertex count and ``options.block_values``, not
    by the number of participants.
    """
    options = options or GroupOptions()
    result = GroupResult(key)
    params = list(DERIVED_UNITS[key.model])
    analysed = analysed_params(key.model)
    estimates = {
        sub: [f for f in files if f.entities["stat"] == "estimate"]
        for sub, files in sorted(subjects.items())
    }
    lengths = _reference_lengths(estimates)
    layout = _Layout(lengths)
    parcellations = (
        templateflow_parcellations(key.space, sorted(lengths))
        if parcellations is None
        else parcellations
    )
    usable = {
        atlas: parcellation
        for atlas, parcellation in sorted(parcellations.items())
        if {h: len(parcellation[h][0]) for h in parcellation} == lengths
    }
    for atlas in sorted(set(parcellations) - set(usable)):
        LOGGER.warning("parcellation %s does not match the %s mesh; skipped", atlas, key.space)
    counts = Counter(len(repeat_fits(files)) for files in subjects.values())
    repeats = max((k for k, c in counts.items() if k >= 2), key=lambda k: (counts[k], -k),
                  default=0)
    retest = None
    if repeats:
        retest = _Retest(
            repeats,
            {p: ReliabilityAccumulator(repeats, layout.total) for p in params},
            {},
        )
        for atlas, parcellation in usable.items():
            index, names = _parcel_index(parcellation, layout)
            accumulators = {p: ReliabilityAccumulator(repeats, len(names)) for p in params}
            retest.parcels[atlas] = (index, names, accumulators)
    parcel_rows: dict[str, list[pd.DataFrame]] = defaultdict(list)
    n_retest = 0
    identifiability: list[float] = []
    with SpillStore(len(subjects), layout.total, options.work_dir) as store:
        for sub, files in sorted(subjects.items()):
            maps = subject_maps(sub, estimates[sub], output_dir)
            # only maps a finished record vouches for (a failed re-run may leave others)
            unvouched = outputs_mismatch(output_dir, maps.subject,
                                         [s.removeprefix("bids::") for s in maps.sources])
            if unvouched:
                LOGGER.warning("sub-%s excluded from group %s: %s", maps.subject, key.label,
                               unvouched)
            chosen = list(_chosen(_fits(files)).values())
            flags, fraction = participant_flags(
                [
                    (item.entities["param"], read_sidecar(item.path))
                    for fit in chosen
                    for item in fit
                    if item.entities["stat"] == "estimate" and item.entities["param"] in analysed
                ]
            )
            reason = unvouched or _exclusion(maps, params, lengths)
            if reason is None and flags and not options.include_flagged:
                reason = "; ".join(flags) + " (--include-flagged keeps it)"
            row = {
                "participant_id": f"sub-{maps.subject}",
                **{k: getattr(key, k) or "n/a" for k in ("task", "space", "den", "model")},
                "status": "excluded" if reason else "included",
                "reason": reason or maps.how + (f"; flagged: {'; '.join(flags)}" if flags else ""),
                "finished": "no" if unvouched else "yes",
                "identifiability": fraction,
                **({} if reason else _medians(maps)),
            }
            result.rows.append(row)
            if reason is not None:
                continue
            identifiability.append(fraction)
            slot = len(result.included)
            for param in params:
                store.array(f"estimate_{param}")[slot] = layout.join(maps.values[param])
            for param in analysed:
                y, v = _latent_row(key.model, param, chosen, layout)
                store.array(f"latent_{param}")[slot] = y
                store.array(f"variance_{param}")[slot] = v
                if not np.isfinite(v).any():
                    row["reason"] += (f"; no {param} SE or interval maps (no bootstrap): not in "
                                      "the random-effects maps")
            for atlas, parcellation in usable.items():
                parcel_rows[atlas].append(parcel_table([maps], params, parcellation))
            if retest is not None and _add_retest(retest, files, params, layout):
                n_retest += 1
            maps.values = {}  # spilled: keep memory independent of the number of participants
            result.included.append(maps)
        if not result.included:
            LOGGER.warning("group %s: no participant could be included", key.label)
            return result
        tables = []
        for atlas, frames in parcel_rows.items():
            ents = {**key.entities, "seg": atlas}
            path = Path(output_dir) / derivative_name(ents, "boldparcels", ".tsv")
            tables.append(path.name)
            result.outputs.append(_write_tsv(path, pd.concat(frames, ignore_index=True)))
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
        n_in = len(result.included)
        blocks = layout.blocks(n_in, options.block_values)
        for param in params:
            stats: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
            pieces = [vertex_stats(np.asarray(store.array(f"estimate_{param}")[:n_in, b]))
                      for b in blocks]
            for stat in GROUP_STATS:
                stats[stat] = layout.split(np.concatenate([p[stat] for p in pieces]))
            result.outputs += _write_stats(output_dir, key, param, stats, record)
        result.outputs += _random_effects_outputs(
            output_dir, key, store, layout, blocks, result, options, record
        )
        result.outputs += _modes_outputs(output_dir, key, store, layout, result, options,
                                         meshes, record)
    if retest is not None and n_retest >= 2:
        result.outputs += _retest_outputs(output_dir, key, retest, n_retest, layout, record)
    return result


def _reference_lengths(estimates: Mapping[str, list[MapFile]]) -> dict[str, int]:
    """Vertex count per hemisphere: the most common among participants' first maps."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for files in estimates.values():
        seen = set()
        for item in files:
            if item.entities["param"] in seen:
                continue
            seen.add(item.entities["param"])
            fit = [f for f in files if f.fit_key == item.fit_key and f.entities["param"]
                   == item.entities["param"]]
            for hemi, values in _read_fit(fit).get(item.entities["param"], {}).items():
                counts[hemi][values.shape[0]] += 1
            break
    return {h: c.most_common(1)[0][0] for h, c in sorted(counts.items()) if c}


def _random_effects_outputs(
    output_dir: Path,
    key: GroupKey,
    store: SpillStore,
    layout: _Layout,
    blocks: list[slice],
    result: GroupResult,
    options: GroupOptions,
    record: Mapping[str, Any],
) -> list[Path]:
    """Random-effects maps per term of the design (and contrast) for each parameter."""
    labels = [m.subject for m in result.included]
    design = build_design(
        options.formula, labels, options.participants_table, options.participants_source
    )
    if not design.participants:
        raise NothingSelectedError(
            f"no included participant has the --group-model columns in "
            f"{options.participants_source}; fill them in or change the formula"
        )
    if options.contrast:
        design.contrasts["contrast"] = parse_contrast(options.contrast, design.columns)
    for row in result.rows:
        why = design.dropped.get(row["participant_id"][4:])
        if why and row["status"] == "included":
            row["reason"] += f"; left out of the group model: {why}"
    rows = np.array([labels.index(p) for p in design.participants])
    units = DERIVED_UNITS[key.model]
    outputs: list[Path] = []
    for param in analysed_params(key.model):
        def block_fit(b: slice, weights: np.ndarray | None = None, param=param):
            return random_effects(
                np.asarray(store.array(f"latent_{param}")[rows, b], float),
                np.asarray(store.array(f"variance_{param}")[rows, b], float),
                design.matrix,
                None if weights is None else weights[b],
            )

        # two passes: every vertex's own τ̂², then the fit weighted by τ² moderated
        # toward the median over all vertices (bids_app.group.random_effects)
        first = concatenate([block_fit(b) for b in blocks])
        fit = concatenate([block_fit(b, moderate_tau2(first.tau2)) for b in blocks])
        if not (fit.n > 0).any():
            LOGGER.warning("group %s: no participant has %s SE maps; random-effects maps "
                           "skipped (run the participant level with a bootstrap)", key.label, param)
            continue
        methods = Counter(str(m) for m in fit.method)
        if methods.get("", 0) == layout.total or not np.isfinite(fit.tau2).any():
            LOGGER.warning(
                "group %s: %d participant(s) for %d design column(s): the between-participant "
                "SD is not estimable and the maps are fixed-effect", key.label,
                len(design.participants), len(design.columns))
        model_record = {
            **record,
            "GroupModel": {
                "Formula": design.formula,
                "Columns": design.columns,
                "Contrasts": {k: v.tolist() for k, v in design.contrasts.items()},
                "Participants": [f"sub-{p}" for p in design.participants],
                "LeftOut": {f"sub-{k}": v for k, v in design.dropped.items()},
                "Scale": "latent probit θ̃ of bids_app.models; participant variances from "
                "their interval bounds (else delta method)",
                "Tau2Estimator": {"REML": methods.get("REML", 0), "DerSimonianLaird":
                                  methods.get("DL", 0), "NotEstimable": methods.get("", 0)},
                "Weights": "1/(SE² + τ²), τ² moderated halfway toward its median over "
                "vertices; inference: Knapp-Hartung t with participants minus columns df",
            },
        }
        masks = layout.split(fit.n > 0)
        masks = {h: m.astype(bool) for h, m in masks.items()}
        names = {v: k for k, v in design.labels().items()}
        for desc, per_param in term_maps(key.model, param, fit, design).items():
            column = names.get(desc, "")
            mean_like = desc in ("mean", "intercept", "re")
            what = {"mean": "the group mean", "intercept": "the intercept"}.get(
                desc, f"the {column} effect" if column else "")
            null = "the canonical HRF" if mean_like else "zero"
            for reported, stats in per_param.items():
                maps = {stat: layout.split(values) for stat, values in stats.items()}
                sidecars = {
                    stat: _sidecar(
                        reported, stat,
                        _term_units(stat, units[reported], column, mean_like),
                        _TERM_TEXT[stat].format(what=what, param=reported, null=null) + ".",
                        {**model_record, "Term": column or desc},
                    )
                    for stat in stats
                }
                outputs += _write_group_maps(output_dir, key, reported, maps, sidecars, masks,
                                             desc)
    return outputs


def _modes_outputs(
    output_dir: Path,
    key: GroupKey,
    store: SpillStore,
    layout: _Layout,
    result: GroupResult,
    options: GroupOptions,
    meshes: MeshLookup | None,
    record: Mapping[str, Any],
) -> list[Path]:
    """Population modes of each model parameter's maps: mode maps and a scores table."""
    n_in = len(result.included)
    n_components = min(options.n_modes, n_in - 1)
    if n_in < 3 or n_components < 1:
        return []
    mass, mass_note = _mass(key.space, layout, meshes)
    batch = max(n_components, 32)  # participants per IncrementalPCA step: bounds memory
    starts = list(range(0, n_in, batch))
    if len(starts) > 1 and n_in - starts[-1] < n_components:
        starts.pop()  # the short tail joins the previous batch
    bounds = list(zip(starts, [*starts[1:], n_in], strict=True))
    outputs: list[Path] = []
    for param in analysed_params(key.model):
        array = store.array(f"estimate_{param}")

        def batches(array=array):
            return (np.asarray(array[a:b], float) for a, b in bounds)

        modes = population_modes(batches, mass, n_components)
        if modes is None:
            LOGGER.info("group %s: too few common vertices for population modes", key.label)
            continue
        names = [f"mode{k + 1}" for k in range(n_components)]
        unit = DERIVED_UNITS[key.model][param]
        mode_record = {
            **record,
            "ExplainedVarianceRatio": modes.explained_ratio.tolist(),
            "Weights": mass_note,
        }
        maps = {name: layout.split(modes.modes[k]) for k, name in enumerate(names)}
        sidecars = {
            name: _sidecar(
                param, name, "arbitrary",
                f"Population mode {k + 1} of {param} (functional PCA weighted by the mesh "
                f"mass, unit mean square over the surface); explains "
                f"{modes.explained_ratio[k]:.1%} of the between-participant variance.",
                mode_record,
            )
            for k, name in enumerate(names)
        }
        masks = {h: np.isfinite(m) for h, m in layout.split(modes.modes[0]).items()}
        outputs += _write_group_maps(output_dir, key, param, maps, sidecars, masks, "modes")
        scores = pd.DataFrame(modes.scores, columns=names)
        scores.insert(0, "participant_id", [f"sub-{m.subject}" for m in result.included])
        ents = {**key.entities, "desc": "modes", "param": param}
        path = Path(output_dir) / derivative_name(ents, MODES_SUFFIX, ".tsv")
        outputs.append(_write_tsv(path, scores))
        write_json(sidecar_path(path), {
            "participant_id": {"Description": "Participant label."},
            **{name: {"Description": f"Score on population mode {k + 1}: mass-weighted "
                      f"projection of the participant's {param} map minus the mean, per unit "
                      "surface area (map ≈ mean + Σ score × mode).", "Units": unit}
               for k, name in enumerate(names)},
            "ExplainedVarianceRatio": modes.explained_ratio.tolist(),
        })
    return outputs


_RETEST_TEXT = {
    "icc": "ICC(3,1) (two-way mixed, consistency) of {param} over {k} repeats",
    "cv": "Within-participant coefficient of variation of {param} (RMS within SD / mean)",
    "withinsd": "Within-participant SD of {param} over repeats (root mean square)",
    "betweensd": "Between-participant SD of {param} (from the ICC mean squares)",
    "meanse": "Root mean square of the participants' own SEs of {param}, beside the "
    "within-participant SD",
    "n": "Participants with all {k} repeats at the vertex",
}


def _retest_outputs(
    output_dir: Path,
    key: GroupKey,
    retest: _Retest,
    n_retest: int,
    layout: _Layout,
    record: Mapping[str, Any],
) -> list[Path]:
    """Vertex maps and per-parcel tables of test–retest reliability."""
    outputs: list[Path] = []
    units = DERIVED_UNITS[key.model]
    rec = {**record, "RetestParticipants": n_retest, "Repeats": retest.repeats}
    for param, accumulator in retest.vertex.items():
        values = accumulator.result()
        maps = {stat: layout.split(v) for stat, v in values.items()}
        masks = {h: m > 0 for h, m in maps["n"].items()}
        sidecars = {
            stat: _sidecar(
                param, stat,
                {"icc": "arbitrary", "cv": "arbitrary", "n": "participants"}.get(stat,
                                                                                  units[param]),
                _RETEST_TEXT[stat].format(param=param, k=retest.repeats) + ".", rec)
            for stat in values
        }
        outputs += _write_group_maps(output_dir, key, param, maps, sidecars, masks, "retest")
    for atlas, (_, names, accumulators) in retest.parcels.items():
        frames = []
        for param, accumulator in accumulators.items():
            frame = pd.DataFrame(names, columns=["hemi", "parcel", "label"])
            frame.insert(3, "param", param)
            for stat, values in accumulator.result().items():
                frame[stat] = values
            frames.append(frame)
        ents = {**key.entities, "seg": atlas, "desc": "retest"}
        path = Path(output_dir) / derivative_name(ents, "boldparcels", ".tsv")
        outputs.append(_write_tsv(path, pd.concat(frames, ignore_index=True)))
    return outputs


def group_level(
    output_dir: Path | str,
    participants: Sequence[str] = (),
    space: str | None = None,
    report: bool = True,
    parcellations: Mapping[str, Parcellation] | None = None,
    meshes: MeshLookup | None = None,
    options: GroupOptions | None = None,
) -> list[GroupResult]:
    """Run the group level on OUTPUT_DIR; returns one result per group of comparable maps.

    ``participants`` (labels without ``sub-``) and ``space`` (``fsaverage5``,
    ``fsLR_den-32k`` …) restrict what is aggregated; ``parcellations`` overrides the
    TemplateFlow lookup (``{atlas: {hemi: (labels, names)}}``); ``meshes(space, hemi)``
    gives the report's surfaces and the modes' mass (default: template midthickness);
    ``options`` sets the group model and who enters it.
    """
    output_dir = Path(output_dir)
    groups = _select(output_dir, participants, space)
    write_dataset_description(output_dir)
    write_bidsignore(output_dir, extra=(f"*_{MODES_SUFFIX}.tsv", f"*_{MODES_SUFFIX}.json"))
    results = [
        aggregate_group(output_dir, key, subjects, parcellations, options, meshes)
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
    if not any(result.included for result in results):
        raise NothingSelectedError(
            f"no participant could be included; see {output_dir / PARTICIPANTS_TSV} for why "
            "(--include-flagged keeps participants flagged by quality control or identifiability)"
        )
    if report:
        # The plotting libraries' warnings (nilearn's RuntimeWarnings on NaN vertices,
        # matplotlib's) are about drawing, not the maps: to the log, not the terminal.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            write_group_report(output_dir, meshes)
        for warning in caught:
            LOGGER.info("group report: %s: %s", warning.category.__name__, warning.message)
    return results


def run_group(config: Any) -> list[GroupResult]:
    """CLI entry: the group level for a :class:`bids_app.config.Config`."""
    from bids_app.io.group_inputs import read_participants_table

    source = Path(config.bids_dir) / "participants.tsv"
    options = GroupOptions(
        formula=config.group_model,
        contrast=config.contrast,
        include_flagged=config.include_flagged,
        participants_table=read_participants_table(source) if config.group_model else None,
        participants_source=str(source),
        n_modes=config.n_modes,
        work_dir=Path(config.work_dir),
    )
    return group_level(
        config.output_dir,
        participants=config.participant_labels,
        space=config.space,
        report=config.report,
        options=options,
    )
