"""Find each participant's surface BOLD runs in an fMRIPrep derivatives dataset (pybids).

A :class:`SurfaceRun` pairs everything one run needs: the hemisphere GIFTIs (or the
CIFTI), the JSON sidecars to take the TR from, the confounds TSV, and the subject's
midthickness meshes for that space (the workflow falls back to the template mesh).
Older fMRIPrep entity orders (``space-X_hemi-L``) are read the same way because
pybids parses entities, not positions.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bids_app.config import Config
from bids_app.errors import InputValidationError, MissingInputError, NothingSelectedError
from bids_app.io.spaces import SPACE_LABELS, SPACES, space_label, template_of

LOGGER = logging.getLogger(__name__)
SURFACE_EXTENSIONS = (".func.gii", ".dtseries.nii")
_DROP_FROM_PREFIX = re.compile(r"_(hemi|space|den|res|desc)-[0-9A-Za-z]+")


@dataclass(frozen=True)
class SurfaceRun:
    """One BOLD run on a surface space, with the files needed to analyse it.

    Attributes
    ----------
    subject : str
        Label without ``sub-``.
    prefix : str
        The run's file-name stem without hemi/space/den and suffix, e.g.
        ``sub-01_ses-1_task-rest_run-1`` (names the outputs).
    entities : dict
        BIDS entities of the run (subject, session, task, acquisition, run, ...).
    space : str
        ``fsaverage5``, ``fsLR_den-32k``, ``fsLR_den-91k``, ``fsnative``, ...
    gifti : dict
        Hemisphere (``"L"``/``"R"``) → ``.func.gii`` series; empty for CIFTI input.
    cifti : Path or None
        ``.dtseries.nii`` series for CIFTI input.
    sidecars : tuple of Path
        JSON files that may hold RepetitionTime, most specific first.
    confounds : Path or None
        ``desc-confounds_timeseries.tsv`` of the run.
    meshes : dict
        Hemisphere → subject midthickness ``.surf.gii`` in this space (absent: template).
    """

    subject: str
    prefix: str
    entities: dict
    space: str
    gifti: dict[str, Path] = field(default_factory=dict)
    cifti: Path | None = None
    sidecars: tuple[Path, ...] = ()
    confounds: Path | None = None
    meshes: dict[str, Path] = field(default_factory=dict)

    @property
    def hemispheres(self) -> tuple[str, ...]:
        return ("L", "R") if self.cifti is not None else tuple(sorted(self.gifti))

    @property
    def sources(self) -> tuple[Path, ...]:
        """Input files, for the sidecars' ``Sources``."""
        series = (self.cifti,) if self.cifti is not None else tuple(self.gifti.values())
        return series + ((self.confounds,) if self.confounds else ())


def open_layout(root: Path):
    """pybids layout of a derivatives folder (never validated: GIFTIs are not raw BIDS).

    JSON metadata is not indexed: the app reads the few sidecars it needs itself
    (:mod:`bids_app.io.metadata`), so one malformed JSON elsewhere is reported by that
    reader, naming the file and the fix, and only when the run needs it.
    """
    from bids import BIDSLayout, BIDSLayoutIndexer
    from bids.exceptions import BIDSValidationError

    try:
        return BIDSLayout(root, validate=False, is_derivative=True,
                          indexer=BIDSLayoutIndexer(validate=False, index_metadata=False))
    except (BIDSValidationError, ValueError) as err:
        raise MissingInputError(
            f"{root} is not a BIDS derivatives dataset ({err}); pass fMRIPrep's output folder "
            "(with dataset_description.json) or --derivatives fmriprep=PATH"
        ) from err


def discover(config: Config) -> dict[str, list[SurfaceRun]]:
    """Return participant label → surface runs to analyse, honouring every filter.

    Raises
    ------
    NothingSelectedError
        A requested label matches no participant, or the task/session/filters leave no
        run (exit 18).
    MissingInputError
        The dataset or a selected participant has no surface BOLD (exit 66).
    """
    root = fmriprep_root(config)
    layout = open_layout(root)
    subjects = sorted(layout.get_subjects())
    if config.participant_labels:
        unknown = [s for s in config.participant_labels if s not in subjects]
        if unknown:
            raise NothingSelectedError(
                f"--participant-label {' '.join(unknown)} matches no participant in {root} "
                f"(found: {', '.join(subjects[:10]) or 'none'})"
            )
        subjects = list(config.participant_labels)
    if not subjects:
        raise MissingInputError(f"no sub-* folders in {root}; pass fMRIPrep's output folder")
    return {subject: subject_runs(layout, subject, config) for subject in subjects}


