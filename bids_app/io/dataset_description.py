"""Dataset-level files of OUTPUT_DIR: dataset_description.json, .bidsignore, finished records.

Many participant jobs of a cluster array may start at once on one OUTPUT_DIR. Each
update here happens under an exclusive ``flock`` on the directory itself (no lock file
is left behind) and lands by atomic rename, so the file is always valid JSON and a
compatible description already present is left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bids_app import __version__
from bids_app.errors import OutputError
from bids_app.io.atomic import write_json, write_text

LOGGER = logging.getLogger(__name__)

APP_NAME = "hemocoupling"
CODE_URL = "https://github.com/hemocoupling/hemocoupling"
DOCKER_IMAGE = "hemocoupling/hemocoupling"
BIDS_VERSION = "1.10.0"

# Files the BIDS validator does not know: non-standard entities/suffix, reports, logs.
BIDSIGNORE_PATTERNS: tuple[str, ...] = (
    "*_boldmap.*",
    "*_boldparcels.tsv",
    "*_boldparcels.json",
    "group_participants.*",
    "*.html",
    "logs/",
)

FINISHED_DIR = "logs"


@contextlib.contextmanager
def directory_lock(folder: Path | str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` (blocks until other holders leave).

    Locking the directory rather than a lock file leaves nothing behind. File systems
    without flock support get a logged warning and no lock: the atomic renames still
    keep every file whole, only concurrent merges may then lose one side's addition.
    """
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            LOGGER.warning("no flock on %s (%s): writing without a lock", folder, exc)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _ensure_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create {folder}: {exc.strerror or exc}; choose a writable OUTPUT_DIR"
        ) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{folder} is not writable; choose a writable OUTPUT_DIR")


def detect_container(
    environ: Mapping[str, str] | None = None, root: Path | str = "/"
) -> dict[str, str] | None:
    """``GeneratedBy.Container`` when running inside Apptainer/Singularity or Docker.

    Apptainer and Singularity export the image path; Docker leaves ``/.dockerenv``. The
    Docker tag is the one the project's image is published under for this version.
    """
    environ = os.environ if environ is None else environ
    for variable, kind in (
        ("APPTAINER_CONTAINER", "apptainer"),
        ("SINGULARITY_CONTAINER", "singularity"),
    ):
        if environ.get(variable):
            return {"Type": kind, "URI": environ[variable]}
    if (Path(root) / ".dockerenv").exists():
        return {"Type": "docker", "Tag": f"{DOCKER_IMAGE}:{__version__}"}
    return None


