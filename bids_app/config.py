"""The one validated, immutable run configuration.

The CLI parses argv into a :class:`Config`; workflows only ever see this object, so a
run is fully described by it (it is written to ``OUTPUT_DIR/logs/`` as JSON).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bids_app.errors import MissingInputError, OutputError, UsageError
from bids_app.models import DEFAULT_MODEL
from bids_app.threads import thread_counts

_LABEL = re.compile(r"^[0-9A-Za-z]+$")
# Hyperparameter grids searched by Laplace evidence when none are given (their selection
# on synthetic studies: benchmarks/bench_map.py).
DEFAULT_KAPPAS = (5e-4, 5e-3, 5e-2, 5e-1)
DEFAULT_TAU2S = (1e2, 1e3, 1e4, 1e5, 1e6)


@dataclass(frozen=True)
class Config:
    """Everything a workflow needs to know about one invocation.

    Lengths are in seconds, frequencies in Hz, FD in mm; ``kappas`` (1/mm) and
    ``tau2s`` are the hyperparameter grid (a single value fixes it).
    """

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    work_dir: Path
    fmriprep_dir: Path
    participant_labels: tuple[str, ...] = ()
    session_labels: tuple[str, ...] = ()
    task_id: str = "rest"
    bids_filters: dict[str, Any] = field(default_factory=dict)
    space: str | None = None
    skip_bids_validation: bool = False
    model: str = DEFAULT_MODEL
    confounds: str = "24P"
    fd_threshold: float | None = None
    dummy_scans: int | None = None
    lowpass: float | None = None
    surrogate: Path | None = None
    kappas: tuple[float, ...] = DEFAULT_KAPPAS
    tau2s: tuple[float, ...] = DEFAULT_TAU2S
    bootstrap: str = "double"
    n_boot: int = 100
    n_inner: int = 10
    block_length: float = 72.0
    resampling: str = "local"
    bias_correction: str = "simulation"
    nprocs: int = 1
    omp_nthreads: int = 1
    mem_mb: int | None = None
    dask_scheduler: str | None = None
    random_seed: int = 0
    write_deconvolved: bool = False
    overwrite: bool = False
    stop_on_first_crash: bool = False
    report: bool = True
    reports_only: bool = False
    verbose: int = 0
    group_model: str | None = None
    contrast: str | None = None
    include_flagged: bool = False
    n_modes: int = 5

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (paths as strings) for logs and sidecars."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
            elif isinstance(value, tuple):
                out[key] = list(value)
        return out


def default(name: str) -> Any:
    """The default of a :class:`Config` field: the one home of every run default (the
    CLI and the fitting options read it here)."""
    return Config.__dataclass_fields__[name].default


def surrogate_card(path: Path | None, model: str) -> Path | None:
    """A model card written by ``hemocoupling-train`` for ``model`` (None: the shipped one);
    a missing card is exit 66, a card of another model or not a card exit 64."""
    if path is None:
        return None
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise MissingInputError(f"--surrogate {path} does not exist; pass the .json model card "
                                "hemocoupling-train wrote")
    try:
        card_model = json.loads(path.read_text())["model"]
    except (ValueError, KeyError, TypeError) as err:
        raise UsageError(f"--surrogate {path} is not a model card ({err}); pass the .json "
                         "hemocoupling-train wrote") from err
    if card_model != model:
        raise UsageError(f"--surrogate {path} is a {card_model} surrogate but --model is {model}; "
                         "pass a card of the same model")
    return path


def strip_label(label: str, prefix: str) -> str:
    """``sub-01`` → ``01``; rejects labels BIDS would not allow (exit 64)."""
    bare = label[len(prefix):] if label.startswith(prefix) else label
    if not _LABEL.match(bare):
        raise UsageError(f"label '{label}' is not a BIDS label (letters and digits only)")
    return bare


def read_bids_filters(path: Path) -> dict[str, Any]:
    """Load a ``--bids-filter-file`` (fMRIPrep format: ``{"bold": {entity: value}}``)."""
    if not path.is_file():
        raise MissingInputError(f"--bids-filter-file {path} does not exist; check the path")
    try:
        filters = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UsageError(
            f"--bids-filter-file {path} is not valid JSON ({err.msg}, line {err.lineno}); "
            'fix it, e.g. {"bold": {"run": 1}}'
        ) from err
    if not isinstance(filters, dict) or not all(isinstance(v, dict) for v in filters.values()):
        raise UsageError(
            f"--bids-filter-file {path} must map a suffix (e.g. 'bold') to entity filters"
        )
    for suffix, entities in filters.items():
        for key, option in COMMAND_LINE_ENTITIES.items():
            if key in entities:
                raise UsageError(
                    f"--bids-filter-file {path}: '{suffix}' sets '{key}', which the command "
                    f"line decides; remove it from the file and {option}"
                )
    return filters


# Entities a filter file may not set because the command line does (they were silently
# overwritten before): entity → what to do instead.
COMMAND_LINE_ENTITIES = {
    "subject": "pass --participant-label",
    "task": "pass --task-id",
    "suffix": "leave the suffix to the app",
    "extension": "leave the extension to the app",
}


def check_writable(path: Path, what: str) -> None:
    """Prove ``path`` can be written without creating it (exit 73 otherwise): an existing
    folder must be writable, a missing one must have a writable nearest existing parent.

    Nothing is created here, so a run refused later (an unknown participant label, exit
    18) leaves no empty OUTPUT_DIR or work folder behind: OUTPUT_DIR is made when the run
    starts (:func:`make_folder`), the work folder by what first writes there."""
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write {what} {path} ({existing} is a file); choose a "
                          "writable folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {what} {path} ({existing} is not writable); choose "
                          "a writable folder")


def make_folder(path: Path, what: str) -> Path:
    """Create ``path`` (and parents) for writing; exit 73 when that fails."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(
            f"cannot write {what} {path} ({err.strerror}); choose a writable folder"
        ) from err
    return path