def fmriprep_root(config: Config) -> Path:
    """The fMRIPrep folder: --derivatives, else BIDS_DIR/derivatives/fmriprep, else BIDS_DIR."""
    if config.fmriprep_dir != config.bids_dir:
        if not config.skip_bids_validation and not (
                config.bids_dir / "dataset_description.json").is_file():
            raise MissingInputError(
                f"{config.bids_dir} has no dataset_description.json; fix the raw dataset "
                "or pass --skip-bids-validation")
        return config.fmriprep_dir
    nested = config.bids_dir / "derivatives" / "fmriprep"
    return nested if nested.is_dir() else config.bids_dir


def subject_runs(layout, subject: str, config: Config) -> list[SurfaceRun]:
    """All selected runs of one participant, in one surface space."""
    every = layout.get(subject=subject, suffix="bold", extension=list(SURFACE_EXTENSIONS))
    if not every:
        raise MissingInputError(
            f"no surface BOLD (*_bold.func.gii or *_bold.dtseries.nii) for sub-{subject} in "
            f"{layout.root}; run fMRIPrep with --output-spaces fsaverage5 (or --cifti-output)"
        )
    query = dict(config.bids_filters.get("bold", {}))
    query.update(subject=subject, task=config.task_id, suffix="bold",
                 extension=list(SURFACE_EXTENSIONS))
    if config.session_labels:
        query["session"] = list(config.session_labels)
    files = layout.get(**query)
    if not files:
        raise NothingSelectedError(
            f"sub-{subject}: no surface BOLD with task-{config.task_id}"
            + (f", session {'/'.join(config.session_labels)}" if config.session_labels else "")
            + (" and the --bids-filter-file filters" if config.bids_filters else "")
            + "; check --task-id/--session-label/--bids-filter-file"
        )
    by_space: dict[str, list] = defaultdict(list)
    for bids_file in files:
        by_space[space_label(bids_file.get_entities())].append(bids_file)
    space = choose_space(by_space, config.space, subject)
    runs = group_runs(by_space[space], space, layout, config)
    LOGGER.info("sub-%s: %d run(s) in space %s", subject, len(runs), space)
    return runs


def choose_space(by_space: dict, wanted: str | None, subject: str) -> str:
    if wanted:
        if wanted not in by_space:
            raise MissingInputError(
                f"sub-{subject} has no surface BOLD in space {wanted} (found: "
                f"{', '.join(sorted(by_space))}); choose another --space")
        return wanted
    for space in SPACE_LABELS:
        if space in by_space:
            if len(by_space) > 1:
                LOGGER.warning("sub-%s: spaces %s found; using %s (set --space to choose)",
                               subject, ", ".join(sorted(by_space)), space)
            return space
    raise MissingInputError(f"sub-{subject}: unsupported surface space(s) "
                            f"{', '.join(sorted(by_space))}; supported: "
                            f"{', '.join(SPACE_LABELS)}")


def run_prefix(name: str) -> str:
    """File stem of a run without hemi/space/den/res/desc and suffix."""
    stem = name.split("_bold")[0]
    return _DROP_FROM_PREFIX.sub("", stem)


def group_runs(files: list, space: str, layout, config: Config) -> list[SurfaceRun]:
    """Pair hemispheres of each run and attach sidecars, confounds and meshes."""
    grouped: dict[str, list] = defaultdict(list)
    for bids_file in files:
        grouped[run_prefix(Path(bids_file.path).name)].append(bids_file)
    runs = []
    for prefix, members in sorted(grouped.items()):
        first = Path(members[0].path)
        entities = {k: v for k, v in members[0].get_entities().items()
                    if k not in ("hemi", "space", "density", "den", "suffix", "extension",
                                 "datatype")}
        gifti = {f.get_entities()["hemi"]: Path(f.path) for f in members
                 if f.path.endswith(".func.gii") and "hemi" in f.get_entities()}
        cifti = next((Path(f.path) for f in members if f.path.endswith(".dtseries.nii")), None)
        series = [cifti] if cifti is not None else list(gifti.values())
        runs.append(SurfaceRun(
            subject=entities["subject"], prefix=prefix, entities=entities, space=space,
            gifti=gifti if cifti is None else {}, cifti=cifti,
            sidecars=sidecar_candidates(series, prefix, first.parent, config),
            confounds=confounds_file(first.parent, prefix),
            meshes=subject_meshes(layout, entities, space),
        ))
    return runs


def sidecar_candidates(series: list[Path], prefix: str, folder: Path,
                       config: Config) -> tuple[Path, ...]:
    """JSON files that may carry RepetitionTime: derivative sidecars, then raw BIDS."""
    found = []
    for path in series:
        stem = path.name.removesuffix(".func.gii").removesuffix(".dtseries.nii")
        found += [path.with_name(stem + ".json"), path.with_name(stem + ".dtseries.json")]
    found.append(folder / f"{prefix}_bold.json")
    raw_func = config.bids_dir / folder.relative_to(fmriprep_root(config))
    found.append(raw_func / f"{prefix}_bold.json")
    found.append(config.bids_dir / f"task-{config.task_id}_bold.json")
    return tuple(dict.fromkeys(p for p in found if p.is_file()))


