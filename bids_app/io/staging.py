"""A participant's new result is written aside, then swapped in: old result or new, never a mix.

Rule for a re-run (``--overwrite``, or changed settings or inputs): the participant is
fitted and its maps, sidecars and report are written to a hidden staging folder in
OUTPUT_DIR (same file system, so moving is a rename). Only when all of it is there is
the previous result removed (finished record first, then every file it lists and every
map of the participant) and the staged files renamed into place; the caller then writes
the new finished record. A failure before the swap (bad input, a fitting error,
SIGTERM) removes the staging folder and leaves the previous complete result untouched.
A crash during the swap itself (a few renames) can leave new files without a finished
record, which the group level does not include and the next run redoes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from bids_app.errors import OutputError
from bids_app.io.dataset_description import clear_finished, read_finished
from bids_app.io.derivatives import find_maps, sidecar_path


def staging_folder(output_dir: Path | str, subject: str) -> Path:
    """``OUTPUT_DIR/.staging_sub-<label>`` (hidden: never globbed as participant output)."""
    return Path(output_dir) / f".staging_sub-{subject}"


@contextlib.contextmanager
def staged(output_dir: Path | str, subject: str) -> Iterator[Path]:
    """Yield an empty staging folder for ``subject``; it is removed however the block ends.

    Call it under :func:`bids_app.io.participant_lock.participant_lock`: a folder left by
    a killed job is emptied first.
    """
    folder = staging_folder(output_dir, subject)
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {exc.strerror}; choose a writable "
                          "OUTPUT_DIR") from exc
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def previous_outputs(output_dir: Path, subject: str) -> list[Path]:
    """Files of the participant's previous result: those its finished record lists and
    every parameter map (with sidecar) found for it, recorded or not."""
    record = read_finished(output_dir, subject) or {}
    found = [output_dir / rel for rel in record.get("Outputs", [])]
    for item in find_maps(output_dir, subject):
        found += [item.path, sidecar_path(item.path)]
    return list(dict.fromkeys(found))


def promote(folder: Path, output_dir: Path | str, subject: str) -> list[Path]:
    """Replace the participant's previous result by everything staged in ``folder``;
    return the new files' paths in OUTPUT_DIR (for the finished record)."""
    output_dir = Path(output_dir)
    staged_files = sorted(p for p in folder.rglob("*") if p.is_file())
    clear_finished(output_dir, subject)  # from here on no record vouches for the files
    try:
        for path in previous_outputs(output_dir, subject):
            path.unlink(missing_ok=True)
        moved = []
        for path in staged_files:
            target = output_dir / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            moved.append(target)
    except OSError as exc:
        raise OutputError(f"cannot move the new outputs of sub-{subject} into {output_dir}: "
                          f"{exc.strerror or exc}; check the OUTPUT_DIR permissions") from exc
    return moved