def dataset_description(
    source_datasets: Mapping[str, Path | str] | None = None,
    container: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The description this version of the app writes.

    ``source_datasets`` maps a short name (used in ``bids:<name>:`` Sources URIs, e.g.
    ``fmriprep``) to the input dataset's path or URL; ``container`` is e.g.
    ``{"Type": "docker", "Tag": "hemocoupling/hemocoupling:0.1.0"}`` (default: what
    :func:`detect_container` finds).
    """
    container = detect_container() if container is None else container
    generated: dict[str, Any] = {"Name": APP_NAME, "Version": __version__, "CodeURL": CODE_URL}
    if container:
        generated["Container"] = dict(container)
    record: dict[str, Any] = {
        "Name": "hemocoupling: vertex-wise hemodynamic coupling maps",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
    }
    if source_datasets:
        links = {name: _as_uri(where) for name, where in source_datasets.items()}
        record["DatasetLinks"] = links
        record["SourceDatasets"] = [{"URL": uri} for uri in links.values()]
    return record


def _as_uri(where: Path | str) -> str:
    text = str(where)
    if "://" in text:
        return text
    return Path(text).resolve().as_uri()


def _generated_by_us(record: Mapping[str, Any]) -> bool:
    generated = record.get("GeneratedBy") or [{}]
    return record.get("DatasetType") == "derivative" and generated[0].get("Name") == APP_NAME


def write_dataset_description(
    output_dir: Path | str,
    source_datasets: Mapping[str, Path | str] | None = None,
    container: Mapping[str, str] | None = None,
) -> Path:
    """Create or update ``OUTPUT_DIR/dataset_description.json`` safely under concurrency.

    A description already written by this app is kept; new ``DatasetLinks`` are merged
    in. A description of another dataset (another app wrote OUTPUT_DIR) or an unreadable
    one raises :class:`~bids_app.errors.OutputError` (exit 73) naming the file.
    """
    output_dir = Path(output_dir)
    _ensure_dir(output_dir)
    path = output_dir / "dataset_description.json"
    desired = dataset_description(source_datasets, container)
    with directory_lock(output_dir):
        if not path.exists():
            return write_json(path, desired)
        try:
            existing = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise OutputError(
                f"{path} is not valid JSON ({exc}); delete it or choose another OUTPUT_DIR"
            ) from exc
        if not _generated_by_us(existing):
            raise OutputError(
                f"{path} describes another dataset (not {APP_NAME} derivatives); "
                "choose an empty or hemocoupling OUTPUT_DIR"
            )
        if existing["GeneratedBy"][0].get("Version") != __version__:
            LOGGER.warning(
                "%s was written by %s %s, this is %s: outputs may mix versions "
                "(each sidecar records its SoftwareVersion)",
                path,
                APP_NAME,
                existing["GeneratedBy"][0].get("Version"),
                __version__,
            )
        links = dict(existing.get("DatasetLinks", {}))
        new = {k: v for k, v in desired.get("DatasetLinks", {}).items() if k not in links}
        if new:
            links.update(new)
            existing["DatasetLinks"] = links
            urls = [s.get("URL") for s in existing.get("SourceDatasets", [])]
            existing["SourceDatasets"] = [
                *existing.get("SourceDatasets", []),
                *({"URL": u} for u in new.values() if u not in urls),
            ]
            write_json(path, existing)
    return path


def write_bidsignore(output_dir: Path | str, extra: Sequence[str] = ()) -> Path:
    """Add this app's patterns (and ``extra``) to ``OUTPUT_DIR/.bidsignore``, keeping others."""
    output_dir = Path(output_dir)
    _ensure_dir(output_dir)
    path = output_dir / ".bidsignore"
    with directory_lock(output_dir):
        lines = path.read_text().splitlines() if path.exists() else []
        missing = [p for p in (*BIDSIGNORE_PATTERNS, *extra) if p not in lines]
        if missing:
            write_text(path, "\n".join([*lines, *missing]) + "\n")
    return path


# --------------------------------------------------------------------------- finished


def finished_path(output_dir: Path | str, subject: str) -> Path:
    """``OUTPUT_DIR/logs/sub-<label>_finished.json``."""
    return Path(output_dir) / FINISHED_DIR / f"sub-{subject}_finished.json"


def mark_finished(
    output_dir: Path | str,
    subject: str,
    outputs: Sequence[Path | str],
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Record that participant ``subject`` finished, with its outputs and settings.

    Write it last, after every map and the report: its presence means the participant's
    outputs are complete. ``settings`` (model, space, bootstrap …) lets a re-run with
    different settings redo the work instead of skipping it.
    """
    output_dir = Path(output_dir)
    rel = sorted(Path(p).resolve().relative_to(output_dir.resolve()).as_posix() for p in outputs)
    record = {
        "Subject": subject,
        "SoftwareVersion": __version__,
        "Settings": dict(settings or {}),
        "Outputs": rel,
    }
    return write_json(finished_path(output_dir, subject), record)


def is_finished(
    output_dir: Path | str, subject: str, settings: Mapping[str, Any] | None = None
) -> bool:
    """True when ``subject`` has a finished record whose outputs all still exist.

    With ``settings`` given, the record must also have been written with equal
    settings (compared as JSON), so changed options are never silently skipped.
    """
    output_dir = Path(output_dir)
    path = finished_path(output_dir, subject)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if settings is not None:
        wanted = json.loads(json.dumps(dict(settings), default=str))
        if record.get("Settings") != wanted:
            return False
    return all((output_dir / rel).is_file() for rel in record.get("Outputs", []))


def clear_finished(output_dir: Path | str, subject: str) -> None:
    """Forget a finished record (``--overwrite``) before a participant is redone."""
    finished_path(output_dir, subject).unlink(missing_ok=True)
