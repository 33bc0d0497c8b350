"""Accuracy under real-BOLD nuisance, and the quality gate's false alarms and detections.

One hemisphere per row: a smooth true θ field (SPDE draw, κ 5e-3, τ² 1e4, centred)
simulated at a protocol, with one nuisance kind at a time, all together, or white noise
(the paper's model), at the same total noise power; 24P confounds regressed. Each run is
fitted as the workflow fits it, through :func:`bids_app.fit.fit_hemisphere` (clean →
summarise → evidence-selected MAP → ``--bias-correction`` → quality gate), and compared
with the truth: MSE(θ), mean error (1/s), Pearson r, the gate's verdict and its checks'
figures (``follow``: EstimateFollowsTruth, flagged above 2). The nuisance is set per run
(one exponent, one breathing and heart rate, one shared fluctuation), not drawn per
vertex as in training: a held-out kind of data.

Mismatched runs (``--mismatched``) are data the model cannot describe: upstream
low-pass or band-pass not declared, noise steeper than any trained, one oscillation
carrying most of the noise. The gate should flag them. (A wrong TR is not among them:
θ is a time dilation, so a run told the wrong TR is a valid run at another θ, which no
check of the data can see.)

Run: ``python benchmarks/bench_real_nuisance.py --study fsaverage5 --seeds 0 1``
(about a minute per row on 2 cores; fsLR32k rows take several).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from bench_bootstrap import CORTEX_L, STUDIES, TRUE_KAPPA, TRUE_TAU2
from scipy.signal import butter, sosfiltfilt

from bids_app.bootstrap.intervals import BootstrapOptions
from bids_app.fit import FitOptions, HemisphereResult, fit_hemisphere
from bids_app.io.confounds import strategy_regressors
from bids_app.io.templates import template_mesh
from bids_app.models import ONE_PARAM
from bids_app.prior import SPDEPrior, fem_matrices
from bids_app.simulate import HCP_1P, sample_nuisance, simulate_bold
from bids_app.simulate.confounds import simulated_confounds
from bids_app.surrogate import load_surrogate

# One run-level setting per kind (exponents and rates inside real ranges; see
# docs/method.md §2), each at the same total noise power as white noise.
KINDS: dict[str, dict] = {
    "white": {},
    "powerlaw": {"powerlaw": (0.7, 0.7), "powerlaw_exponent": (1.0, 1.0)},
    "physio": {"physio": (0.3, 0.3)},
    "shared": {"shared": (0.3, 0.3)},
    "drift": {"drift": (0.2, 0.2)},
    "neural": {"neural_fluctuation": (0.4, 0.4), "neural_exponent": (0.8, 0.8)},
    "all": {"powerlaw": (0.4, 0.4), "powerlaw_exponent": (1.0, 1.0), "physio": (0.2, 0.2),
            "shared": (0.15, 0.15), "drift": (0.1, 0.1), "neural_fluctuation": (0.3, 0.3),
            "neural_exponent": (0.8, 0.8)},
}
MISMATCHED = ("lowpass-undeclared", "bandpass-undeclared", "steep-noise", "oscillation")


def run_level(nuisance: dict) -> dict:
    """One breathing rate, heart rate and mix for the whole run."""
    if "respiration_hz" in nuisance:
        for key in ("respiration_hz", "cardiac_hz", "respiration_share"):
            nuisance[key] = np.full_like(nuisance[key], nuisance[key][0])
    return nuisance


def simulate_run(space: str, tr: float, n_frames: int, kind: str, seed: int,
                 level: float = 0.0):
    """Mesh, the vertices simulated (cortex), their true latent field, raw series (V, T)
    and the run's 24P regressors."""
    rng = np.random.default_rng(seed)
    vertices, faces = template_mesh(space, "L")
    mask = nib.load(CORTEX_L).agg_data() > 0 if space == "fsLR" else None
    fem = fem_matrices(vertices, faces, mask)
    prior = SPDEPrior(fem)
    truth_t = prior.sample(TRUE_KAPPA, TRUE_TAU2, rng)[:, 0]
    truth_t += level - truth_t.mean()
    theta = ONE_PARAM.to_theta(truth_t[:, None])
    settings = KINDS.get(kind, {})
    if kind == "steep-noise":
        settings = {"powerlaw": (0.9, 0.9), "powerlaw_exponent": (3.0, 3.0)}
    if kind == "oscillation":
        settings = {"physio": (0.8, 0.8)}
    nuisance_prior = dataclasses.replace(HCP_1P, **settings)
    nuisance = run_level(sample_nuisance(nuisance_prior, len(theta), rng))
    y = simulate_bold(ONE_PARAM, theta, tr, n_frames, nuisance, rng)
    if kind in ("lowpass-undeclared", "bandpass-undeclared"):
        band = (0.01, 0.08) if kind.startswith("band") else 0.05
        sos = butter(4, band, btype="bandpass" if kind.startswith("band") else "lowpass",
                     fs=1.0 / tr, output="sos")
        y = sosfiltfilt(sos, y, axis=1).astype(np.float32)
    table = simulated_confounds(n_frames, tr, rng)
    regressors = strategy_regressors(table, "24P", "simulated confounds")[1]
    return (vertices, faces), fem.vertex_index, truth_t, y, regressors


