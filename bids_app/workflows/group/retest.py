"""Test–retest reliability of a group: participants' repeated maps spilled to the store
(vertex ICC computed block by block) and their parcel means accumulated as they are read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_app.group.blocks import BlockRunner
from bids_app.group.reliability import ReliabilityAccumulator
from bids_app.group.vertexwise import retest_names, retest_stats
from bids_app.io.derivatives import MapFile, derivative_name
from bids_app.io.spill import SpillStore
from bids_app.io.templates import Parcellation
from bids_app.models import DERIVED_UNITS
from bids_app.workflows.group.layout import VertexLayout
from bids_app.workflows.group.parcels import parcel_index, parcel_means
from bids_app.workflows.group.participant_maps import read_joined, repeat_fits
from bids_app.workflows.group.selection import GroupKey
from bids_app.workflows.group.writing import sidecar, write_group_maps, write_tsv

_RETEST_TEXT = {
    "icc": "ICC(3,1) (two-way mixed, consistency) of {param} over {k} repeats",
    "cv": "Within-participant coefficient of variation of {param} (RMS within SD / mean)",
    "withinsd": "Within-participant SD of {param} over repeats (root mean square)",
    "betweensd": "Between-participant SD of {param} (from the ICC mean squares)",
    "meanse": "Root mean square of the participants' own SEs of {param}, beside the "
    "within-participant SD",
    "n": "Participants with all {k} repeats at the vertex",
}


def common_repeats(subjects: Mapping[str, list[MapFile]]) -> int:
    """The number of repeats most participants with repeats have (0 when none repeats)."""
    counts = Counter(len(repeat_fits(files)) for files in subjects.values())
    return max((k for k, c in counts.items() if k >= 2), key=lambda k: (counts[k], -k),
               default=0)


@dataclass
class Retest:
    """Test–retest of one group: ``repeats`` maps per participant; vertex values go to the
    store (``rows`` participants so far), parcel means to accumulators per atlas."""

    repeats: int
    params: Sequence[str]
    parcels: dict[str, tuple[np.ndarray, list[tuple[str, str, int]], dict]] = field(
        default_factory=dict)
    rows: int = 0

    @classmethod
    def start(cls, repeats: int, params: Sequence[str], layout: VertexLayout,
              parcellations: Mapping[str, Parcellation]) -> Retest:
        retest = cls(repeats, params)
        for atlas, parcellation in parcellations.items():
            index, names = parcel_index(parcellation, layout)
            accumulators = {p: ReliabilityAccumulator(repeats, len(names)) for p in params}
            retest.parcels[atlas] = (index, names, accumulators)
        return retest

    def add(self, files: list[MapFile], layout: VertexLayout, store: SpillStore) -> bool:
        """Add one participant's first ``repeats`` repeated maps; False when it has too few
        or a repeat lacks a parameter."""
        fits = repeat_fits(files)[: self.repeats]
        if len(fits) < self.repeats:
            return False
        estimates = {p: [read_joined(f, "estimate", p, layout) for f in fits]
                     for p in self.params}
        if any(e is None for per in estimates.values() for e in per):
            return False
        for param in self.params:
            ses = [read_joined(f, "se", param, layout) for f in fits]
            se = None if any(s is None for s in ses) else np.stack(ses)
            est = np.stack(estimates[param])
            for j in range(self.repeats):
                est_name, se_name = retest_names(param, j)
                store.array(est_name)[self.rows] = est[j]
                store.array(se_name)[self.rows] = np.nan if se is None else se[j]
            for index, names, accumulators in self.parcels.values():
                means = parcel_means(est, index, len(names))
                se_means = None if se is None else parcel_means(se, index, len(names))
                accumulators[param].add(means, se_means)
        self.rows += 1
        return True


def retest_outputs(
    output_dir: Path,
    key: GroupKey,
    retest: Retest,
    runner: BlockRunner,
    store: SpillStore,
    layout: VertexLayout,
    record: Mapping[str, Any],
    block_values: int,
) -> list[Path]:
    """Vertex maps and per-parcel tables of test–retest reliability."""
    outputs: list[Path] = []
    units = DERIVED_UNITS[key.model]
    rec = {**record, "RetestParticipants": retest.rows, "Repeats": retest.repeats}
    blocks = layout.blocks(retest.rows * retest.repeats, block_values)
    reader = store.reader()
    for param in retest.params:
        values = retest_stats(runner, reader, param, retest.repeats, retest.rows, blocks)
        maps = {stat: layout.split(v) for stat, v in values.items()}
        masks = {h: m > 0 for h, m in maps["n"].items()}
        sidecars = {
            stat: sidecar(
                param, stat,
                {"icc": "arbitrary", "cv": "arbitrary", "n": "participants"}.get(stat,
                                                                                  units[param]),
                _RETEST_TEXT[stat].format(param=param, k=retest.repeats) + ".", rec)
            for stat in values
        }
        outputs += write_group_maps(output_dir, key, param, maps, sidecars, masks, "retest")
    for atlas, (_, names, accumulators) in retest.parcels.items():
        frames = []
        for param, accumulator in accumulators.items():
            frame = pd.DataFrame(names, columns=["hemi", "parcel", "label"])
            frame.insert(3, "param", param)
            for stat, values in accumulator.result().items():
                frame[stat] = values
            frames.append(frame)
        ents = {**key.entities, "seg": atlas, "desc": "retest"}
        path = Path(output_dir) / derivative_name(ents, "boldparcels", ".tsv")
        outputs.append(write_tsv(path, pd.concat(frames, ignore_index=True)))
    return outputs
