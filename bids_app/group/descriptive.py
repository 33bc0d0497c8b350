"""Per-vertex mean, SD and N over participants, with absent values (NaN) left out."""

from __future__ import annotations

import numpy as np


def nanmean(stack: np.ndarray) -> np.ndarray:
    """Mean over axis 0 of finite values; NaN where none (no warning)."""
    finite = np.isfinite(stack)
    count = finite.sum(axis=0)
    total = np.where(finite, stack, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def vertex_stats(stack: np.ndarray) -> dict[str, np.ndarray]:
    """Per-vertex mean, SD (ddof 1; NaN below 2 participants) and N over axis 0."""
    finite = np.isfinite(stack)
    n = finite.sum(axis=0)
    mean = nanmean(stack)
    centred = np.where(finite, stack - mean, 0.0)
    sd = np.where(n >= 2, np.sqrt((centred**2).sum(axis=0) / np.maximum(n - 1, 1)), np.nan)
    return {"mean": mean, "sd": sd, "n": n.astype(float)}
