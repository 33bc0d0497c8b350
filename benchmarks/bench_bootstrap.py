"""Coverage, width and wall time of the bootstrap intervals on a synthetic study.

The study (issue 7's design, as in ``bench_map.py --part study``): the left fsLR 32k
midthickness without the medial wall (or the whole fsaverage5 midthickness), the
one-parameter model, the published HCP calibration, a true latent field drawn from the
SPDE prior with κ = 5e-3 /mm, τ² = 1e4. The point estimate is the evidence-selected
MAP; every bootstrap resample is refitted with κ, τ² fixed: ``--resampling local`` (the
default) resamples the periodogram (:mod:`bids_app.bootstrap.periodogram`) and refits
from it, ``--resampling block`` resamples the series in time and refits through
:class:`bids_app.inference.refit.MapRefit`.

Printed per study: the diagnosis of the interval's error budget (the estimate's error
θ̂ − θ split into its mean offset and spatially varying part, against the bootstrap SE;
the per-vertex maximum of the surrogate likelihood alone, which tells a likelihood bias
from the prior's smoothing; the outer and inner resampling shifts and their
correlation; where the per-vertex calibrated levels β̂(v) fall and how many sit on the
level grid's floor); the mean periodogram of resamples relative to the original's, in
five frequency bands (block: re-cleaned series, with and without the cross-fade at
block joins); coverage of the true θ by the calibrated (double) and the uncalibrated (single)
intervals, each with and without the bootstrap bias correction (same refits), and, as
the workflow reports them by default, moved by the simulated bias
(:mod:`bids_app.bias.simulated`; "sim" rows, with the matched regime and the
corrected estimate's error and MSE), their
mean and median widths in θ (1/s) and time-to-peak (s) against the oracle width (twice
the 95th percentile of |estimate − truth|), the calibrated level α̂, the per-refit
cost split into its steps and the wall time and CPU seconds (this process and its workers) of
B × (R + 1) refits, extrapolated to B = 100, R = 10 on two idle cores.

A killed run resumes from ``--cache-dir``; rerunning with a smaller ``--B`` reports the
outer resamples that finished (with all their inner ones) without refitting.

Examples
--------
    .venv/bin/python benchmarks/bench_bootstrap.py --study fsaverage5 --B 20 --R 5
    .venv/bin/python benchmarks/bench_bootstrap.py --study fsaverage5 --resampling block
    .venv/bin/python benchmarks/bench_bootstrap.py --study fslr32k --B 100 --R 10 --n-jobs 2
    .venv/bin/python benchmarks/bench_bootstrap.py --study fslr32k --profile
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from bids_app.bias.simulated import simulated_bias, skip_reason  # noqa: E402
from bids_app.bootstrap import double_bootstrap, natural_intervals  # noqa: E402
from bids_app.bootstrap.double import resample_series, resampling_plan  # noqa: E402
from bids_app.bootstrap.intervals import shift_result  # noqa: E402
from bids_app.bootstrap.resample import fade_frames  # noqa: E402
from bids_app.inference.likelihood_choice import select_likelihood  # noqa: E402
from bids_app.inference.refit import REFIT_OPTIONS, MapRefit  # noqa: E402
from bids_app.io.templates import template_mesh  # noqa: E402
from bids_app.models import ONE_PARAM  # noqa: E402
from bids_app.preprocess import clean  # noqa: E402
from bids_app.prior import SPDEPrior, fem_matrices  # noqa: E402
from bids_app.simulate import HCP_1P, NuisancePrior, sample_nuisance, simulate_bold  # noqa: E402
from bids_app.surrogate import load_surrogate  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CORTEX_L = DATA / "hcp" / "L.atlasroi.32k_fs_LR.shape.gii"
STUDIES = {
    "fslr32k": {"space": "fsLR", "tr": 0.72, "n_frames": 1200},
    "fsaverage5": {"space": "fsaverage5", "tr": 2.0, "n_frames": 300},
}
TRUE_KAPPA, TRUE_TAU2 = 5e-3, 1e4
KAPPAS = np.geomspace(5e-4, 5e-1, 4)
TAU2S = np.geomspace(1e2, 1e6, 5)


def synthetic_study(space: str, tr: float, n_frames: int, seed: int, center: bool = True,
                    nuisance_prior: NuisancePrior = HCP_1P, per_run=None):
    """Mesh prior, true latent field (V,) and raw series (V, T) of one hemisphere.

    A hemisphere is smaller than the prior's range √8/κ ≈ 570 mm, so a draw is mostly
    a near-constant offset (at seed 0 about +3 latent units on fsLR: θ pinned at the
    2.5 /s edge, where the likelihood is flat). ``center`` removes that offset so the
    coverage figures describe a field inside the identifiable range. ``nuisance_prior``
    is the published HCP calibration (the issue's study) or, as a control where the
    surrogate's likelihood is right, the surrogate's own training prior; ``per_run``,
    when given, sets the drawn settings that are one per run (beyond-AR(1) nuisance).
    """
    rng = np.random.default_rng(seed)
    prior, truth_t = study_field(space, rng, center)
    y = study_run(truth_t, tr, n_frames, rng, nuisance_prior, per_run)
    return prior, truth_t, y


def study_field(space: str, rng: np.random.Generator, center: bool = True):
    """The study's mesh prior and true latent field (:func:`synthetic_study`)."""
    vertices, faces = template_mesh(space, "L")
    mask = nib.load(CORTEX_L).agg_data() > 0 if space == "fsLR" else None
    prior = SPDEPrior(fem_matrices(vertices, faces, mask))
    truth_t = prior.sample(TRUE_KAPPA, TRUE_TAU2, rng)[:, 0]
    if center:
        truth_t = truth_t - truth_t.mean()
    return prior, truth_t


def study_run(truth_t: np.ndarray, tr: float, n_frames: int, rng: np.random.Generator,
              nuisance_prior: NuisancePrior = HCP_1P, per_run=None) -> np.ndarray:
    """One raw run (V, T) of the field: nuisance drawn, series simulated."""
    theta = ONE_PARAM.to_theta(truth_t[:, None])
    nuisance = sample_nuisance(nuisance_prior, theta.shape[0], rng)
    if per_run is not None:
        nuisance = per_run(nuisance)
    return simulate_bold(ONE_PARAM, theta, tr, n_frames, nuisance, rng)


def point_estimate(prior: SPDEPrior, surrogate, y_clean: np.ndarray, tr: float):
    """Evidence-selected MAP, as the participant workflow computes it."""
    summaries = surrogate.summarize(y_clean, tr)
    noise_ars, logliks = surrogate.candidate_logliks(summaries, tr, y_clean.shape[1])
    theta_t0 = np.asarray(summaries, dtype=float).reshape(y_clean.shape[0], -1)
    choice = select_likelihood(logliks, prior, theta_t0, KAPPAS, TAU2S)
    evidence = choice.evidence
    precision = prior.precision(evidence.kappa, evidence.tau2)
    return np.asarray(evidence.map.theta_t), precision, evidence, noise_ars[choice.index]


def refit_cost(plan, fit, y_clean: np.ndarray, n: int = 1, n_inner: int = 10
               ) -> dict[str, float]:
    """Mean CPU seconds of one refit and of its steps, run in this process on ``n``
    outer resamples of the scheme and ``n_inner`` inner resamples of each, drawn as one
    worker task draws them (``plan``, ``fit`` from :func:`resampling_plan`).

    CPU time is what extrapolates on a shared machine: an idle 2-core box runs two
    single-threaded refits at once, so B·(R+1) refits take ≈ B·(R+1)·cpu/2 seconds.
    Steps: drawing the resample (an outer one and its local spectrum once per task);
    the summary (local: features from the periodogram and the summary network; block:
    re-cleaning, FFT, features, network); the likelihood's binding; the MAP. The block
    refit's steps are not split (its cleaning runs inside).
    """
    from bids_app.inference import fit_map

    data = plan.prepare(y_clean)
    steps = {"resample": [], "summary": [], "loglik": [], "map": [], "total": [],
             "newton_iterations": []}
    for b in range(n):
        draws = iter(plan.resamples(data, 999, b, list(range(n_inner + 1))))
        while True:
            c0 = time.process_time()
            sample = next(draws, None)
            if sample is None:
                break
            sample = sample[1]
            c1 = time.process_time()
            if hasattr(fit, "fit_periodogram"):
                m = fit.refit
                summaries = fit.summaries(sample)
                c2 = time.process_time()
                loglik = m.surrogate.loglik(summaries, m.tr, y_clean.shape[1], m.n_regressors,
                                            noise_ar=m.noise_ar)
                c3 = time.process_time()
                result = fit_map(loglik, m.precision, m.theta_t0, observed=m.observed,
                                 **{**REFIT_OPTIONS, **m.map_options})
                steps["newton_iterations"].append(result.n_iter)
            else:
                c2 = c3 = c1
                fit(sample)
            c4 = time.process_time()
            for key, value in (("resample", c1 - c0), ("summary", c2 - c1),
                               ("loglik", c3 - c2), ("map", c4 - c3), ("total", c4 - c0)):
                steps[key].append(value)
    return {key: float(np.mean(v)) for key, v in steps.items() if v}


def profile_refits(plan, fit, y_clean: np.ndarray, n_inner: int, top: int = 16) -> None:
    """Where a refit's CPU goes inside its steps: cProfile of one outer resample and its
    ``n_inner`` inner ones as :func:`refit_cost` runs them, the functions with the most
    time of their own."""
    import cProfile
    import pstats

    profiler = cProfile.Profile(time.process_time)  # CPU, as the load varies
    profiler.runcall(refit_cost, plan, fit, y_clean, 1, n_inner)
    print(f"profile of 1 + {n_inner} refits (own CPU seconds, top {top}):")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def periodogram_check(y_clean: np.ndarray, surrogate, refit, tr: float, args,
                      n: int = 10, n_vertices: int = 2000) -> None:
    """Mean periodogram of resamples over the original's, per frequency band.

    Block: the refit re-cleans every resample (without the low-pass), so both sides are
    re-cleaned the same way. Local: the resampled periodograms as the refit reads them.
    A ratio of 1 means resampling kept the spectrum that the summary network reads.
    """

    from bids_app.surrogate.features import periodogram

    spec = replace(surrogate.preprocessing, lowpass=None)
    y = y_clean[:: max(1, y_clean.shape[0] // n_vertices)]
    n_frames = y.shape[1]
    freqs = np.fft.rfftfreq(n_frames, tr)[1: n_frames // 2 + 1]
    bands = np.array_split(np.arange(freqs.size), 5)
    edges = " ".join(f"{freqs[b[0]]:.3f}-{freqs[b[-1]]:.3f}" for b in bands)
    print(f"mean periodogram resampled/original ({args.resampling}), bands (Hz) {edges}:")
    if args.resampling == "block":
        original = periodogram(clean(y, tr, spec)).mean(axis=0)
        for fade in sorted({0, fade_frames(args.fade_s, tr)}):
            for level, r in (("outer", 0), ("inner", 1)):
                mean = np.mean([periodogram(clean(resample_series(
                    y, 123, b, r, args.block_s / tr, fade), tr, spec)).mean(axis=0)
                    for b in range(n)], axis=0)
                ratios = " ".join(f"{mean[b].sum() / original[b].sum():.3f}" for b in bands)
                print(f"  fade {fade} frames, {level}: {ratios}")
        return
    plan, _ = resampling_plan(refit, n_frames, tr, "local")
    data = plan.prepare(y)
    original = data.mean(axis=0)
    for level, r in (("outer", 0), ("inner", 1)):
        mean = np.mean([plan.resample(data, 123, b, r).mean(axis=0) for b in range(n)], axis=0)
        ratios = " ".join(f"{mean[b].sum() / original[b].sum():.3f}" for b in bands)
        print(f"  {level}: {ratios}")
    common_mode_check(plan, data, surrogate.protocol(tr, n_frames, 0), n)


def common_mode_check(plan, data: np.ndarray, protocol, n: int) -> None:
    """What the shared draws move together: per feature band, the SD over outer
    resamples of the vertices' mean log band power, over what independent vertices
    would give (each vertex's SD over resamples / √V; about 1 in a Monte Carlo over
    noise realisations of independent vertices), and the mean shift of the log band
    power from the original's. Median over the bands, and over those of ≥ 4 ordinates."""
    from bids_app.surrogate.features import (
        N_BANDS,
        band_log_power_from_periodogram,
        band_mask,
        ordinate_bands,
    )

    def logs(power):
        log_power, mask = band_log_power_from_periodogram(power, protocol)
        return log_power[:, mask].astype(float)

    boot = np.stack([logs(plan.resample(data, 321, b, 0)) for b in range(max(n, 20))])
    ratio = boot.mean(axis=1).std(axis=0, ddof=1) / (
        boot.std(axis=0, ddof=1).mean(axis=0) / np.sqrt(data.shape[0]))
    shift = boot.mean(axis=(0, 1)) - logs(data).mean(axis=0)
    counts = np.bincount(ordinate_bands(protocol.n_frames, protocol.tr) + 1,
                         minlength=N_BANDS + 1)[1:]
    wide = counts[band_mask(protocol)] >= 4
    print(f"  common mode of log band powers (outer, {data.shape[0]} vertices): SD ratio "
          f"median {np.median(ratio):.2f} (bands of >= 4 ordinates {np.median(ratio[wide]):.2f}); "
          f"mean shift median {np.median(shift):+.3f} ({np.median(shift[wide]):+.3f})")


def likelihood_mle(surrogate, y_clean: np.ndarray, tr: float, noise_ar: float | None
                   ) -> np.ndarray:
    """Per-vertex maximiser of the surrogate log-likelihood alone (no prior, noise colour
    as selected), on a 0.025-wide latent grid over [−4, 4]."""
    summaries = surrogate.summarize(y_clean, tr)
    loglik = surrogate.loglik(summaries, tr, y_clean.shape[1], noise_ar=noise_ar)
    grid = np.linspace(-4.0, 4.0, 321)
    values = np.stack([loglik(np.full((y_clean.shape[0], 1), g))[0] for g in grid])
    return grid[values.argmax(axis=0)]


def diagnose(result, theta_t_hat, truth_t, mle_t, inner: np.ndarray) -> None:
    """The error budget of the intervals in latent units (module docstring).

    ``inner`` is (B, R, V): the inner refits of each outer resample.
    """
    from scipy.special import ndtr

    from bids_app.bootstrap.calibration import (
        LEVEL_FLOOR,
        calibrate_level,
        floor_fraction,
        normal_quantile,
    )

    est, outer = theta_t_hat[:, 0], result.draws.astype(float)[:, :, 0]
    err = est - truth_t
    se = result.se[:, 0]
    print(f"  error budget (latent): estimate - truth mean {err.mean():+.4f}, spatial SD "
          f"{(err - err.mean()).std():.4f}, RMSE {np.sqrt(np.mean(err ** 2)):.4f}; "
          f"bootstrap SE median {np.median(se):.4f}")
    print(f"  likelihood-only maximiser - truth mean {np.mean(mle_t - truth_t):+.4f} "
          f"(SD {np.std(mle_t - truth_t):.3f}): the offset is the surrogate's, "
          f"not the prior's smoothing, when it matches the estimate's")
    covered = np.abs(err - err.mean()) <= 1.959964 * se
    print(f"  coverage of truth + mean offset by estimate ± 1.96 SE: {covered.mean():.3f} "
          f"(the random part alone)")
    outer_shift = outer - est  # (B, V)
    inner_shift = inner - outer[:, None, :]  # (B, R, V)
    corr = np.corrcoef(outer_shift.mean(axis=0), inner_shift.mean(axis=(0, 1)))[0, 1]
    print(f"  resampling shift: outer mean(θ̃*_b - θ̂) {outer_shift.mean():+.4f}, inner "
          f"mean(θ̃**_br - θ̃*_b) {inner_shift.mean():+.4f}, per-vertex correlation {corr:+.3f}; "
          f"inner SD median {np.median(inner.std(axis=1, ddof=1)):.4f}")
    inner_common = (inner.mean(axis=2) - inner.mean(axis=(1, 2))[:, None]).std(
        axis=1, ddof=1).mean()
    print(f"  common mode (latent): SD over resamples of the vertices' mean, outer "
          f"{outer.mean(axis=1).std(ddof=1):.4f}, inner {inner_common:.4f}; per-vertex SD "
          f"median / sqrt(V): outer {np.median(se) / np.sqrt(se.size):.4f}, inner "
          f"{np.median(inner.std(axis=1, ddof=1)) / np.sqrt(se.size):.4f}")
    n_outer = outer.shape[0]
    k = min(n_outer, max(1, int(np.ceil(0.95 * n_outer - 1e-9))))
    ratio = np.abs(outer_shift) / inner.std(axis=1, ddof=1)
    kth = np.sort(ratio, axis=0)[k - 1]
    z5, z50, z95 = np.quantile(kth, [0.05, 0.5, 0.95])
    print(f"  calibration: {k}-th of {n_outer} |θ̂ - θ̃*_b| / sd*_b per vertex, quantiles "
          f"5/50/95 %: {z5:.2f} / {z50:.2f} / {z95:.2f}; unclipped beta(v) at the "
          f"xi = 0.05 quantile: {2 * ndtr(-z95):.3g} (z {z95:.2f}); grid floor "
          f"{LEVEL_FLOOR:g} (z {float(normal_quantile(LEVEL_FLOOR)):.2f})"
          + ("" if result.vertex_levels is None else
             f", vertices on it {floor_fraction(result.vertex_levels[:, 0]):.3f}"))
    # The same check with each vertex's mean resampling shift removed from the outer
    # refits: it calibrates the spread only (what the inner level can see).
    centred = outer - outer_shift.mean(axis=0)
    alpha_c, _ = calibrate_level(est, centred, inner.std(axis=1, ddof=1))
    z_c = float(normal_quantile(alpha_c))
    print(f"  spread-only calibration (outer refits centred per vertex): alpha {alpha_c:.3g} "
          f"(z {z_c:.2f}), covers the truth at {np.mean(np.abs(err) <= z_c * se):.3f}")
    for z in (1.96, 3.89, 5.0, 6.0, 8.03):
        print(f"    estimate ± {z:.2f} SE covers the truth at {np.mean(np.abs(err) <= z * se):.3f}")


def interval_summary(label: str, result, theta_t_hat, truth_t) -> None:
    """Coverage of the truth, mean and median widths and the oracle width (twice the
    95th percentile of |estimate − truth| over vertices: the narrowest width that would
    cover 95 % with one half-width everywhere), in θ and in time-to-peak."""
    maps = natural_intervals(result, theta_t_hat, ONE_PARAM)
    truth = ONE_PARAM.derived(ONE_PARAM.to_theta(truth_t[:, None]))
    for name, unit in (("theta", "1/s"), ("timetopeak", "s")):
        m = maps[name]
        covered = (m.lower <= truth[name]) & (truth[name] <= m.upper)
        width = m.upper - m.lower
        oracle = 2.0 * np.quantile(np.abs(m.estimate - truth[name]), 0.95)
        print(f"  {label:<10} {name:<10} coverage {covered.mean():.3f}  "
              f"mean width {np.mean(width):.4f} {unit}  median width {np.median(width):.4f} "
              f"(oracle {oracle:.4f}, ratio {np.median(width) / oracle:.2f})  "
              f"median SE {np.median(m.se):.4f} {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", choices=sorted(STUDIES), default="fsaverage5")
    parser.add_argument("--B", type=int, default=100)
    parser.add_argument("--R", type=int, default=10)
    parser.add_argument("--resampling", choices=("local", "block"), default="local",
                        help="local periodogram bootstrap (the default) or stationary block "
                             "bootstrap in time")
    parser.add_argument("--block-s", type=float, default=72.0)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fade-s", type=float, default=6.0,
                        help="cross-fade at block joins, seconds (0: none)")
    parser.add_argument("--no-center", action="store_true",
                        help="keep the prior draw's offset (see synthetic_study)")
    parser.add_argument("--nuisance", choices=("hcp", "all", "training"), default="hcp",
                        help="nuisance of the simulated run: the HCP calibration (white/AR(1), "
                             "the issue's study), the same with every beyond-AR(1) kind of "
                             "bench_real_nuisance.py added ('all'), or the 1p surrogate's "
                             "training prior (control)")
    parser.add_argument("--card", type=Path,
                        help="model card of a 1p surrogate to use instead of the shipped one "
                             "(e.g. one trained with hemocoupling-train --noise-context)")
    parser.add_argument("--profile", action="store_true",
                        help="profile a few in-process refits and stop (no bootstrap)")
    parser.add_argument("--report-only", action="store_true",
                        help="skip the periodogram check and the in-process refit timing "
                             "(to report a finished or killed run from --cache-dir)")
    parser.add_argument("--cache-dir", default=None,
                        help="keep refits here (rerunning resumes); default: a temp dir")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    study = STUDIES[args.study]
    tr, n_frames = study["tr"], study["n_frames"]

    t0 = time.perf_counter()
    surrogate = load_surrogate("1p", tr, n_frames, card_path=args.card)
    nuisance, per_run = HCP_1P, None
    if args.nuisance == "all":
        from bench_real_nuisance import KINDS, run_level

        nuisance, per_run = replace(HCP_1P, **KINDS["all"]), run_level
    elif args.nuisance == "training":
        nuisance = surrogate.config.nuisance_prior()
    prior, truth_t, y = synthetic_study(study["space"], tr, n_frames, args.seed,
                                        center=not args.no_center, nuisance_prior=nuisance,
                                        per_run=per_run)
    y_clean = clean(y, tr, surrogate.preprocessing)
    t1 = time.perf_counter()
    theta_t_hat, precision, evidence, noise_ar = point_estimate(prior, surrogate, y_clean, tr)
    t2 = time.perf_counter()
    print(f"study {args.study} ({args.nuisance} nuisance): {y.shape[0]} vertices, "
          f"TR {tr} s, {n_frames} frames; "
          f"simulate+clean {t1 - t0:.1f} s, point estimate {t2 - t1:.1f} s "
          f"(kappa {evidence.kappa:.3g}, tau2 {evidence.tau2:.3g}, noise AR {noise_ar})",
          flush=True)

    refit = MapRefit(surrogate, precision, theta_t_hat, tr, noise_ar=noise_ar)
    if not args.report_only:
        periodogram_check(y_clean, surrogate, refit, tr, args)
        plan, fit = resampling_plan(refit, n_frames, tr, args.resampling, args.block_s,
                                    args.fade_s)
        refit(y_clean)  # first call builds the sparse analysis, as each worker does once
        cost = refit_cost(plan, fit, y_clean, n_inner=args.R)
        split = ", ".join(f"{k} {v:.3f}" for k, v in cost.items()
                          if k not in ("total", "newton_iterations"))
        if "newton_iterations" in cost:
            split += f"; {cost['newton_iterations']:.1f} Newton iterations"
        print(f"per refit ({args.resampling}, {y.shape[0]} vertices, in-process, 1 outer + "
              f"{args.R} inner): {cost['total']:.2f} CPU-s ({split}); B=100, R=10 (1100 "
              f"refits) on 2 idle cores ~ {1100 * cost['total'] / 2 / 60:.1f} min; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        if args.profile:
            profile_refits(plan, fit, y_clean, args.R)
            return
    sim_bias = simulation_bias(refit, theta_t_hat, y_clean, surrogate, tr, args.seed)
    mle_t = likelihood_mle(surrogate, y_clean, tr, noise_ar)
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or tmp
        cpu_before = _cpu_seconds()
        common = dict(B=args.B, block_s=args.block_s, seed=args.seed, fade_s=args.fade_s,
                      resampling=args.resampling, cache_dir=cache_dir)
        double = double_bootstrap(y_clean, refit, theta_t_hat, tr, mode="double", R=args.R,
                                  n_jobs=args.n_jobs, bias_correct=True, **common)
        # The same refits (from the cache), other interval constructions.
        double_raw = double_bootstrap(y_clean, refit, theta_t_hat, tr, mode="double",
                                      R=args.R, bias_correct=False, **common)
        single = double_bootstrap(y_clean, refit, theta_t_hat, tr, mode="single",
                                  bias_correct=True, **common)
        single_raw = double_bootstrap(y_clean, refit, theta_t_hat, tr, mode="single",
                                      bias_correct=False, **common)
        cpu_boot = _cpu_seconds() - cpu_before
        inner = _inner_refits(cache_dir, y_clean, theta_t_hat, tr, args, refit)
    n_fits = args.B * (args.R + 1)
    scheme = (f"block {args.block_s} s ({double.block_frames:.1f} frames)"
              if args.resampling == "block" else f"local, half-width {double.half_width}")
    print(f"bootstrap B={args.B} R={args.R} {scheme}, n_jobs={args.n_jobs}: "
          f"{double.n_refits} refits in {double.seconds:.1f} s wall, {cpu_boot:.0f} CPU-s "
          f"(this process and its workers); load average {os.getloadavg()[0]:.1f}")
    if double.n_refits:
        per_fit_wall = double.seconds / double.n_refits
        per_fit_cpu = cpu_boot / double.n_refits
        print(f"  per refit: {per_fit_wall:.2f} s wall with {args.n_jobs} workers, "
              f"{per_fit_cpu:.2f} CPU-s; B=100, R=10 (1100 refits): "
              f"{1100 * per_fit_wall / 60:.1f} min at this wall rate, "
              f"{1100 * per_fit_cpu / 2 / 60:.1f} min on 2 idle cores")
    if n_fits != double.n_refits:
        print(f"  ({n_fits - double.n_refits} refits came from the cache)")
    print(f"  fade {args.fade_s} s ({fade_frames(args.fade_s, tr)} frames); calibrated level "
          f"alpha_hat = {double.alpha_hat[0]:.4g} bias-corrected, "
          f"{double_raw.alpha_hat[0]:.4g} uncorrected "
          f"(nominal 0.05; z = {_z(double.alpha_hat[0]):.3f} / {_z(double_raw.alpha_hat[0]):.3f})")
    shift = double.draws.astype(float).mean(axis=1)[:, 0] - theta_t_hat.mean()
    print(f"  bootstrap bias of the latent map: mean over resamples of mean(θ̃*_b − θ̃̂) "
          f"{shift.mean():+.3f} (range {shift.min():+.3f} … {shift.max():+.3f}); "
          f"truth − estimate mean {truth_t.mean() - theta_t_hat.mean():+.3f}")
    bias_corrected = theta_t_hat[:, 0] - double.shift[:, 0]
    print(f"  RMSE of the latent map vs truth: estimate "
          f"{np.sqrt(np.mean((theta_t_hat[:, 0] - truth_t) ** 2)):.3f}, bias-corrected "
          f"{np.sqrt(np.mean((bias_corrected - truth_t) ** 2)):.3f}")
    diagnose(double_raw, theta_t_hat, truth_t, mle_t, inner)
    print("  (bc = bootstrap bias correction on; raw = off)")
    interval_summary("double bc", double, theta_t_hat, truth_t)
    interval_summary("double raw", double_raw, theta_t_hat, truth_t)
    interval_summary("single bc", single, theta_t_hat, truth_t)
    interval_summary("single raw", single_raw, theta_t_hat, truth_t)
    if sim_bias is not None:
        corrected = theta_t_hat - sim_bias.shift
        err = corrected[:, 0] - truth_t
        print(f"  simulation-corrected estimate - truth: mean {err.mean():+.4f}, spatial SD "
              f"{err.std():.4f}")
        print("  (sim = simulation bias correction, as the workflow applies it by default)")
        interval_summary("double sim", shift_result(double_raw, sim_bias.shift), corrected,
                         truth_t)
        interval_summary("single sim", shift_result(single_raw, sim_bias.shift), corrected,
                         truth_t)
        mse_sim = np.mean((ONE_PARAM.to_theta(corrected[:, :1])[:, 0]
                           - ONE_PARAM.to_theta(truth_t[:, None])[:, 0]) ** 2)
        print(f"  point estimate MSE(theta) after the simulation correction {mse_sim:.4f}")
    mse = np.mean((ONE_PARAM.to_theta(theta_t_hat[:, :1])[:, 0]
                   - ONE_PARAM.to_theta(truth_t[:, None])[:, 0]) ** 2)
    print(f"  point estimate MSE(theta) {mse:.4f}")


def simulation_bias(refit: MapRefit, theta_t_hat: np.ndarray, y_clean: np.ndarray,
                    surrogate, tr: float, seed: int):
    """The workflow's simulation bias correction (None where it is skipped), timed."""
    reason = skip_reason(surrogate.model.name)
    if reason is not None:
        print(f"simulation bias correction skipped: {reason}")
        return None
    w, c = time.perf_counter(), time.process_time()
    bias = simulated_bias(refit, theta_t_hat, y_clean, None, seed)
    if bias.skipped is not None:
        print(f"simulation bias correction skipped: {bias.skipped}")
    print(f"simulation bias correction: {bias.match.prior} (log-spectrum distance "
          f"{bias.match.distance:.4f}, {bias.match.n_evaluations} evaluations), mean shift "
          f"{bias.shift.mean():+.4f}; {time.perf_counter() - w:.0f} s wall, "
          f"{time.process_time() - c:.0f} CPU-s", flush=True)
    return bias


def _z(alpha: float) -> float:
    from bids_app.bootstrap.calibration import normal_quantile

    return float(normal_quantile(alpha))


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live and reaped children
    (joblib's loky workers stay alive between calls, so psutil reads them)."""
    import resource

    import psutil

    total = sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
                for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _inner_refits(cache_dir, y_clean, theta_t_hat, tr, args, refit) -> np.ndarray:
    """(B, R, V) inner refits, read back from the resume cache."""
    from bids_app.bootstrap.cache import RefitCache, cache_key

    plan, fit = resampling_plan(refit, y_clean.shape[1], tr, args.resampling, args.block_s,
                                args.fade_s)
    cache = RefitCache(cache_dir, cache_key([y_clean, tr], theta_t_hat, args.seed, fit,
                                            plan.token))
    return np.array([[cache.load(b, r)[:, 0] for r in range(1, args.R + 1)]
                     for b in range(args.B)], dtype=float)


if __name__ == "__main__":
    main()
