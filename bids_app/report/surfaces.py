"""Meshes and their shading for report figures, and maps drawn on them (or as
histograms without one)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_app.errors import HemocouplingError
from bids_app.io.templates import template_mesh, template_shape
from bids_app.prior import fem_matrices
from bids_app.report.figures import Figure, Mesh, histogram_figure, surface_figure

MeshLookup = Callable[[str, str], Mesh]
"""``(space, hemi) -> (vertices (V, 3) mm, faces (F, 3))``; the midthickness to draw on."""
ShadingLookup = Callable[[str, str, Mesh], np.ndarray]
"""``(space, hemi, mesh) -> (V,)`` sulcal depth or curvature, positive in sulci."""
_SHAPES = ("sulc", "curv")


def mesh_curvature(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Mean curvature of a mesh, positive in sulci (concave), from the cotangent Laplacian
    the prior uses: Δx = −2H·n, with n the outward vertex normal. Shades any mesh when
    no ``sulc``/``curv`` file exists."""
    vertices = np.asarray(vertices, dtype=float)
    fem = fem_matrices(vertices, np.asarray(faces))
    kept = vertices[fem.vertex_index]
    laplacian = -(fem.G @ kept) / fem.C[:, None]
    a, b, c = (kept[fem.faces[:, k]] for k in range(3))
    face_normals = np.cross(b - a, c - a)
    normals = np.zeros_like(kept)
    for k in range(3):
        np.add.at(normals, fem.faces[:, k], face_normals)
    if np.sum(normals * (kept - kept.mean(axis=0))) < 0:  # faces wound inwards
        normals = -normals
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    out = np.zeros(len(vertices))
    out[fem.vertex_index] = np.sum(laplacian * normals, axis=1)
    return out


def _read_shape(path: Path, n_vertices: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    data = np.asarray(nib.load(path).darrays[0].data, dtype=float)
    return data if len(data) == n_vertices else None


def surface_shading(space: str, hemi: str, mesh: Mesh, mesh_path: Path | None = None
                    ) -> np.ndarray:
    """Sulcal depth or curvature to shade ``mesh`` with: the subject's ``sulc``/``curv``
    beside its midthickness (fMRIPrep anat/), else the template's (TemplateFlow), else the
    mesh's own curvature. Files whose sign convention differs (HCP's fsLR ``sulc``) are
    flipped to agree with the mesh: positive in sulci."""
    curvature = mesh_curvature(*mesh)
    n = len(mesh[0])
    found = None
    for shape in _SHAPES:
        if mesh_path is not None and "_midthickness" in mesh_path.name:
            found = _read_shape(mesh_path.with_name(
                mesh_path.name.split("_midthickness")[0] + f"_{shape}.shape.gii"), n)
        if found is None:
            try:
                found = template_shape(space, hemi, shape)
            except (HemocouplingError, OSError, ValueError):
                found = None
            found = found if found is not None and len(found) == n else None
        if found is not None:
            break
    if found is None:
        return curvature
    return found if np.corrcoef(found, curvature)[0, 1] >= 0 else -found


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
    shading: Mapping[str, np.ndarray] | None = None,
) -> Figure:
    """Surface views when every hemisphere has a mesh, else a histogram per hemisphere."""
    finite = sum(int(np.isfinite(v).sum()) for v in values.values())
    caption = (f"{title} ({units}); {finite} vertices with a value; the medial wall and "
               "vertices not estimated are flat grey.")
    if values and all(h in meshes for h in values):
        return Figure(surface_figure(meshes, values, title, units, cmap, symmetric, limits,
                                     shading), caption)
    return Figure(histogram_figure(values, f"{title} (histogram: no mesh to draw on)", units),
                  caption, wide=False)
