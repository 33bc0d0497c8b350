"""Parameter maps out: BIDS-Derivatives names, GIFTI/CIFTI maps and their JSON sidecars.

One function (:func:`derivative_name`) names every output so the participant writer, the
group reader and the report agree on file names. Maps are written per run (or combined
over runs) as ``.func.gii`` per hemisphere for GIFTI input, or as one ``.dscalar.nii``
holding both hemispheres' cortex for CIFTI input. Every file is written to a temporary
name in its folder and renamed (:mod:`bids_app.io.atomic`), so an interrupted job never
leaves a half-written map.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from bids_app import __version__
from bids_app.errors import InputValidationError
from bids_app.io.atomic import jsonable, write_json
from bids_app.io.surface_files import (
    CIFTI_STRUCTURE,
    HEMI_STRUCTURE,
    SurfaceBlock,
    save_cifti_scalars,
    save_scalar_gifti,
)
from bids_app.models import DERIVED_UNITS, MODELS

# BIDS entity order (standard entities first, then the XCP-D/BEP012-style
# non-standard ones this app adds and lists in .bidsignore).
ENTITY_ORDER: tuple[str, ...] = (
    "sub",
    "ses",
    "task",
    "acq",
    "ce",
    "rec",
    "dir",
    "run",
    "echo",
    "hemi",
    "space",
    "seg",
    "res",
    "den",
    "desc",
    "param",
    "stat",
)

# pybids long entity names → the short keys used in file names.
_LONG_TO_SHORT = {
    "subject": "sub",
    "session": "ses",
    "acquisition": "acq",
    "ceagent": "ce",
    "reconstruction": "rec",
    "direction": "dir",
    "resolution": "res",
    "density": "den",
    "description": "desc",
}

STATS: tuple[str, ...] = ("estimate", "se", "cilower", "ciupper")
MAP_SUFFIX = "boldmap"
GIFTI_EXT = ".func.gii"
CIFTI_EXT = ".dscalar.nii"
MAP_EXTENSIONS: tuple[str, ...] = (GIFTI_EXT, CIFTI_EXT)

# CIFTI structure name → hemisphere label.
_CIFTI_STRUCTURE = {structure: hemi for hemi, structure in CIFTI_STRUCTURE.items()}

_STAT_DESCRIPTIONS = {
    "estimate": "Posterior mode (MAP) of {param} under the SPDE spatial prior.",
    "se": "Bootstrap standard error of {param}, in the units of {param}.",
    "cilower": "Lower bound of the {interval} confidence interval of {param}.",
    "ciupper": "Upper bound of the {interval} confidence interval of {param}.",
}

_PARAM_DESCRIPTIONS = {
    "theta": "rate (time dilation) of the double-gamma HRF; 1 is the canonical shape",
    "timetopeak": "time from neural event to the peak of the positive HRF lobe (5/theta)",
    "amplitude": "weight of the SPM canonical HRF",
    "latency": "weight of the canonical HRF's temporal derivative (about a shift in seconds)",
}


# --------------------------------------------------------------------------- names


def normalize_entities(entities: Mapping[str, Any]) -> dict[str, str]:
    """Short-key string entities from a pybids or hand-written mapping.

    pybids reports ``subject``, ``session``, ``density`` …; file names use ``sub``,
    ``ses``, ``den``. Keys outside :data:`ENTITY_ORDER` (suffix, extension, datatype,
    TR …) are dropped; ``None`` values are dropped.
    """
    out: dict[str, str] = {}
    for key, value in entities.items():
        short = _LONG_TO_SHORT.get(key, key)
        if short in ENTITY_ORDER and value is not None and str(value) != "":
            out[short] = str(value)
    return out


def derivative_name(
    entities: Mapping[str, Any], suffix: str = MAP_SUFFIX, extension: str = GIFTI_EXT
) -> str:
    """The BIDS file name of one output, entities in :data:`ENTITY_ORDER`.

    >>> derivative_name({"sub": "01", "task": "rest", "hemi": "L",
    ...                  "space": "fsaverage5", "param": "timetopeak", "stat": "estimate"})
    'sub-01_task-rest_hemi-L_space-fsaverage5_param-timetopeak_stat-estimate_boldmap.func.gii'
    """
    ents = normalize_entities(entities)
    for key, value in ents.items():
        if not re.fullmatch(r"[A-Za-z0-9]+", value):
            raise InputValidationError(
                f"entity {key}-{value} is not alphanumeric; BIDS labels cannot hold '_' or '-'"
            )
    parts = [f"{key}-{ents[key]}" for key in ENTITY_ORDER if key in ents]
    return "_".join([*parts, suffix]) + extension


def derivative_folder(output_dir: Path | str, entities: Mapping[str, Any]) -> Path:
    """``OUTPUT_DIR/sub-X[/ses-Y]/func`` for participant outputs, the root for group ones."""
    ents = normalize_entities(entities)
    folder = Path(output_dir)
    if "sub" in ents:
        folder = folder / f"sub-{ents['sub']}"
        if "ses" in ents:
            folder = folder / f"ses-{ents['ses']}"
        folder = folder / "func"
    return folder


def map_path(
    output_dir: Path | str,
    entities: Mapping[str, Any],
    param: str,
    stat: str,
    extension: str = GIFTI_EXT,
) -> Path:
    """Full path of one parameter map (its sidecar: same stem, ``.json``)."""
    ents = {**normalize_entities(entities), "param": param, "stat": stat}
    return derivative_folder(output_dir, ents) / derivative_name(ents, MAP_SUFFIX, extension)


def sidecar_path(map_file: Path | str) -> Path:
    """The JSON sidecar beside a map (``x.func.gii`` → ``x.json``)."""
    map_file = Path(map_file)
    return map_file.with_name(split_extension(map_file.name)[0] + ".json")


def split_extension(filename: str) -> tuple[str, str]:
    """``('stem', '.func.gii')``: BIDS extensions may hold several dots."""
    match = re.match(r"^([^.]+)(\..*)?$", filename)
    if match is None:  # pragma: no cover - the pattern matches any string
        return filename, ""
    return match.group(1), match.group(2) or ""


def parse_name(filename: str) -> tuple[dict[str, str], str, str]:
    """Invert :func:`derivative_name`: (entities, suffix, extension)."""
    stem, extension = split_extension(Path(filename).name)
    *pairs, suffix = stem.split("_")
    entities = {}
    for pair in pairs:
        key, sep, value = pair.partition("-")
        if sep:
            entities[key] = value
    return entities, suffix, extension


def bids_uri(path: Path | str, dataset_root: Path | str, dataset_name: str = "fmriprep") -> str:
    """A BIDS URI (``bids:fmriprep:sub-01/func/...``) naming an input for ``Sources``.

    The name must be a key of ``DatasetLinks`` in dataset_description.json (written by
    :func:`bids_app.io.dataset_description.write_dataset_description`).
    """
    # Relative path taken without resolving links: DataLad datasets and hand-made layouts
    # link their files from elsewhere, but the URI must name the file inside the dataset.
    rel = Path(os.path.relpath(os.path.abspath(path), os.path.abspath(dataset_root)))
    if rel.parts and rel.parts[0] == "..":
        raise InputValidationError(f"{path} is not inside the input dataset {dataset_root}")
    return f"bids:{dataset_name}:{rel.as_posix()}"


# --------------------------------------------------------------------------- results


@dataclass
class StatArrays:
    """One reported parameter's maps, each full-length (vertices or grayordinates).

    NaN marks vertices where nothing was estimated (medial wall, constant series).
    ``se``/``cilower``/``ciupper`` are ``None`` when no bootstrap ran. All values are in
    the parameter's natural units (``bids_app.models.DERIVED_UNITS``).
    """

    estimate: np.ndarray
    se: np.ndarray | None = None
    cilower: np.ndarray | None = None
    ciupper: np.ndarray | None = None

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        """(stat, array) for each map present, in :data:`STATS` order."""
        for stat in STATS:
            value = getattr(self, stat)
            if value is not None:
                yield stat, np.asarray(value, dtype=float)


@dataclass
class FitMetadata:
    """What the sidecar of every map of one fit records (JSON-able values only).

    Per-hemisphere values (a CIFTI file holds both hemispheres, each fitted separately)
    may be given as ``{"L": ..., "R": ...}`` wherever a float is expected.

    Attributes
    ----------
    surrogate : the surrogate's card keys ``{"Id": str, "Sha256": str}``.
    kappa, tau2 : SPDE hyperparameters selected (κ in 1/mm, τ² unitless; mesh in mm).
    log_evidence : Laplace log evidence at (κ, τ²), nats.
    convergence : Newton record, e.g. ``{"Converged": True, "Iterations": 7,
        "Objective": [...], "GradientNorm": [...]}`` (traces feed the report).
    random_seed : seed of every stochastic step (bootstrap), or None if none ran.
    sources : BIDS URIs of the inputs (:func:`bids_uri`).
    bootstrap : ``{"Mode": "double"|"single"|"none", "B", "R", "BlockLengthSeconds",
        "CalibratedAlpha"}``.
    calibration_check : result of the surrogate's check of the data (JSON dict).
    identifiability : per reported parameter, a note or dict (e.g. ``{"Identified":
        False, "Note": "..."}``); each map's sidecar carries its parameter's entry.
    evidence_grid : ``{"Kappa": [...], "Tau2": [...], "LogEvidence": [[...]]}`` (rows κ,
        columns τ²) for the report's evidence surface; None if not gridded.
    hyperparameter_selection : how (κ, τ²) were chosen, e.g. ``{"Method": "Laplace
        evidence grid", "OnGridBoundary": {"kappa": "lower"}, "LogEvidenceGap": 0.4}``
        (axes whose selected value is a grid edge; best minus second-best log evidence,
        nats); None if not recorded.
    bias_correction : ``{"Method": "simulation", "NoiseModel": {...}, "MeanShift": [...],
        ...}`` or ``{"Method": "none", "Reason": str}``; None if not recorded.
    quality_control : the quality gate's record (``bids_app.quality``): ``{"Pass": bool,
        "Reasons": [str], "Checks": {name: {"Value", "Threshold", "Pass",
        "Description"}}}``; None if the gate did not run (combined maps).
    extra : anything else worth recording (TR, confound strategy, frames kept ...).
    """

    surrogate: Mapping[str, Any]
    kappa: Any
    tau2: Any
    log_evidence: Any
    convergence: Mapping[str, Any]
    random_seed: int | None
    sources: list[str]
    bootstrap: Mapping[str, Any] = field(default_factory=lambda: {"Mode": "none"})
    calibration_check: Mapping[str, Any] | None = None
    identifiability: Mapping[str, Any] = field(default_factory=dict)
    evidence_grid: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    hyperparameter_selection: Mapping[str, Any] | None = None
    bias_correction: Mapping[str, Any] | None = None
    quality_control: Mapping[str, Any] | None = None


@dataclass
class ParameterMaps:
    """Everything written for one fit: entities, model, maps and sidecar metadata.

    ``entities`` are BIDS entities of the source run (sub, ses, task, acq, run, hemi,
    space, den; pybids long names accepted); drop ``run`` for a map combined over runs.
    For CIFTI output set ``brain_models`` (the cortex surface models of the output, no
    ``hemi`` entity) and give arrays of length ``len(brain_models)`` in its order
    (:func:`merge_hemispheres` builds them from per-hemisphere arrays).
    """

    entities: Mapping[str, Any]
    model: str
    params: Mapping[str, StatArrays]
    metadata: FitMetadata
    brain_models: nib.cifti2.BrainModelAxis | None = None

    def __post_init__(self) -> None:
        self.entities = normalize_entities(self.entities)
        if self.model not in DERIVED_UNITS:
            raise ValueError(f"model must be one of {sorted(DERIVED_UNITS)}, not {self.model!r}")
        if set(self.params) != set(DERIVED_UNITS[self.model]):
            raise ValueError(
                f"model {self.model} reports {list(DERIVED_UNITS[self.model])}, "
                f"got {list(self.params)}"
            )
        if "sub" not in self.entities:
            raise ValueError("entities need a subject ('sub')")
        lengths = {arr.shape for stats in self.params.values() for _, arr in stats.items()}
        if len(lengths) != 1 or len(next(iter(lengths))) != 1:
            raise ValueError(f"all maps must be 1-D of one length, got shapes {lengths}")
        n = next(iter(lengths))[0]
        if self.brain_models is None:
            if self.entities.get("hemi") not in HEMI_STRUCTURE:
                raise ValueError("GIFTI maps need hemi 'L' or 'R' in entities")
        else:
            self.entities.pop("hemi", None)
            if not np.isin(self.brain_models.name, list(_CIFTI_STRUCTURE)).all():
                raise ValueError("CIFTI maps hold cortex only: pass cortex_models(axis)")
            if n != len(self.brain_models):
                raise ValueError(f"{n} values for {len(self.brain_models)} grayordinates")

    @property
    def extension(self) -> str:
        return GIFTI_EXT if self.brain_models is None else CIFTI_EXT

    @property
    def n_values(self) -> int:
        stats = next(iter(self.params.values()))
        return int(np.asarray(stats.estimate).shape[0])


def merge_hemispheres(
    left: Mapping[str, StatArrays],
    right: Mapping[str, StatArrays],
    brain_models: nib.cifti2.BrainModelAxis,
) -> dict[str, StatArrays]:
    """CIFTI-ordered maps from per-hemisphere full-length arrays.

    ``left``/``right`` hold arrays over every vertex of each hemisphere's mesh (e.g.
    32,492 for fsLR 32k, NaN on the medial wall); the result picks the vertices the
    cortex models of ``brain_models`` list, in their order. Subcortical models are not
    supported (the app estimates on the cortical surface only).
    """
    by_hemi = {"L": left, "R": right}
    out: dict[str, StatArrays] = {}
    for param in left:
        stats = {}
        for stat in STATS:
            pieces = []
            for structure, _, model in brain_models.iter_structures():
                hemi = _CIFTI_STRUCTURE.get(structure)
                if hemi is None:
                    raise ValueError(f"only cortex surface models can be written, not {structure}")
                arr = getattr(by_hemi[hemi][param], stat)
                if arr is None:
                    break
                pieces.append(np.asarray(arr, dtype=float)[model.vertex])
            else:
                stats[stat] = np.concatenate(pieces)
        out[param] = StatArrays(**stats)
    return out


def split_hemispheres(
    values: np.ndarray, brain_models: nib.cifti2.BrainModelAxis
) -> dict[str, np.ndarray]:
    """Per-hemisphere full-length arrays (NaN where absent) from CIFTI-ordered values.

    The inverse of :func:`merge_hemispheres` for one map; used to plot CIFTI maps on
    each hemisphere's mesh and to average them vertex-wise at the group level.
    """
    out = {}
    for structure, rows, model in brain_models.iter_structures():
        hemi = _CIFTI_STRUCTURE.get(structure)
        if hemi is not None:
            full = np.full(int(model.nvertices[structure]), np.nan)
            full[model.vertex] = np.asarray(values, dtype=float)[rows]
            out[hemi] = full
    return out


def cortex_models(brain_models: nib.cifti2.BrainModelAxis) -> nib.cifti2.BrainModelAxis:
    """The cortex surface models of a CIFTI axis (drops subcortical voxels)."""
    keep = np.isin(brain_models.name, list(_CIFTI_STRUCTURE))
    return brain_models[np.flatnonzero(keep)]


# --------------------------------------------------------------------------- sidecars


def sidecar(maps: ParameterMaps, param: str, stat: str) -> dict[str, Any]:
    """The JSON sidecar of one map: units, statistic, model and the fit's record."""
    meta = maps.metadata
    model = MODELS[maps.model]
    interval = (
        "double-bootstrap calibrated 95%"
        if meta.bootstrap.get("Mode") == "double"
        else "nominal 95% bootstrap"
    )
    record: dict[str, Any] = {
        "Units": DERIVED_UNITS[maps.model][param],
        "Description": _STAT_DESCRIPTIONS[stat].format(param=param, interval=interval)
        + f" {param}: {_PARAM_DESCRIPTIONS.get(param, param)}.",
        "Parameter": param,
        "Statistic": stat,
        "Model": {
            "Name": model.name,
            "Parameters": list(model.params),
            "Lower": list(model.lower),
            "Upper": list(model.upper),
        },
        "Surrogate": dict(meta.surrogate),
        "Kappa": meta.kappa,
        "Tau2": meta.tau2,
        "LogEvidence": meta.log_evidence,
        "Convergence": dict(meta.convergence),
        "Bootstrap": dict(meta.bootstrap),
        "CalibrationCheck": meta.calibration_check,
        "Identifiability": meta.identifiability.get(param),
        "RandomSeed": meta.random_seed,
        "Sources": list(meta.sources),
        "SoftwareVersion": __version__,
    }
    if meta.evidence_grid is not None:
        record["EvidenceGrid"] = dict(meta.evidence_grid)
    if meta.hyperparameter_selection is not None:
        record["HyperparameterSelection"] = dict(meta.hyperparameter_selection)
    if meta.bias_correction is not None:
        record["SimulatedBiasCorrection"] = dict(meta.bias_correction)
    if meta.quality_control is not None:
        record["QualityControl"] = dict(meta.quality_control)
    if stat in ("cilower", "ciupper"):
        record["NominalCoverage"] = 0.95
    for key, value in meta.extra.items():
        record.setdefault(key, value)
    return jsonable(record)


