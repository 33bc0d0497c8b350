"""Finite-element matrices of a triangle mesh: lumped mass C and cotangent stiffness G.

The SPDE prior (docs/method.md §4) is built from these two matrices on the observed cortex.
Piecewise-linear elements give G_ij = ∫ ∇φ_i · ∇φ_j (the cotangent formula) and the
barycentric lumped mass C_ii = Σ_{faces ∋ i} area / 3, so Σ C = surface area (mm²).

Two kinds of vertices carry no information and would make C singular; both are
**dropped** from the kept set (their maps stay NaN downstream):

- vertices outside ``mask`` (e.g. the medial wall); every face touching one is dropped,
  so the kept surface has a free (Neumann) boundary there;
- vertices left without any face once degenerate (zero-area) triangles and masked faces
  are removed, including vertices no face ever referenced.

Degenerate triangles (area ≤ 1e-12 × their summed squared edge lengths) have no
defined cotangents and contribute nothing to a piecewise-linear integral, so they are
dropped too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from bids_app.errors import InputValidationError

# A triangle counts as degenerate below this ratio of twice its area to Σ|edge|².
_DEGENERATE_RATIO = 1e-12


@dataclass(frozen=True)
class FEM:
    """FEM matrices on the kept vertices of a mesh.

    Attributes
    ----------
    C : ndarray, shape (n_kept,)
        Lumped (barycentric) mass in mm², the diagonal of the mass matrix.
    G : scipy.sparse.csc_matrix, shape (n_kept, n_kept)
        Cotangent stiffness (dimensionless), symmetric positive semi-definite, G·1 = 0.
    vertex_index : ndarray of int, shape (n_kept,)
        Index in the input mesh of each kept vertex (kept order = increasing index).
    n_input_vertices : int
        Number of vertices of the input mesh.
    faces : ndarray of int, shape (n_faces, 3)
        Kept, non-degenerate faces in kept-vertex numbering.
    """

    C: np.ndarray
    G: sp.csc_matrix
    vertex_index: np.ndarray
    n_input_vertices: int
    faces: np.ndarray

    @property
    def n_vertices(self) -> int:
        """Number of kept vertices (the size of the prior)."""
        return int(self.C.shape[0])

    @property
    def area(self) -> float:
        """Surface area of the kept mesh in mm²."""
        return float(self.C.sum())

    def restrict(self, values: np.ndarray) -> np.ndarray:
        """Rows of a full-mesh array (vertices first) at the kept vertices."""
        return np.asarray(values)[self.vertex_index]

    def expand(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """A kept-vertex array put back on the full mesh, ``fill`` elsewhere."""
        values = np.asarray(values)
        out = np.full((self.n_input_vertices, *values.shape[1:]), fill, dtype=float)
        out[self.vertex_index] = values
        return out

    def edges(self) -> np.ndarray:
        """Unique undirected edges (i < j) of the kept mesh, kept numbering."""
        pairs = np.concatenate([self.faces[:, [0, 1]], self.faces[:, [1, 2]],
                                self.faces[:, [2, 0]]])
        return np.unique(np.sort(pairs, axis=1), axis=0)


def fem_matrices(vertices: np.ndarray, faces: np.ndarray,
                 mask: np.ndarray | None = None) -> FEM:
    """Lumped mass and cotangent stiffness of a triangle mesh, restricted to ``mask``.

    Parameters
    ----------
    vertices : ndarray, shape (n_vertices, 3)
        Coordinates in mm.
    faces : ndarray of int, shape (n_faces, 3)
        Triangles as vertex indices.
    mask : ndarray of bool, shape (n_vertices,), optional
        True where the vertex belongs to the modelled cortex (False on the medial wall).

    Returns
    -------
    FEM
        See the module docstring for which vertices are kept.
    """
    vertices = np.asarray(vertices, dtype=float)
    faces = np.asarray(faces)
    n_in = vertices.shape[0]
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise InputValidationError(
            "mesh must have vertices (N, 3) and triangular faces (M, 3); "
            "load a triangle surface (e.g. *_midthickness.surf.gii)")
    if faces.size and (faces.min() < 0 or faces.max() >= n_in):
        raise InputValidationError(
            "mesh faces index vertices that do not exist; check the surface file")
    if not np.all(np.isfinite(vertices)):
        raise InputValidationError("mesh vertices contain NaN or Inf; check the surface file")
    faces = faces.astype(np.int64)

    keep_face = _non_degenerate(vertices, faces)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (n_in,):
            raise InputValidationError(
                f"vertex mask has shape {mask.shape}, expected ({n_in},); "
                "use a mask with one entry per mesh vertex")
        keep_face &= mask[faces].all(axis=1)
    faces = faces[keep_face]

    vertex_index = np.unique(faces)
    if vertex_index.size == 0:
        raise InputValidationError("no non-degenerate triangle left after masking; "
                                   "check the mesh and the vertex mask")
    new_index = np.full(n_in, -1, dtype=np.int64)
    new_index[vertex_index] = np.arange(vertex_index.size)
    faces = new_index[faces]
    points = vertices[vertex_index]

    C, G = _assemble(points, faces)
    return FEM(C=C, G=G, vertex_index=vertex_index, n_input_vertices=n_in, faces=faces)


def mesh_prior_support(vertices: np.ndarray, faces: np.ndarray, observed: np.ndarray,
                       n_vertices: int) -> tuple[FEM, np.ndarray]:
    """FEM on the ``observed`` vertex indices, and which of them the prior keeps (those
    in a triangle of observed vertices)."""
    mask = np.zeros(n_vertices, dtype=bool)
    mask[observed] = True
    fem = fem_matrices(vertices, faces, mask)
    return fem, np.isin(observed, fem.vertex_index)


def _non_degenerate(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """True for faces with positive area relative to their size (and no repeated vertex)."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    twice_area = np.linalg.norm(np.cross(b - a, c - a), axis=1)
    scale = ((b - a) ** 2).sum(1) + ((c - b) ** 2).sum(1) + ((a - c) ** 2).sum(1)
    distinct = ((faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2])
                & (faces[:, 0] != faces[:, 2]))
    return distinct & (twice_area > _DEGENERATE_RATIO * scale)


