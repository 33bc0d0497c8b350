"""Atomic file writes: a reader never sees a half-written output.

Each writer fills a hidden temporary file in the destination folder (same file system,
name starting with "." so BIDS globs and pybids skip it) and renames it over the target
with :func:`os.replace`, which is atomic on POSIX and Windows.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from bids_app.errors import OutputError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary name keeps the target's full suffix (e.g. ``.func.gii``,
    ``.nii.gz``) because some writers (nibabel) choose the format from it. On error
    the temporary file is removed and the target is left untouched.
    """
    target = Path(path)
    # Not created here, so the writer creates it with the user's umask permissions.
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}"
                           f"{_suffix(target)}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        _discard(tmp)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}; "
                          "choose a writable output directory") from exc
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    with suppress(OSError):
        tmp.unlink(missing_ok=True)


def _suffix(target: Path) -> str:
    """Every dot-suffix of the name (".func.gii", ".dtseries.nii", ".json")."""
    return "".join(target.suffixes[-2:]) if len(target.suffixes) > 1 else target.suffix


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Run ``writer(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write raw bytes."""
    return write_with(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj: object) -> Path:
    """Atomically write JSON (indented, keys in insertion order, trailing newline; NaN and
    infinities as null, since JSON has neither)."""
    return write_text(path, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def jsonable(value: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays → Python, NaN/inf → None (JSON has neither)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def save_image(path: str | os.PathLike, image: object) -> Path:
    """Atomically save a nibabel image (GIFTI, CIFTI-2, NIfTI); format from the suffix."""
    import nibabel as nib

    return write_with(path, lambda tmp: nib.save(image, tmp))