# --------------------------------------------------------------------------- writing


def write_map(
    path: Path | str,
    values: np.ndarray,
    *,
    hemi: str | None = None,
    brain_models: nib.cifti2.BrainModelAxis | None = None,
    name: str = "",
) -> Path:
    """Atomically write one float32 map: GIFTI for ``hemi``, CIFTI for ``brain_models``.

    CIFTI files list the left cortex before the right (``bids_app.io.surface_files``).
    """
    values = np.asarray(values, dtype=np.float32)
    if brain_models is not None:
        blocks = {
            _CIFTI_STRUCTURE[structure]: SurfaceBlock(
                values[rows, np.newaxis], np.asarray(model.vertex), int(model.nvertices[structure])
            )
            for structure, rows, model in brain_models.iter_structures()
        }
        return save_cifti_scalars(path, blocks, [name])
    if hemi in HEMI_STRUCTURE:
        return save_scalar_gifti(path, values, [name], hemi=hemi)
    raise ValueError("give hemi ('L'/'R') for GIFTI or brain_models for CIFTI")


def write_parameter_maps(output_dir: Path | str, maps: ParameterMaps) -> list[Path]:
    """Write every map of ``maps`` and its sidecar; return the map paths written.

    Each sidecar is written before its map, so a map on disk always has its record.
    """
    written = []
    for param, stats in maps.params.items():
        for stat, values in stats.items():
            path = map_path(output_dir, maps.entities, param, stat, maps.extension)
            write_json(sidecar_path(path), sidecar(maps, param, stat))
            write_map(
                path,
                values,
                hemi=maps.entities.get("hemi"),
                brain_models=maps.brain_models,
                name=f"{param}_{stat}",
            )
            written.append(path)
    return written


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class MapFile:
    """A map found on disk: its path and the entities parsed from its name."""

    path: Path
    entities: dict[str, str]

    @property
    def fit_key(self) -> tuple[tuple[str, str], ...]:
        """Entities that identify the fit (all but hemi, param, stat), sorted."""
        drop = {"hemi", "param", "stat"}
        return tuple(sorted((k, v) for k, v in self.entities.items() if k not in drop))


