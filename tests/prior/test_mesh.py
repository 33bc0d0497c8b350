"""FEM matrices: exactness on linear functions, PSD stiffness, mass = area, and the
handling of degenerate faces, unreferenced vertices and masks."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.errors import InputValidationError
from bids_app.prior.mesh import fem_matrices, icosphere


def planar_grid(n: int = 6, spacing: float = 1.5, jitter: float = 0.2, seed: int = 0):
    """A jittered, triangulated square grid in the z = 0 plane (mm)."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(n) * spacing, np.arange(n) * spacing, indexing="ij")
    pts = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], 1)
    interior = ((x > 0) & (x < x.max()) & (y > 0) & (y < y.max())).ravel()
    pts[interior, :2] += rng.uniform(-jitter, jitter, (interior.sum(), 2))
    idx = np.arange(n * n).reshape(n, n)
    a, b = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel()
    c, d = idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return pts, faces, interior


def triangle_areas(vertices, faces):
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def test_stiffness_is_symmetric_psd_and_annihilates_constants():
    v, f = icosphere(2, 50.0)
    fem = fem_matrices(v, f)
    G = fem.G.toarray()
    np.testing.assert_allclose(G, G.T, atol=1e-12)
    np.testing.assert_allclose(G @ np.ones(len(G)), 0.0, atol=1e-10)
    eig = np.linalg.eigvalsh(G)
    assert eig.min() > -1e-10 * eig.max()
    assert np.sum(eig < 1e-10 * eig.max()) == 1  # a connected mesh: one null vector


def test_stiffness_is_exact_on_linear_functions():
    """∫|∇f|² = |a|²·area for f = a·x, and interior rows of G f vanish (linear precision)."""
    v, f, interior = planar_grid()
    fem = fem_matrices(v, f)
    a = np.array([0.7, -1.3, 0.0])
    u = v @ a
    area = triangle_areas(v, f).sum()
    assert u @ fem.G @ u == pytest.approx(a @ a * area, rel=1e-12)
    np.testing.assert_allclose((fem.G @ u)[interior], 0.0, atol=1e-10)


def test_mass_sums_to_surface_area():
    v, f = icosphere(3, 20.0)
    fem = fem_matrices(v, f)
    assert fem.C.min() > 0
    assert fem.area == pytest.approx(triangle_areas(v, f).sum(), rel=1e-12)
    assert fem.area == pytest.approx(4 * np.pi * 20.0**2, rel=0.01)


def test_degenerate_faces_are_dropped():
    v, f, _ = planar_grid()
    ref = fem_matrices(v, f)
    collinear = np.array([[0, 1, 2]])  # three points on the grid's first column (y = 0)
    repeated = np.array([[7, 7, 8]])
    fem = fem_matrices(v, np.concatenate([f, collinear, repeated]))
    assert np.all(np.isfinite(fem.G.data))
    np.testing.assert_allclose(fem.C, ref.C)
    np.testing.assert_allclose(fem.G.toarray(), ref.G.toarray(), atol=1e-12)
    assert fem.faces.shape == ref.faces.shape


def test_vertex_only_in_degenerate_face_or_unreferenced_is_dropped():
    v, f, _ = planar_grid()
    n = len(v)
    extra = np.array([[100.0, 0, 0], [200.0, 0, 0], [300.0, 0, 0]])  # collinear
    v2 = np.concatenate([v, extra, [[5.0, 5.0, 5.0]]])  # + one unreferenced vertex
    f2 = np.concatenate([f, [[n, n + 1, n + 2]]])
    fem = fem_matrices(v2, f2)
    np.testing.assert_array_equal(fem.vertex_index, np.arange(n))
    assert fem.n_input_vertices == n + 4
    full = fem.expand(np.ones(fem.n_vertices))
    assert np.isnan(full[n:]).all() and np.all(full[:n] == 1)
    np.testing.assert_array_equal(fem.restrict(np.arange(n + 4)), np.arange(n))


def test_mask_drops_faces_touching_excluded_vertices():
    v, f = icosphere(2, 10.0)
    mask = v[:, 2] > -3.0  # cut a cap off the sphere
    fem = fem_matrices(v, f, mask)
    kept_faces = f[mask[f].all(axis=1)]
    keep = np.unique(kept_faces)
    np.testing.assert_array_equal(fem.vertex_index, keep)
    assert fem.area == pytest.approx(triangle_areas(v, kept_faces).sum(), rel=1e-12)
    # the masked FEM equals the FEM of the explicitly cut submesh
    renumber = np.full(len(v), -1)
    renumber[keep] = np.arange(len(keep))
    sub = fem_matrices(v[keep], renumber[kept_faces])
    np.testing.assert_allclose(fem.G.toarray(), sub.G.toarray(), atol=1e-12)
    np.testing.assert_allclose(fem.C, sub.C)
    np.testing.assert_allclose(fem.G @ np.ones(fem.n_vertices), 0.0, atol=1e-10)


@pytest.mark.parametrize("bad", ["nan", "index", "shape", "mask"])
def test_invalid_meshes_raise_input_validation_error(bad):
    v, f = icosphere(1)
    mask = None
    if bad == "nan":
        v = v.copy()
        v[0, 0] = np.nan
    elif bad == "index":
        f = f.copy()
        f[0, 0] = len(v)
    elif bad == "shape":
        f = f[:, :2]
    else:
        mask = np.ones(len(v) - 1, dtype=bool)
    with pytest.raises(InputValidationError):
        fem_matrices(v, f, mask)


@pytest.mark.parametrize("s", [0, 1, 3])
def test_icosphere_is_a_closed_outward_sphere(s):
    v, f = icosphere(s, 7.0)
    assert len(v) == 10 * 4**s + 2 and len(f) == 20 * 4**s
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 7.0)
    a, b, c = (v[f[:, k]] for k in range(3))
    normals = np.cross(b - a, c - a)
    assert np.all((normals * (a + b + c)).sum(1) > 0)
    edges = np.unique(np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1),
                      axis=0)
    assert len(v) - len(edges) + len(f) == 2  # Euler characteristic of a sphere