def fit(mesh: tuple, vertex_index: np.ndarray, surrogate, y: np.ndarray, tr: float,
        regressors: np.ndarray, seed: int, bias_correction: str) -> HemisphereResult:
    """The workflow's fit through the file-free API (its default (κ, τ²) grid): clean →
    summarise → evidence-selected MAP → simulated bias correction (when asked) → quality
    gate; no bootstrap."""
    options = FitOptions(bias_correction=bias_correction,
                         bootstrap=BootstrapOptions(mode="none"), random_seed=seed)
    return fit_hemisphere(y, mesh, tr, surrogate, options, confounds=regressors,
                          vertex_index=vertex_index, where="study")


def row(study: str, kind: str, seed: int, surrogate_for, bias_correction: str,
        level: float) -> str:
    spec = STUDIES[study]
    tr_data = spec["tr"]
    mesh, vertex_index, truth_t, y, regressors = simulate_run(
        spec["space"], tr_data, spec["n_frames"], kind, seed, level)
    start = time.perf_counter()
    result = fit(mesh, vertex_index, surrogate_for(tr_data), y, tr_data, regressors, seed,
                 bias_correction)
    est = result.theta[:, 0]
    truth = ONE_PARAM.to_theta(truth_t[np.searchsorted(vertex_index, result.fitted), None])[:, 0]
    err = est - truth
    quality = result.quality_control
    checks = {name: check["Value"] for name, check in quality["Checks"].items()}
    return (f"{study:10s} {kind:20s} {seed:4d} {np.mean(err ** 2):8.4f} {err.mean():+8.3f} "
            f"{np.corrcoef(est, truth)[0, 1]:6.3f} {'pass' if quality['Pass'] else 'FLAG':5s} "
            f"{checks['PosteriorPredictiveSpectra']:6.3f} {checks['RunSpectrumShape']:6.3f} "
            f"{checks['TrainingDistribution']:6.3f} {checks['AtRangeBound']:6.3f} "
            f"{checks['EstimateFollowsTruth']:6.2f} {time.perf_counter() - start:6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", choices=list(STUDIES), nargs="+", default=["fsaverage5"])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--mismatched", action="store_true",
                        help="also fit runs the model cannot describe (gate detection)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--card", type=Path, help="a model card (default: the shipped one)")
    parser.add_argument("--theta", type=float, default=1.5,
                        help="mean of the true field in 1/s (1.5: mid-range; 1.0: canonical)")
    parser.add_argument("--bias-correction", choices=("none", "simulation"), default="none",
                        help="the workflow's simulated bias correction (default: the MAP)")
    args = parser.parse_args()
    cache: dict[float, object] = {}

    def surrogate_for(tr: float):
        if tr not in cache:
            cache[tr] = load_surrogate("1p", tr, 300, None, card_path=args.card)
        return cache[tr]

    print(f"surrogate: {surrogate_for(2.0).card['id']}; bias correction: "
          f"{args.bias_correction}")
    print(f"{'study':10s} {'nuisance':20s} {'seed':>4s} {'MSE':>8s} {'bias':>8s} {'r':>6s} "
          f"{'gate':5s} {'ppc':>6s} {'run-p':>6s} {'ood':>6s} {'bound':>6s} {'follow':>6s} "
          f"{'fit s':>6s}")
    kinds = list(args.kinds) + (list(MISMATCHED) if args.mismatched else [])
    for study in args.study:
        for kind in kinds:
            for seed in args.seeds:
                print(row(study, kind, seed, surrogate_for, args.bias_correction,
                          ONE_PARAM.to_latent(np.array([args.theta]))[0]), flush=True)


if __name__ == "__main__":
    main()
