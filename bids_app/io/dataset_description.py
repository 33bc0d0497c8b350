"""Dataset-level files of OUTPUT_DIR: dataset_description.json, .bidsignore, finished records.

Many participant jobs of a cluster array may start at once on one OUTPUT_DIR. Each
update here happens under an exclusive ``flock`` on the directory itself (no lock file
is left behind) and lands by atomic rename, so the file is always valid JSON and a
compatible description already present is left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import platform
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bids_app import __version__
from bids_app.errors import OutputError
from bids_app.io.atomic import write_json, write_text

LOGGER = logging.getLogger(__name__)

APP_NAME = "hemocoupling"
CODE_URL = "https://github.com/hemocoupling/hemocoupling"
# Set by the Dockerfile to the image's own tag (e.g. hemocoupling/hemocoupling:0.1.0).
IMAGE_VARIABLE = "HEMOCOUPLING_IMAGE"
BIDS_VERSION = "1.10.0"

# Files the BIDS validator does not know: non-standard entities/suffix, reports, logs.
BIDSIGNORE_PATTERNS: tuple[str, ...] = (
    "*_boldmap.*",
    "*_boldparcels.tsv",
    "*_boldparcels.json",
    "group_participants.*",
    "*.html",
    "logs/",
    "figures/",
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
    """``GeneratedBy.Container`` of the container this process runs in, or None.

    Apptainer/Singularity export the image file; Podman writes ``/run/.containerenv``
    (with the image name when it knows it); Docker leaves ``/.dockerenv``. The tag is the
    image's own, which the project's Dockerfile records in ``HEMOCOUPLING_IMAGE``: a
    container built otherwise (a venv inside some other image) gets no tag. That variable
    alone also marks the project's OCI image where the engine leaves no marker file
    (Podman with a read-only root, containerd, Kubernetes).
    """
    environ = os.environ if environ is None else environ
    tag = environ.get(IMAGE_VARIABLE)
    found: dict[str, str | None] | None = None
    for variable, kind in (("APPTAINER_CONTAINER", "apptainer"),
                           ("SINGULARITY_CONTAINER", "singularity")):
        if environ.get(variable):
            found = {"Type": kind, "Tag": tag, "URI": Path(environ[variable]).as_uri()
                     if environ[variable].startswith("/") else environ[variable]}
            break
    else:
        podman = Path(root) / "run" / ".containerenv"
        if podman.is_file():
            found = {"Type": "podman", "Tag": _podman_image(podman) or tag}
        elif (Path(root) / ".dockerenv").exists() or tag:
            found = {"Type": "docker", "Tag": tag}
    return None if found is None else {k: v for k, v in found.items() if v}


def _podman_image(containerenv: Path) -> str | None:
    """The ``image="…"`` line of Podman's ``/run/.containerenv`` (empty when rootless)."""
    try:
        lines = containerenv.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "image" and value.strip('"'):
            return value.strip('"')
    return None


def python_environment() -> str:
    """The interpreter and environment running the app, for ``GeneratedBy.Description``."""
    if os.environ.get("CONDA_PREFIX") == sys.prefix:
        kind = "a conda environment"
    elif sys.prefix != sys.base_prefix:
        kind = "a virtual environment"
    else:
        kind = "the system Python"
    return (f"{platform.python_implementation()} {platform.python_version()} in {kind} "
            f"on {platform.system()} {platform.machine()}")


def source_datasets(bids_dir: Path, fmriprep_dir: Path) -> dict[str, Path]:
    """Input datasets by ``DatasetLinks`` name: ``fmriprep`` (what ``Sources`` URIs name),
    and ``raw`` when BIDS_DIR is a raw dataset beside it."""
    links = {"fmriprep": fmriprep_dir}
    if Path(bids_dir).resolve() != Path(fmriprep_dir).resolve():
        links["raw"] = bids_dir
    return links


def dataset_description(
    source_datasets: Mapping[str, Path | str] | None = None,
    container: Mapping[str, str] | None = None,
    output_dir: Path | str = ".",
) -> dict[str, Any]:
    """The description this version of the app writes in ``output_dir``.

    ``source_datasets`` maps a short name (used in ``bids:<name>:`` Sources URIs, e.g.
    ``fmriprep``) to the input dataset's path or URL; ``DatasetLinks`` records each path
    relative to ``output_dir`` (the dataset moves with its inputs), ``SourceDatasets``
    the ``bids:<name>:`` URI. ``container`` is e.g. ``{"Type": "docker", "Tag":
    "hemocoupling/hemocoupling:0.1.0"}`` (default: what :func:`detect_container` finds).
    """
    container = detect_container() if container is None else container
    runs_in = f"in a {container['Type']} container" if container else "outside a container"
    generated: dict[str, Any] = {
        "Name": APP_NAME, "Version": __version__, "CodeURL": CODE_URL,
        "Description": f"{APP_NAME} {__version__} run {runs_in}, {python_environment()}"}
    if container:
        generated["Container"] = dict(container)
    record: dict[str, Any] = {
        "Name": "hemocoupling: vertex-wise hemodynamic coupling maps",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
    }
    if source_datasets:
        record["DatasetLinks"] = {name: _link(where, output_dir)
                                  for name, where in source_datasets.items()}
        record["SourceDatasets"] = [{"URL": f"bids:{name}:"} for name in source_datasets]
    return record


