"""Content hashes of arrays, for cache keys that change whenever an input does."""

from __future__ import annotations

import hashlib

import numpy as np


def array_digest(x: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    x = np.ascontiguousarray(x)
    h = hashlib.sha256(f"{x.dtype.str}{x.shape}".encode())
    h.update(memoryview(x).cast("B"))
    return h.hexdigest()
