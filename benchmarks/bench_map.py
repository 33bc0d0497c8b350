"""Evidence-selected MAP on one fsLR 32k hemisphere: speed, memory and accuracy.

Parts (``--part``):

- ``speed``: whole 32,492-vertex left midthickness, truth θ̃ drawn from the prior
  (κ = 5e-3 /mm, τ² = 1e4), analytic per-vertex likelihoods with exact derivatives
  (Gaussian, and Poisson which needs several damped Newton steps); the default 4 × 5
  (κ, τ²) grid by each search (lines, full grid, 8-neighbour ascent); wall and CPU
  seconds, factorisations, cost per factorisation and per Newton iteration, peak RSS.
  Also one two-parameter MAP.
- ``study``: the synthetic study with the shipped surrogate and the simulator: left
  hemisphere without the medial wall, TR 0.72 s, 1,200 frames, published HCP calibration,
  truth from the prior; MSE(θ) and Pearson r of the pointwise estimates (S(y), and the
  per-vertex argmax of q) against the evidence-selected MAP, κ̂ against the truth.
  Then the two-parameter model (both fields drawn from the prior) if its surrogate ships.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_map.py --part speed``
(needs ../shared/data); ``--part study --seeds 0 1 2`` needs the shipped surrogate weights.
At κ = 5e-3 /mm the prior range (≈ 570 mm) exceeds the hemisphere, so a draw is mostly
a random offset (sd ≈ 1.7 latent) with little spatial variation (sd ≈ 0.2), which the
probit link can flatten further: the script prints the truth's spatial spread, and
``--kappa 0.05 --tau2 100`` gives a field that varies within the hemisphere.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_app.inference import fit_map, select_hyperparameters
from bids_app.inference.analytic import GaussianLoglik, PoissonLoglik
from bids_app.inference.evidence import SEARCHES
from bids_app.inference.system import NewtonSystem, block_prior
from bids_app.prior import SparseCholesky, SPDEPrior, fem_matrices

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MESH = DATA / "templateflow" / "tpl-fsLR" / "tpl-fsLR_den-32k_hemi-L_midthickness.surf.gii"
ROI = DATA / "hcp" / "L.atlasroi.32k_fs_LR.shape.gii"
KAPPA, TAU2 = 5e-3, 1e4


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (GB; Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def machine() -> str:
    """Load average and thread settings, printed next to every timing (the 2-core
    machine is shared)."""
    return (f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def factorisation_cost(prior: SPDEPrior, n_params: int, repeats: int = 3) -> tuple[float, float]:
    """(analysis + first factorisation, mean refactorisation) CPU seconds of D + Q."""
    Qb = block_prior(prior.precision(KAPPA, TAU2), prior.n_vertices, n_params)
    Qb.sort_indices()
    system = NewtonSystem(Qb, n_params)
    A = system.assemble(Qb, np.tile(np.eye(n_params), (prior.n_vertices, 1, 1)))
    chol = SparseCholesky()
    _, _, first = timed(chol.factorize, A)
    again = [timed(chol.factorize, A)[2] for _ in range(repeats)]
    return first, float(np.mean(again))


def speed(seed: int) -> None:
    vertices, faces = nib.load(MESH).agg_data()
    prior = SPDEPrior(fem_matrices(vertices, faces))
    rng = np.random.default_rng(seed)
    truth = prior.sample(KAPPA, TAU2, rng, 2)
    print(f"fsLR 32k L midthickness, {prior.n_vertices} vertices; truth κ={KAPPA}, τ²={TAU2}; "
          f"{machine()}")
    for p in (1, 2):
        first, again = factorisation_cost(prior, p)
        print(f"  P={p}: D+Q analysis+factorisation {first:.2f} CPU-s, "
              f"refactorisation {again:.2f} CPU-s [{SparseCholesky().backend}]")

    counts = rng.poisson(4.0 * np.exp(truth[:, :1]))
    cases = {
        "Gaussian (sd 0.5)": (GaussianLoglik(truth[:, :1] + rng.normal(0, 0.5, (len(truth), 1)),
                                             4.0), None),
        "Poisson (exposure 4)": (PoissonLoglik(counts, 4.0), np.log((counts + 0.5) / 4.0)),
    }
    for name, (loglik, start) in cases.items():
        start = loglik.summaries if start is None else start
        for search in SEARCHES:
            chol = SparseCholesky()
            result, wall, cpu = timed(select_hyperparameters, loglik, prior, start, chol=chol,
                                      search=search)
            n_points = int(np.isfinite(result.surface).sum())
            n_iter = int(result.iterations[result.iterations >= 0].sum())
            mse0 = np.mean((start - truth[:, :1]) ** 2)
            mse = np.mean((result.map.theta_t - truth[:, :1]) ** 2)
            print(f"  1p {name}, {search}: {wall:.1f} s wall, {cpu:.1f} CPU-s, "
                  f"{n_points} grid points, {n_iter} Newton iterations, "
                  f"{chol.n_factorizations} factorisations ({chol.n_analyses} analysis); "
                  f"{cpu / max(n_iter, 1):.2f} CPU-s per iteration, "
                  f"{cpu / chol.n_factorizations:.2f} CPU-s per factorisation; "
                  f"κ̂={result.kappa:g} τ̂²={result.tau2:g}; latent MSE start {mse0:.4f} "
                  f"→ MAP {mse:.5f}; peak RSS so far {peak_rss_gb():.2f} GB; {machine()}")

    S2 = truth + rng.normal(0, 0.5, truth.shape)
    chol = SparseCholesky()
    result, wall, cpu = timed(fit_map, GaussianLoglik(S2, 4.0), prior.precision(KAPPA, TAU2),
                              S2, chol=chol)
    print(f"  2p Gaussian, one MAP at fixed (κ, τ²): {wall:.1f} s wall, {cpu:.1f} CPU-s, "
          f"{result.n_iter} iterations, {chol.n_factorizations} factorisations; "
          f"latent MSE per field {np.round(np.mean((result.theta_t - truth) ** 2, 0), 4)}; "
          f"peak RSS {peak_rss_gb():.2f} GB")


def pointwise_argmax(loglik, n_vertices: int) -> np.ndarray:
    """Per-vertex argmax of q(S_v | θ̃) for the 1p model: the best of 81 latent values on
    [−4, 4], refined by the vertex of the parabola through it and its two neighbours."""
    grid = np.linspace(-4.0, 4.0, 81)
    values = np.stack([loglik(np.full((n_vertices, 1), g))[0] for g in grid], axis=1)
    k = np.clip(values.argmax(axis=1), 1, grid.size - 2)
    rows = np.arange(n_vertices)
    lo, mid, hi = values[rows, k - 1], values[rows, k], values[rows, k + 1]
    curvature = lo - 2 * mid + hi
    shift = np.where(curvature < 0, 0.5 * (lo - hi) / np.where(curvature < 0, curvature, -1), 0)
    return (grid[k] + (grid[1] - grid[0]) * np.clip(shift, -0.5, 0.5))[:, None]


def accuracy(model, name: str, latent: np.ndarray, truth_latent: np.ndarray) -> str:
    theta, truth = model.to_theta(latent), model.to_theta(truth_latent)
    parts = []
    for k, param in enumerate(model.params):
        mse = np.mean((theta[:, k] - truth[:, k]) ** 2)
        r = np.corrcoef(theta[:, k], truth[:, k])[0, 1]
        parts.append(f"{param}: MSE {mse:.4f}, r {r:.3f}")
    return f"    {name:<28} " + "; ".join(parts)


def study_mesh(mesh: str):
    """(name, (vertices, faces), SPDEPrior) of the study mesh: fsLR 32k L without the
    medial wall (HCP atlas ROI), or a template mesh whole (fsaverage5/6, for the slower
    2p model)."""
    if mesh == "fsLR32k":
        vertices, faces = nib.load(MESH).agg_data()
        mask = nib.load(ROI).agg_data() > 0
        return ("fsLR 32k L cortex", (vertices, faces),
                SPDEPrior(fem_matrices(vertices, faces, mask)))
    from bids_app.io.templates import template_mesh
    vertices, faces = (np.asarray(a) for a in template_mesh(mesh, "L"))
    return f"{mesh} L", (vertices, faces), SPDEPrior(fem_matrices(vertices, faces))


def study(seed: int, models: list[str], kappa: float, tau2: float, search: str,
          mesh: str = "fsLR32k", fixed: bool = False) -> None:
    """The workflow's fit (:func:`bids_app.fit.fit_hemisphere`, no bias correction or
    bootstrap) of a run simulated at a prior draw, against the pointwise estimates."""
    from bids_app.bootstrap.intervals import BootstrapOptions
    from bids_app.errors import HemocouplingError
    from bids_app.fit import FitOptions, fit_hemisphere
    from bids_app.models import ONE_PARAM, TWO_PARAM
    from bids_app.simulate.bold import HCP_1P, HCP_2P, sample_nuisance, simulate_bold
    from bids_app.surrogate import load_surrogate

    tr, n_frames = 0.72, 1200
    mesh_name, surface, prior = study_mesh(mesh)
    grid = ({"kappas": (kappa,), "tau2s": (tau2,)} if fixed else {})
    options = FitOptions(search=search, bias_correction="none",
                         bootstrap=BootstrapOptions(mode="none"), **grid)
    for name in models:
        model, nuisance_prior = {"1p": (ONE_PARAM, HCP_1P), "2p": (TWO_PARAM, HCP_2P)}[name]
        try:
            surrogate = load_surrogate(name, tr, n_frames)
        except (HemocouplingError, FileNotFoundError, KeyError) as err:
            print(f"{name}: surrogate not available ({err}); skipped")
            continue
        rng = np.random.default_rng(seed)
        truth = prior.sample(kappa, tau2, rng, model.n_params)
        nuisance = sample_nuisance(nuisance_prior, prior.n_vertices, rng)
        (y, t_sim, _) = timed(simulate_bold, model, model.to_theta(truth), tr, n_frames,
                              nuisance, rng)
        fit, wall, cpu = timed(fit_hemisphere, y, surface, tr, surrogate, options,
                               vertex_index=prior.fem.vertex_index, where=name)
        rows = np.searchsorted(prior.fem.vertex_index, fit.fitted)
        truth = truth[rows]
        selection = fit.hyperparameter_selection
        noise = selection.get("NoiseAR") or {"Selected": None, "Candidates": [None],
                                             "LogEvidence": [fit.log_evidence]}
        profile = np.asarray(noise["LogEvidence"])
        print(f"{name} synthetic study: {mesh_name} ({prior.n_vertices} vertices, "
              f"{len(fit.fitted)} fitted), TR {tr} s, {n_frames} frames, surrogate "
              f"{fit.surrogate['Id']}, truth κ={kappa} τ²={tau2}, seed {seed}; simulate "
              f"{t_sim:.1f} s")
        theta_true = model.to_theta(truth)
        print(f"  truth: latent mean {np.round(truth.mean(0), 3)}, spatial sd "
              f"{np.round(truth.std(0), 3)}; θ mean {np.round(theta_true.mean(0), 3)}, "
              f"spatial sd {np.round(theta_true.std(0), 4)}")
        print(f"  evidence-selected MAP ({search}), clean + summarise + select + MAP: "
              f"{wall:.1f} s wall, {cpu:.1f} CPU-s, κ̂={fit.kappa:g} (truth {kappa}), "
              f"τ̂²={fit.tau2:g}, noise AR φ̂={noise['Selected']} (log evidence − max over "
              f"{noise['Candidates']}: {np.round(profile - profile.max(), 1)}), converged "
              f"{fit.convergence['Converged']} in {fit.convergence['Iterations']} Newton "
              f"iterations, peak RSS {peak_rss_gb():.2f} GB; {machine()}")
        surface_ev = np.asarray(fit.evidence_grid["LogEvidence"], dtype=float)
        print("  log-evidence surface − max (rows κ", np.round(fit.evidence_grid["Kappa"], 5),
              ", cols τ²", fit.evidence_grid["Tau2"], "):")
        print(np.round(surface_ev - fit.log_evidence, 1))
        summaries = np.asarray(fit.likelihood.summaries, dtype=float)
        print(accuracy(model, "pointwise S(y)", summaries, truth))
        if model.n_params == 1:
            argmax = pointwise_argmax(fit.likelihood.on(np.arange(len(fit.fitted))),
                                      len(fit.fitted))
            print(accuracy(model, "pointwise argmax_θ q(S|θ)", argmax, truth))
        label = "MAP (true κ, τ² fixed)" if fixed else "MAP (evidence-selected)"
        print(accuracy(model, label, fit.theta_t, truth))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["speed", "study", "all"], default="all")
    parser.add_argument("--models", nargs="+", default=["1p", "2p"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--kappa", type=float, default=KAPPA, help="truth κ of the study")
    parser.add_argument("--tau2", type=float, default=TAU2, help="truth τ² of the study")
    parser.add_argument("--search", choices=list(SEARCHES), default=SEARCHES[0],
                        help="evidence search of the study")
    parser.add_argument("--fixed", action="store_true",
                        help="study: MAP at the true (κ, τ²) instead of selecting them")
    parser.add_argument("--mesh", choices=["fsLR32k", "fsaverage5", "fsaverage6"],
                        default="fsLR32k", help="mesh of the study")
    args = parser.parse_args()
    for seed in args.seeds:
        if args.part in ("speed", "all"):
            speed(seed)
        if args.part in ("study", "all"):
            study(seed, args.models, args.kappa, args.tau2, args.search, args.mesh, args.fixed)


if __name__ == "__main__":
    main()
