"""Population modes of a group's maps (:mod:`bids_app.group.modes`): the mesh mass that
weights them, participant batches read from the store, mode maps and a scores table."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_app.errors import HemocouplingError
from bids_app.group.latent import analysed_params
from bids_app.group.modes import population_modes
from bids_app.group.vertexwise import estimate_name
from bids_app.io.derivatives import derivative_name, sidecar_path, write_json
from bids_app.io.spill import SpillReader
from bids_app.models import DERIVED_UNITS
from bids_app.prior.mesh import fem_matrices
from bids_app.report.surfaces import MeshLookup
from bids_app.workflows.group.layout import VertexLayout
from bids_app.workflows.group.selection import GroupKey
from bids_app.workflows.group.writing import sidecar, write_group_maps, write_tsv

LOGGER = logging.getLogger(__name__)

MODES_SUFFIX = "boldmodes"
"""Suffix of the population-mode scores table (one row per participant)."""


def _mass(space: str, layout: VertexLayout, meshes: MeshLookup | None
          ) -> tuple[np.ndarray, str]:
    """Lumped FEM mass per vertex (mm²) of the space's meshes, or 1 with a note."""
    from bids_app.io.templates import template_mesh

    lookup = meshes or template_mesh
    pieces = []
    for hemi, n in layout.lengths.items():
        try:
            vertices, faces = lookup(space, hemi)
        except (HemocouplingError, OSError) as exc:
            return np.ones(layout.total), f"no {space} mesh ({exc}); vertices weighted equally"
        if len(vertices) != n:
            return np.ones(layout.total), f"no {space} mesh matches; vertices weighted equally"
        fem = fem_matrices(np.asarray(vertices, float), np.asarray(faces))
        pieces.append(fem.expand(fem.C, fill=0.0))
    return np.concatenate(pieces), "lumped FEM mass of the template midthickness (mm²)"


def modes_outputs(
    output_dir: Path,
    key: GroupKey,
    reader: SpillReader,
    layout: VertexLayout,
    subjects: Sequence[str],
    n_modes: int,
    meshes: MeshLookup | None,
    record: Mapping[str, Any],
) -> list[Path]:
    """Population modes of each model parameter's maps over the included ``subjects``
    (store order): mode maps and a scores table. Participants are read in batches, so
    memory does not grow with their number."""
    n_in = len(subjects)
    n_components = min(n_modes, n_in - 1)
    if n_in < 3 or n_components < 1:
        return []
    mass, mass_note = _mass(key.space, layout, meshes)
    batch = max(n_components, 32)  # participants per IncrementalPCA step: bounds memory
    starts = list(range(0, n_in, batch))
    if len(starts) > 1 and n_in - starts[-1] < n_components:
        starts.pop()  # the short tail joins the previous batch
    bounds = list(zip(starts, [*starts[1:], n_in], strict=True))
    outputs: list[Path] = []
    for param in analysed_params(key.model):

        def batches(param=param):
            return (np.asarray(reader.read(estimate_name(param), slice(a, b), slice(None)),
                               float) for a, b in bounds)

        modes = population_modes(batches, mass, n_components)
        if modes is None:
            LOGGER.info("group %s: too few common vertices for population modes", key.label)
            continue
        names = [f"mode{k + 1}" for k in range(n_components)]
        unit = DERIVED_UNITS[key.model][param]
        mode_record = {
            **record,
            "ExplainedVarianceRatio": modes.explained_ratio.tolist(),
            "Weights": mass_note,
        }
        maps = {name: layout.split(modes.modes[k]) for k, name in enumerate(names)}
        sidecars = {
            name: sidecar(
                param, name, "arbitrary",
                f"Population mode {k + 1} of {param} (functional PCA weighted by the mesh "
                f"mass, unit mean square over the surface); explains "
                f"{modes.explained_ratio[k]:.1%} of the between-participant variance.",
                mode_record,
            )
            for k, name in enumerate(names)
        }
        masks = {h: np.isfinite(m) for h, m in layout.split(modes.modes[0]).items()}
        outputs += write_group_maps(output_dir, key, param, maps, sidecars, masks, "modes")
        scores = pd.DataFrame(modes.scores, columns=names)
        scores.insert(0, "participant_id", [f"sub-{s}" for s in subjects])
        ents = {**key.entities, "desc": "modes", "param": param}
        path = Path(output_dir) / derivative_name(ents, MODES_SUFFIX, ".tsv")
        outputs.append(write_tsv(path, scores))
        write_json(sidecar_path(path), {
            "participant_id": {"Description": "Participant label."},
            **{name: {"Description": f"Score on population mode {k + 1}: mass-weighted "
                      f"projection of the participant's {param} map minus the mean, per unit "
                      "surface area (map ≈ mean + Σ score × mode).", "Units": unit}
               for k, name in enumerate(names)},
            "ExplainedVarianceRatio": modes.explained_ratio.tolist(),
        })
    return outputs
