"""Meshes for report figures, and maps drawn on them (or as histograms without one)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from bids_app.errors import HemocouplingError
from bids_app.io.templates import template_mesh
from bids_app.report.figures import Mesh, histogram_figure, surface_figure

MeshLookup = Callable[[str, str], Mesh]
"""``(space, hemi) -> (vertices (V, 3) mm, faces (F, 3))``; the midthickness to draw on."""


@dataclass(frozen=True)
class Figure:
    """A rendered figure (base64 PNG) and its caption."""

    png: str
    caption: str


def find_meshes(
    space: str,
    values: Mapping[str, np.ndarray],
    lookup: MeshLookup | None = None,
) -> tuple[dict[str, Mesh], list[str]]:
    """Meshes for each hemisphere of ``values`` whose vertex count matches, plus notes.

    ``lookup`` defaults to the template midthickness (TemplateFlow); subject spaces
    (fsnative) need one that returns the subject's meshes.
    """
    lookup = lookup or template_mesh
    meshes: dict[str, Mesh] = {}
    notes = []
    for hemi, data in values.items():
        try:
            mesh = lookup(space, hemi)
        except HemocouplingError as exc:
            notes.append(f"No {space} hemi-{hemi} mesh to draw on ({exc}); histograms shown.")
            continue
        if len(mesh[0]) != len(data):
            notes.append(
                f"The {space} hemi-{hemi} mesh has {len(mesh[0])} vertices, the maps "
                f"{len(data)}; histograms shown."
            )
            continue
        meshes[hemi] = mesh
    return meshes, notes


def map_figure(
    meshes: Mapping[str, Mesh],
    values: Mapping[str, np.ndarray],
    title: str,
    units: str,
    cmap: str = "viridis",
    symmetric: bool = False,
    limits: tuple[float, float] | None = None,
) -> Figure:
    """Surface views when every hemisphere has a mesh, else a histogram per hemisphere."""
    finite = sum(int(np.isfinite(v).sum()) for v in values.values())
    caption = f"{title} ({units}); {finite} vertices with a value, blank where none."
    if values and all(h in meshes for h in values):
        png = surface_figure(meshes, values, title, units, cmap, symmetric, limits)
    else:
        png = histogram_figure(values, title, units)
    return Figure(png, caption)