def _link(where: Path | str, output_dir: Path | str) -> str:
    """A URL as it is; a local folder as its path relative to ``output_dir``."""
    text = str(where)
    if "://" in text:
        return text
    return os.path.relpath(Path(text).resolve(), Path(output_dir).resolve())


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
    desired = dataset_description(source_datasets, container, output_dir)
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
                *({"URL": f"bids:{name}:"} for name in new if f"bids:{name}:" not in urls),
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
    inputs: Mapping[str, Any] | None = None,
) -> Path:
    """Record that participant ``subject`` finished, with its outputs, settings and inputs.

    Write it last, after every map and the report: its presence means the participant's
    outputs are complete. ``settings`` (model, space, bootstrap …) and ``inputs`` (the
    :func:`bids_app.io.input_fingerprint.input_fingerprint` of every file read) let a
    re-run redo the work when either changed instead of skipping it. Each output's
    sha256 lets the group level check that the maps on disk are the ones recorded.
    """
    output_dir = Path(output_dir)
    root = output_dir.resolve()
    rel = sorted(Path(p).resolve().relative_to(root).as_posix() for p in outputs)
    record = {
        "Subject": subject,
        "SoftwareVersion": __version__,
        "Settings": _as_json(settings or {}),
        "Inputs": _as_json(inputs or {}),
        "Outputs": rel,
        "OutputSha256": {name: file_sha256(root / name) for name in rel},
    }
    return write_json(finished_path(output_dir, subject), record)


def _as_json(value: Mapping[str, Any]) -> Any:
    """``value`` as it reads back from JSON (tuples as lists, paths as text)."""
    return json.loads(json.dumps(dict(value), default=str))


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_finished(output_dir: Path | str, subject: str) -> dict[str, Any] | None:
    """The participant's finished record, or None when absent or unreadable."""
    try:
        record = json.loads(finished_path(output_dir, subject).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def finished_state(
    output_dir: Path | str,
    subject: str,
    settings: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> tuple[bool, str]:
    """Whether ``subject`` is finished with these settings and inputs, and in words what
    matched (when finished) or what differs (when not), for the log.

    The record must exist, list outputs that all still exist, and have been written
    with equal ``settings`` and ``inputs`` when those are given (compared as JSON).
    """
    output_dir = Path(output_dir)
    record = read_finished(output_dir, subject)
    if record is None:
        return False, "no finished record"
    gone = [rel for rel in record.get("Outputs", []) if not (output_dir / rel).is_file()]
    if gone:
        return False, f"{len(gone)} recorded output(s) missing, e.g. {gone[0]}"
    matched = []
    if settings is not None:
        if record.get("Settings") != _as_json(settings):
            changed = sorted(k for k, v in _as_json(settings).items()
                             if record.get("Settings", {}).get(k) != v)
            return False, f"settings changed ({', '.join(changed) or 'keys'})"
        matched.append("settings")
    if inputs is not None:
        wanted, recorded = _as_json(inputs), record.get("Inputs")
        if not recorded:
            return False, "the finished record does not list its inputs (older version)"
        if recorded.get("BidsDir") != wanted.get("BidsDir"):
            return False, f"BIDS_DIR changed ({recorded.get('BidsDir')} → {wanted.get('BidsDir')})"
        old, new = recorded.get("Files", {}), wanted.get("Files", {})
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        if changed:
            return False, f"{len(changed)} input file(s) changed, e.g. {changed[0]}"
        hashed = sum("Sha256" in key for key in new.values())
        how = ", ".join(part for part in (f"{hashed} by sha256" if hashed else "",
                                          f"{len(new) - hashed} by size and mtime"
                                          if len(new) > hashed else "") if part)
        matched.append(f"the same {len(new)} input files under {wanted.get('BidsDir')} "
                       f"({how})")
    return True, " and ".join(matched) or "a finished record"


def is_finished(
    output_dir: Path | str, subject: str, settings: Mapping[str, Any] | None = None
) -> bool:
    """True when ``subject`` has a finished record whose outputs all still exist (and,
    with ``settings`` given, equal settings): :func:`finished_state` without the words."""
    return finished_state(output_dir, subject, settings)[0]


def outputs_mismatch(output_dir: Path | str, subject: str, used: Sequence[str]) -> str | None:
    """Why maps ``used`` (paths relative to OUTPUT_DIR) are not the recorded result of a
    finished participant level, or None when every one is listed with its sha256.

    A failed re-run, a copy from elsewhere or a hand edit leaves maps no record vouches
    for; the group level must not average them.
    """
    output_dir = Path(output_dir)
    name = finished_path(output_dir, subject).relative_to(output_dir)
    record = read_finished(output_dir, subject)
    if record is None:
        return f"no finished record ({name}); run the participant level for sub-{subject}"
    digests = record.get("OutputSha256", {})
    for rel in used:
        if rel not in digests:
            return f"{rel} is not in {name}; rerun the participant level for sub-{subject}"
        if not (output_dir / rel).is_file() or file_sha256(output_dir / rel) != digests[rel]:
            return (f"{rel} differs from the map {name} records; rerun the participant "
                    f"level for sub-{subject}")
    return None


def clear_finished(output_dir: Path | str, subject: str) -> None:
    """Forget a finished record before a participant's outputs are replaced."""
    finished_path(output_dir, subject).unlink(missing_ok=True)
