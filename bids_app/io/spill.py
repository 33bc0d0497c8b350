"""Disk-backed participant × vertex arrays, so the group level's memory does not grow with N.

Each participant's row is written once as it is read; the statistics then read blocks of
vertices (all participants, a few thousand vertices) back, here or in Dask workers that see
the same folder (:class:`SpillReader`). The files live in a temporary folder removed when
the store is closed.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SpillReader:
    """Read-only access to a store's files by name: small and picklable, so a task on
    another process or machine (with the folder on a shared filesystem) can read a block."""

    folder: Path
    rows: int
    columns: int

    def read(self, name: str, rows: slice | np.ndarray, columns: slice) -> np.ndarray:
        """A float32 copy of ``name[rows, columns]``."""
        path = self.folder / f"{name}.f32"
        array = np.memmap(path, dtype=np.float32, mode="r", shape=(max(self.rows, 1),
                                                                    self.columns))
        return np.array(array[rows, columns])


class SpillStore:
    """Named float32 arrays of shape (rows, columns) memory-mapped from a temporary folder."""

    def __init__(self, rows: int, columns: int, folder: Path | str | None = None) -> None:
        self.rows, self.columns = rows, columns
        if folder is not None:
            Path(folder).mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix="group_", dir=folder))
        self._arrays: dict[str, np.memmap] = {}

    def array(self, name: str) -> np.memmap:
        """The array ``name`` (created NaN-filled on first use)."""
        if name not in self._arrays:
            arr = np.memmap(self._dir / f"{name}.f32", dtype=np.float32, mode="w+",
                            shape=(max(self.rows, 1), self.columns))
            arr[:] = np.nan
            self._arrays[name] = arr
        return self._arrays[name]

    def reader(self) -> SpillReader:
        """A reader of what has been written so far (flushed to the files first)."""
        for array in self._arrays.values():
            array.flush()
        return SpillReader(self._dir, self.rows, self.columns)

    def close(self) -> None:
        self._arrays.clear()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> SpillStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
