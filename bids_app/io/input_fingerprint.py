"""What a participant's result was computed from: every input file with its size and hash.

The finished record (:func:`bids_app.io.dataset_description.mark_finished`) stores this
fingerprint, so a corrected sidecar, a re-exported series or another BIDS_DIR makes a
finished participant be redone instead of skipped. Files up to ``HASHED_BYTES`` (JSON,
TSV, meshes, small series) are keyed on their sha256, so a copy or a ``touch`` does not
count as a change; larger series on size and modification time, to keep the check of a
finished participant cheap on full-resolution data.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bids_app.errors import InputValidationError
from bids_app.io.bids import SurfaceRun
from bids_app.io.dataset_description import file_sha256

HASHED_BYTES = 16 * 1024 * 1024


def files_read(run: SurfaceRun) -> list[Path]:
    """Every file the participant workflow reads for ``run``."""
    found = [*run.sources, *run.sidecars, *run.meshes.values()]
    if run.confounds is not None and run.confounds.with_suffix(".json").is_file():
        found.append(run.confounds.with_suffix(".json"))  # older aCompCor masks
    return list(dict.fromkeys(found))


def file_key(path: Path) -> dict[str, Any]:
    """Size plus sha256 (small files) or modification time in ns (large ones)."""
    try:
        stat = path.stat()
        if stat.st_size <= HASHED_BYTES:
            return {"Size": stat.st_size, "Sha256": file_sha256(path)}
    except OSError as err:
        raise InputValidationError(f"{path}: cannot be read ({err.strerror}); check that the "
                                   "file exists and is readable") from err
    return {"Size": stat.st_size, "MtimeNs": stat.st_mtime_ns}


def input_fingerprint(runs: Iterable[SurfaceRun], bids_dir: Path) -> dict[str, Any]:
    """``{"BidsDir": ..., "Files": {path: key}}``, paths relative to BIDS_DIR when inside
    it (--derivatives may point elsewhere: then absolute)."""
    root = Path(bids_dir).resolve()
    files = {}
    for run in runs:
        for path in files_read(run):
            resolved = Path(path).resolve()
            name = (resolved.relative_to(root).as_posix() if resolved.is_relative_to(root)
                    else resolved.as_posix())
            files[name] = file_key(resolved)
    return {"BidsDir": str(root), "Files": dict(sorted(files.items()))}