def confounds_file(folder: Path, prefix: str) -> Path | None:
    """fMRIPrep's confounds TSV for the run (``_regressors`` name of fMRIPrep < 20.2)."""
    for suffix in ("desc-confounds_timeseries.tsv", "desc-confounds_regressors.tsv"):
        path = folder / f"{prefix}_{suffix}"
        if path.is_file():
            return path
    return None


def subject_meshes(layout, entities: dict, space: str) -> dict[str, Path]:
    """Subject midthickness per hemisphere in ``space`` (session-specific first)."""
    meshes = {}
    candidates = layout.get(subject=entities["subject"], suffix="midthickness",
                            extension=".surf.gii")
    session = entities.get("session")
    for hemi in ("L", "R"):
        matching = [f for f in candidates if f.get_entities().get("hemi") == hemi
                    and mesh_space_matches(f.get_entities(), space)]
        matching.sort(key=lambda f: (f.get_entities().get("session") != session,
                                     space_label(f.get_entities()) != space))
        if matching:
            meshes[hemi] = Path(matching[0].path)
    return meshes


def mesh_space_matches(entities: dict, space: str) -> bool:
    """Whether a midthickness mesh belongs to a BOLD space (CIFTI 91k uses 32k meshes).

    A mesh without space entity is the subject's native surface; it also serves a
    template space when its vertex count matches the data (checked on loading).
    """
    mesh_space = space_label(entities)
    if space == "fsLR_den-91k":
        return mesh_space == "fsLR_den-32k"
    return mesh_space in (space, "fsnative")


def load_mesh(run: SurfaceRun, hemi: str, n_vertices: int
              ) -> tuple[np.ndarray, np.ndarray, str]:
    """Mesh for one hemisphere of ``run``: (vertices mm, faces, source description).

    The subject's mesh in the run's space is used when present; a native mesh whose
    vertex count differs from a template-space series is skipped for the template.

    Raises
    ------
    InputValidationError
        The mesh for this space has a different vertex count than the data (exit 16).
    """
    from bids_app.io.surface_files import load_surface
    from bids_app.io.templates import template_mesh

    path = run.meshes.get(hemi)
    native_for_template = path is not None and run.space != "fsnative" and "space-" not in path.name
    if path is not None:
        vertices, faces = load_surface(path)
        if len(vertices) == n_vertices:
            return vertices, faces, str(path)
        if not native_for_template:
            raise InputValidationError(
                f"{path} has {len(vertices)} vertices but the hemi-{hemi} BOLD of "
                f"{run.prefix} has {n_vertices}; pass the mesh of the data's space")
    if template_of(run.space) is None:
        raise MissingInputError(
            f"no hemi-{hemi} midthickness.surf.gii for sub-{run.subject} ({run.space}); "
            "fMRIPrep writes it in anat/, copy it into the derivatives")
    template = SPACES[SPACE_LABELS.index(run.space)].entity
    vertices, faces = template_mesh(template, hemi)
    if len(vertices) != n_vertices:
        raise InputValidationError(
            f"hemi-{hemi} BOLD of {run.prefix} has {n_vertices} vertices but the {template} "
            f"template mesh has {len(vertices)}; the file is not in space {run.space}")
    return vertices, faces, f"template:{template}"


@dataclass(frozen=True)
class RunData:
    """A run's series per hemisphere, with its TR (s) and, for CIFTI, the cortex layout."""

    tr: float
    blocks: dict  # hemi -> bids_app.io.surface_files.SurfaceBlock (n, T)
    n_frames: int


def read_run(run: SurfaceRun) -> RunData:
    """Load a run's hemisphere series and its repetition time.

    Raises
    ------
    InputValidationError
        Hemispheres differ in frame count (exit 16).
    MissingInputError
        No repetition time anywhere (exit 66).
    """
    from bids_app.io.metadata import repetition_time
    from bids_app.io.surface_files import SurfaceBlock, load_cifti_series, load_func_gifti

    if run.cifti is not None:
        blocks = dict(load_cifti_series(run.cifti).cortex)
        tr = repetition_time(run.cifti, run.sidecars)
    else:
        blocks = {}
        for hemi, path in sorted(run.gifti.items()):
            data, _ = load_func_gifti(path)
            blocks[hemi] = SurfaceBlock(data, np.arange(data.shape[0]), data.shape[0])
        tr = repetition_time(next(iter(run.gifti.values())), run.sidecars)
    frames = {hemi: block.data.shape[1] for hemi, block in blocks.items()}
    if len(set(frames.values())) != 1:
        raise InputValidationError(
            f"{run.prefix}: hemispheres have different frame counts {frames}; "
            "re-export the run from fMRIPrep")
    return RunData(tr, blocks, next(iter(frames.values())))
