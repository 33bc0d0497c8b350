"""GMRF draws on the fsLR 32k left hemisphere at κ = 5e-3 /mm, τ² = 1e4 (issue 2).

Prints, for the whole closed midthickness and for the cortex without the medial wall
(HCP atlasroi; vertices within 3 edges of the cut excluded from the variance average):
timings, the mean correlation across mesh edges, and the empirical marginal variance
against the exact diag(Q⁻¹) (sparse solves at 200 random vertices) and against the
unbounded-plane value 1/(4πκ²τ²).

Run: ``.venv/bin/python benchmarks/bench_gmrf.py [--samples 1000] [--seed 0]``
(needs ../shared/data).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import scipy.sparse as sp

from bids_app.prior import SparseCholesky, SPDEPrior, fem_matrices

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MESH = DATA / "templateflow" / "tpl-fsLR" / "tpl-fsLR_den-32k_hemi-L_midthickness.surf.gii"
ROI = DATA / "hcp" / "L.atlasroi.32k_fs_LR.shape.gii"


def boundary_band(fem, rings: int) -> np.ndarray:
    """Kept vertices within ``rings`` edges of the mesh boundary (boundary edges belong
    to one face only)."""
    pairs = np.sort(np.concatenate([fem.faces[:, [0, 1]], fem.faces[:, [1, 2]],
                                    fem.faces[:, [2, 0]]]), axis=1)
    edges, counts = np.unique(pairs, axis=0, return_counts=True)
    band = np.zeros(fem.n_vertices, dtype=bool)
    band[edges[counts == 1].ravel()] = True
    adjacency = sp.csr_matrix((np.ones(len(edges) * 2), (edges.ravel(), edges[:, ::-1].ravel())),
                              shape=(fem.n_vertices,) * 2)
    for _ in range(rings):
        band |= (adjacency @ band.astype(float)) > 0
    return band


def report(name: str, fem, kappa: float, tau2: float, n: int, seed: int) -> None:
    t0 = time.perf_counter()
    prior = SPDEPrior(fem)
    t_fem = time.perf_counter() - t0
    chol = SparseCholesky()
    t0 = time.perf_counter()
    chol.factorize(prior.precision(kappa, tau2))
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    chol.factorize(prior.precision(kappa, tau2))
    t_refactor = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = chol.sample(np.random.default_rng(seed), n)
    t_sample = time.perf_counter() - t0

    edges = fem.edges()
    per_sample = np.mean([np.corrcoef(x[edges[:, 0], k], x[edges[:, 1], k])[0, 1]
                          for k in range(n)])
    xc = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt((xc**2).sum(1))
    per_edge = np.mean((xc[edges[:, 0]] * xc[edges[:, 1]]).sum(1)
                       / (norm[edges[:, 0]] * norm[edges[:, 1]]))

    interior = ~boundary_band(fem, 3)
    rng = np.random.default_rng(seed + 1)
    probe = rng.choice(np.flatnonzero(interior), 200, replace=False)
    unit = np.zeros((fem.n_vertices, probe.size))
    unit[probe, np.arange(probe.size)] = 1.0
    exact = chol.solve(unit)[probe, np.arange(probe.size)]
    empirical = np.mean(x[interior] ** 2)
    plane = prior.marginal_variance(kappa, tau2)
    print(f"== {name}: {fem.n_vertices} vertices, area {fem.area:.0f} mm², "
          f"{(~interior).sum()} boundary-band vertices excluded from variances")
    print(f"  SPDEPrior build {t_fem:.2f} s; factorise Q first {t_first:.2f} s "
          f"(analysis + numeric), refactorise {t_refactor:.2f} s; {n} draws {t_sample:.2f} s "
          f"[{chol.backend}]")
    print(f"  mean correlation across {len(edges)} edges: {per_sample:.5f} (within each draw), "
          f"{per_edge:.5f} (per edge, across draws)")
    print(f"  variance: empirical {empirical:.4f} (mean over interior vertices and draws), "
          f"exact diag(Q⁻¹) {exact.mean():.4f} (200 random interior vertices), "
          f"plane 1/(4πκ²τ²) {plane:.4f}")
    print(f"  empirical/exact {empirical / exact.mean():.3f}, empirical/plane "
          f"{empirical / plane:.3f}, exact/plane {exact.mean() / plane:.3f}")
    for k in (2e-2, 5e-2, 1e-1):
        chol.factorize(prior.precision(k, tau2))
        ex = chol.solve(unit)[probe, np.arange(probe.size)].mean()
        print(f"  κ = {k:g}: exact/plane variance {ex / prior.marginal_variance(k, tau2):.3f} "
              f"(range √8/κ = {np.sqrt(8) / k:.0f} mm)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kappa", type=float, default=5e-3)
    parser.add_argument("--tau2", type=float, default=1e4)
    args = parser.parse_args()
    vertices, faces = nib.load(MESH).agg_data()
    report("fsLR 32k L midthickness, whole closed surface",
           fem_matrices(vertices, faces), args.kappa, args.tau2, args.samples, args.seed)
    mask = nib.load(ROI).agg_data() > 0
    report("fsLR 32k L, medial wall removed (atlasroi)",
           fem_matrices(vertices, faces, mask), args.kappa, args.tau2, args.samples, args.seed)


if __name__ == "__main__":
    main()