def make_config(args: Any) -> Config:
    """Validate parsed arguments into a :class:`Config`.

    Raises
    ------
    MissingInputError
        BIDS_DIR, a derivatives path or the filter file does not exist (66).
    UsageError
        Contradictory or malformed options (64).
    OutputError
        OUTPUT_DIR or the work directory cannot be written (73).
    """
    if args.contrast and not args.group_model:
        raise UsageError("--contrast needs --group-model (the contrast weighs its columns)")
    bids_dir = Path(args.bids_dir).expanduser().resolve()
    if bids_dir.exists() and not bids_dir.is_dir():
        raise MissingInputError(
            f"BIDS_DIR {args.bids_dir} is a file, not a folder; pass the fMRIPrep output folder"
        )
    if not bids_dir.is_dir():
        raise MissingInputError(
            f"BIDS_DIR {args.bids_dir} does not exist; pass the fMRIPrep output folder"
        )
    output_dir = Path(args.output_dir).expanduser().resolve()
    if output_dir == bids_dir:
        raise UsageError("OUTPUT_DIR must differ from BIDS_DIR")

    derivatives = dict(args.derivatives or [])
    unknown = set(derivatives) - {"fmriprep"}
    if unknown:
        raise UsageError(f"--derivatives: unknown name(s) {sorted(unknown)}; use fmriprep=PATH")
    fmriprep_dir = Path(derivatives.get("fmriprep", bids_dir)).expanduser().resolve()
    if not fmriprep_dir.is_dir():
        raise MissingInputError(f"--derivatives fmriprep={fmriprep_dir} does not exist")

    nprocs, omp = thread_counts(args.nprocs, args.omp_nthreads)
    work_dir = Path(args.work_dir or Path.cwd() / "work").expanduser().resolve()

    filters = read_bids_filters(args.bids_filter_file) if args.bids_filter_file else {}
    if args.session_label and any("session" in f for f in filters.values()):
        raise UsageError(f"--session-label and 'session' in --bids-filter-file "
                         f"{args.bids_filter_file} both select sessions; keep one")

    check_writable(output_dir, "OUTPUT_DIR")
    check_writable(work_dir, "work directory")
    return Config(
        bids_dir=bids_dir,
        output_dir=output_dir,
        analysis_level=args.analysis_level,
        work_dir=work_dir,
        fmriprep_dir=fmriprep_dir,
        participant_labels=tuple(dict.fromkeys(
            strip_label(x, "sub-") for x in args.participant_label or ())),
        session_labels=tuple(dict.fromkeys(
            strip_label(x, "ses-") for x in args.session_label or ())),
        task_id=strip_label(args.task_id, "task-"),
        bids_filters=filters,
        space=args.space,
        skip_bids_validation=args.skip_bids_validation,
        model=args.model,
        confounds=args.confounds,
        fd_threshold=args.fd_threshold,
        dummy_scans=args.dummy_scans,
        lowpass=args.lowpass,
        surrogate=surrogate_card(args.surrogate, args.model),
        kappas=tuple(args.kappa) if args.kappa else DEFAULT_KAPPAS,
        tau2s=tuple(args.tau2) if args.tau2 else DEFAULT_TAU2S,
        bootstrap=args.bootstrap,
        n_boot=args.n_boot,
        n_inner=args.n_inner,
        block_length=args.block_length,
        resampling=args.resampling,
        bias_correction=args.bias_correction,
        nprocs=nprocs,
        omp_nthreads=omp,
        mem_mb=args.mem_mb,
        dask_scheduler=args.dask_scheduler,
        random_seed=args.random_seed,
        write_deconvolved=args.write_deconvolved,
        overwrite=args.overwrite,
        stop_on_first_crash=args.stop_on_first_crash,
        report=not args.no_report,
        reports_only=args.reports_only,
        verbose=args.verbose,
        group_model=args.group_model,
        contrast=args.contrast,
        include_flagged=args.include_flagged,
        n_modes=args.n_modes,
    )