def _assemble(points: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, sp.csc_matrix]:
    """Barycentric mass (mm²) and cotangent stiffness of non-degenerate faces."""
    n = points.shape[0]
    twice_area = np.linalg.norm(
        np.cross(points[faces[:, 1]] - points[faces[:, 0]],
                 points[faces[:, 2]] - points[faces[:, 0]]), axis=1)
    C = np.bincount(faces.ravel(), weights=np.repeat(twice_area / 6.0, 3), minlength=n)

    rows, cols, weights = [], [], []
    for k in range(3):  # the corner k and its opposite edge (i, j)
        i, j = faces[:, (k + 1) % 3], faces[:, (k + 2) % 3]
        e1 = points[i] - points[faces[:, k]]
        e2 = points[j] - points[faces[:, k]]
        cot = (e1 * e2).sum(1) / twice_area  # cos/sin of the angle at corner k
        rows += [i, j]
        cols += [j, i]
        weights += [-0.5 * cot, -0.5 * cot]
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    off = sp.coo_matrix((np.concatenate(weights), (rows, cols)), shape=(n, n)).tocsc()
    G = off - sp.diags(np.asarray(off.sum(axis=1)).ravel())
    G = sp.csc_matrix(G)
    G.sum_duplicates()
    G.sort_indices()
    return C, G


def icosphere(subdivisions: int, radius_mm: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A sphere mesh by repeated 4-way subdivision of the icosahedron (for tests).

    Parameters
    ----------
    subdivisions : int
        Number of subdivisions; gives 10·4^s + 2 vertices.
    radius_mm : float
        Sphere radius in mm.

    Returns
    -------
    vertices : ndarray, shape (n_vertices, 3)
    faces : ndarray of int, shape (n_faces, 3), outward (counter-clockwise) orientation.
    """
    t = (1.0 + np.sqrt(5.0)) / 2.0
    vertices = np.array([
        [-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0],
        [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
        [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], dtype=float)
    faces = np.array([
        [0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
        [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
        [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
        [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]], dtype=np.int64)
    vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
    for _ in range(subdivisions):
        pairs = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        edges, inverse = np.unique(np.sort(pairs, axis=1), axis=0, return_inverse=True)
        mid = vertices[edges].mean(axis=1)
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        m = inverse.reshape(3, -1) + vertices.shape[0]  # midpoints of edges 01, 12, 20
        a, b, c = faces.T
        faces = np.concatenate([
            np.stack([a, m[0], m[2]], 1), np.stack([b, m[1], m[0]], 1),
            np.stack([c, m[2], m[1]], 1), np.stack([m[0], m[1], m[2]], 1)])
        vertices = np.concatenate([vertices, mid])
    return vertices * radius_mm, faces