def find_group_maps(output_dir: Path | str) -> list[MapFile]:
    """The group-level maps at the root of OUTPUT_DIR (no ``sub`` entity), sorted."""
    found = []
    for extension in MAP_EXTENSIONS:
        for path in sorted(Path(output_dir).glob(f"*_{MAP_SUFFIX}{extension}")):
            entities, _, _ = parse_name(path.name)
            if not path.name.startswith(".") and {"param", "stat"} <= set(entities):
                found.append(MapFile(path, entities))
    return found


def find_maps(output_dir: Path | str, subject: str | None = None) -> list[MapFile]:
    """Every participant parameter map under OUTPUT_DIR (or one subject's), sorted.

    Hidden files (temporaries of :mod:`bids_app.io.atomic`) are never listed.
    """
    root = Path(output_dir)
    pattern = f"sub-{subject}" if subject else "sub-*"
    found = []
    for folder in sorted(root.glob(pattern)):
        if not folder.is_dir():
            continue
        for extension in MAP_EXTENSIONS:
            for path in sorted(folder.rglob(f"*_{MAP_SUFFIX}{extension}")):
                if path.name.startswith("."):
                    continue
                entities, _, _ = parse_name(path.name)
                if {"sub", "param", "stat"} <= set(entities):
                    found.append(MapFile(path, entities))
    return found


@dataclass
class LoadedMap:
    """A map read back: values, its CIFTI axis (None for GIFTI) and its sidecar."""

    values: np.ndarray
    brain_models: nib.cifti2.BrainModelAxis | None
    metadata: dict[str, Any]


def read_map(path: Path | str) -> LoadedMap:
    """Read a ``.func.gii`` or ``.dscalar.nii`` map and its sidecar (``{}`` if absent)."""
    path = Path(path)
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises many types for unreadable files
        raise InputValidationError(
            f"cannot read map {path}: {exc}; re-run that participant"
        ) from exc
    if isinstance(img, nib.Cifti2Image):
        values = np.asarray(img.get_fdata(dtype=np.float32)[0], dtype=float)
        axis = img.header.get_axis(1)
    else:
        values = np.asarray(img.darrays[0].data, dtype=float)
        axis = None
    side = sidecar_path(path)
    metadata = json.loads(side.read_text()) if side.is_file() else {}
    return LoadedMap(values=values, brain_models=axis, metadata=metadata)
