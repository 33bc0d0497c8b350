"""Both hemispheres on one vertex axis, as the group statistics and the store see them."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class VertexLayout:
    """Hemispheres L then R joined on one axis; blocks of it sized by a value budget."""

    def __init__(self, lengths: Mapping[str, int]) -> None:
        self.lengths = dict(sorted(lengths.items()))
        edges = np.cumsum([0, *self.lengths.values()])
        self.slices = {
            h: slice(int(a), int(b))
            for h, a, b in zip(self.lengths, edges[:-1], edges[1:], strict=True)
        }
        self.total = int(edges[-1])

    def join(self, per_hemi: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(per_hemi[h], float) for h in self.lengths])

    def split(self, values: np.ndarray) -> dict[str, np.ndarray]:
        return {h: np.asarray(values[s], float) for h, s in self.slices.items()}

    def blocks(self, rows: int, budget: int) -> list[slice]:
        """Consecutive vertex slices of about ``budget`` values over ``rows`` participants."""
        size = int(np.clip(budget // max(rows, 1), 256, max(self.total, 1)))
        return [slice(a, min(a + size, self.total)) for a in range(0, self.total, size)]
