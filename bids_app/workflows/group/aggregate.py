"""Every output of one group of comparable maps, reading one participant at a time.

Participant maps are spilled to disk as they are read (estimates, latent estimates and
variances, repeated maps), so memory is set by the vertex count and
``GroupOptions.block_values``, not by the number of participants; the vertex-wise
statistics then run block by block, here or on a Dask cluster.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_app import __version__
from bids_app.group.blocks import BlockRunner
from bids_app.group.latent import analysed_params
from bids_app.group.vertexwise import (
    GROUP_STATS,
    estimate_name,
    group_stats,
    latent_names,
)
from bids_app.io.dataset_description import outputs_mismatch
from bids_app.io.derivatives import MapFile, derivative_name
from bids_app.io.spill import SpillStore
from bids_app.io.templates import Parcellation, templateflow_parcellations
from bids_app.models import DERIVED_UNITS
from bids_app.report.surfaces import MeshLookup
from bids_app.workflows.group.exclusions import participant_row
from bids_app.workflows.group.group_model import random_effects_outputs
from bids_app.workflows.group.layout import VertexLayout
from bids_app.workflows.group.modes import modes_outputs
from bids_app.workflows.group.options import GroupOptions
from bids_app.workflows.group.parcels import parcel_table
from bids_app.workflows.group.participant_maps import (
    SubjectMaps,
    chosen_fits,
    fits,
    latent_row,
    reference_lengths,
    subject_maps,
)
from bids_app.workflows.group.retest import Retest, common_repeats, retest_outputs
from bids_app.workflows.group.selection import GroupKey
from bids_app.workflows.group.writing import sidecar, write_group_maps, write_tsv

LOGGER = logging.getLogger(__name__)

_STAT_TEXT = {
    "mean": "Across-participant mean of the participant MAP estimates of {param}.",
    "sd": "Across-participant standard deviation (ddof 1) of the MAP estimates of {param}.",
    "n": "Number of participants with an estimate of {param} at the vertex.",
}


@dataclass
class GroupResult:
    """Aggregates of one group and the participant rows behind them."""

    key: GroupKey
    included: list[SubjectMaps] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)


def _usable_parcellations(key: GroupKey, lengths: Mapping[str, int],
                          parcellations: Mapping[str, Parcellation] | None
                          ) -> dict[str, Parcellation]:
    """The parcellations (default: TemplateFlow's for the space) that match the mesh."""
    if parcellations is None:
        parcellations = templateflow_parcellations(key.space, sorted(lengths))
    usable = {
        atlas: parcellation
        for atlas, parcellation in sorted(parcellations.items())
        if {h: len(parcellation[h][0]) for h in parcellation} == lengths
    }
    for atlas in sorted(set(parcellations) - set(usable)):
        LOGGER.warning("parcellation %s does not match the %s mesh; skipped", atlas, key.space)
    return usable


def _summary_outputs(output_dir: Path, key: GroupKey, param: str,
                     stats: Mapping[str, Mapping[str, np.ndarray]],
                     record: Mapping[str, Any]) -> list[Path]:
    """Mean/SD/N maps of one parameter (per hemisphere, or one CIFTI) + sidecars."""
    sidecars = {
        stat: sidecar(param, stat,
                      "participants" if stat == "n" else DERIVED_UNITS[key.model][param],
                      _STAT_TEXT[stat].format(param=param), record)
        for stat in GROUP_STATS
    }
    masks = {h: stats["n"][h] > 0 for h in stats["n"]}
    return write_group_maps(output_dir, key, param, dict(stats), sidecars, masks)


def aggregate_group(
    output_dir: Path,
    key: GroupKey,
    subjects: Mapping[str, list[MapFile]],
    parcellations: Mapping[str, Parcellation] | None = None,
    options: GroupOptions | None = None,
    meshes: MeshLookup | None = None,
    runner: BlockRunner | None = None,
) -> GroupResult:
    """Every group output of one group (module docstring); ``runner`` computes the vertex
    blocks (default: in this process)."""
    options = options or GroupOptions()
    runner = runner or BlockRunner()
    result = GroupResult(key)
    params = list(DERIVED_UNITS[key.model])
    analysed = analysed_params(key.model)
    estimates = {
        sub: [f for f in files if f.entities["stat"] == "estimate"]
        for sub, files in sorted(subjects.items())
    }
    lengths = reference_lengths(estimates)
    layout = VertexLayout(lengths)
    usable = _usable_parcellations(key, lengths, parcellations)
    repeats = common_repeats(subjects)
    retest = Retest.start(repeats, params, layout, usable) if repeats else None
    parcel_rows: dict[str, list[pd.DataFrame]] = defaultdict(list)
    with SpillStore(len(subjects), layout.total, options.work_dir) as store:
        for sub, files in sorted(subjects.items()):
            maps = subject_maps(sub, estimates[sub], output_dir)
            # only maps a finished record vouches for (a failed re-run may leave others)
            unvouched = outputs_mismatch(output_dir, maps.subject,
                                         [s.removeprefix("bids::") for s in maps.sources])
            if unvouched:
                LOGGER.warning("sub-%s excluded from group %s: %s", maps.subject, key.label,
                               unvouched)
            chosen = list(chosen_fits(fits(files)).values())
            row = participant_row(key, maps, chosen, unvouched, lengths,
                                  options.include_flagged)
            result.rows.append(row)
            if row["status"] == "excluded":
                continue
            slot = len(result.included)
            for param in params:
                store.array(estimate_name(param))[slot] = layout.join(maps.values[param])
            for param in analysed:
                y, v = latent_row(key.model, param, chosen, layout)
                latent, variance = latent_names(param)
                store.array(latent)[slot] = y
                store.array(variance)[slot] = v
                if not np.isfinite(v).any():
                    row["reason"] += (f"; no {param} SE or interval maps (no bootstrap): not in "
                                      "the random-effects maps")
            for atlas, parcellation in usable.items():
                parcel_rows[atlas].append(parcel_table([maps], params, parcellation))
            if retest is not None:
                retest.add(files, layout, store)
            maps.values = {}  # spilled: keep memory independent of the number of participants
            result.included.append(maps)
        if not result.included:
            LOGGER.warning("group %s: no participant could be included", key.label)
            return result
        tables = []
        for atlas, frames in parcel_rows.items():
            ents = {**key.entities, "seg": atlas}
            path = Path(output_dir) / derivative_name(ents, "boldparcels", ".tsv")
            tables.append(path.name)
            result.outputs.append(write_tsv(path, pd.concat(frames, ignore_index=True)))
        labels = [m.subject for m in result.included]
        record = {
            "Model": key.model,
            "Participants": [f"sub-{s}" for s in labels],
            "NParticipants": len(labels),
            "ParcelTables": tables,
            "ParcelTablesNote": None
            if tables
            else (
                f"No parcellation for space {key.space} was available through TemplateFlow "
                "(offline or none published); per-parcel tables were skipped."
            ),
            "Sources": [s for m in result.included for s in m.sources],
            "SoftwareVersion": __version__,
        }
        reader = store.reader()
        blocks = layout.blocks(len(labels), options.block_values)
        for param in params:
            stats = {stat: layout.split(values) for stat, values in
                     group_stats(runner, reader, param, len(labels), blocks).items()}
            result.outputs += _summary_outputs(output_dir, key, param, stats, record)
        result.outputs += random_effects_outputs(
            output_dir, key, runner, reader, layout, blocks, labels, result.rows, options,
            record)
        result.outputs += modes_outputs(output_dir, key, reader, layout, labels,
                                        options.n_modes, meshes, record)
        if retest is not None and retest.rows >= 2:
            result.outputs += retest_outputs(output_dir, key, retest, runner, store, layout,
                                             record, options.block_values)
    return result
