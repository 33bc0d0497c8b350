"""Where a bootstrap refit's CPU goes: an in-process double bootstrap, step by step.

The study of ``bench_bootstrap.py`` (fsLR 32k left hemisphere, white HCP noise, seed 0,
its evidence-selected point estimate and MapRefit), then ``double_bootstrap`` with
``--B`` outer and ``--R`` inner resamples in this process (``n_jobs=1``: every refit is
seen by the profiler), profiled with CPU time. Printed: CPU seconds per refit of each
step (from the cumulative time of the functions that make it up) and the total;
``--plain`` runs without the profiler and prints the total only. The digest of the
lower bounds tells whether two checkouts give the same intervals. Only public entry
points are used, so the same script measures another checkout
(``PYTHONPATH=/path/to/other/tree``); run two checkouts side by side to compare them
at the same load.

``--bold`` takes one hemisphere of a dataset's run instead (a GIFTI series, its
surface, TR and optionally a confounds table for 24P), fitted as the workflow fits it
(evidence-selected MAP, no bias correction); the factorisations of the refits are
counted too (a field in the likelihood's flat end refactorises more).

    .venv/bin/python benchmarks/bench_refit_steps.py [--study fslr32k] [--B 2] [--R 10]
        [--plain] [--bold FUNC.GII --surface SURF.GII --tr TR [--confounds TSV]]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from bench_bootstrap import STUDIES, point_estimate, synthetic_study  # noqa: E402

from bids_app.bootstrap import double_bootstrap  # noqa: E402
from bids_app.bootstrap.intervals import BootstrapOptions  # noqa: E402
from bids_app.digest import array_digest  # noqa: E402
from bids_app.fit import FitOptions, clean_usable_vertices, fit_hemisphere  # noqa: E402
from bids_app.inference import refit as refit_module  # noqa: E402
from bids_app.inference.refit import MapRefit  # noqa: E402
from bids_app.io.confounds import read_confounds, strategy_regressors  # noqa: E402
from bids_app.io.surface_files import load_func_gifti, load_surface  # noqa: E402
from bids_app.preprocess import clean  # noqa: E402
from bids_app.surrogate import load_surrogate  # noqa: E402


def cumulative(stats: dict, ending: str, function: str) -> float:
    """CPU seconds spent in (and below) the functions of that name in files ending so."""
    return sum(entry[3] for (filename, _, name), entry in stats.items()
               if filename.endswith(ending) and name == function)


def steps(stats: dict) -> dict[str, float]:
    """CPU seconds per step, from cumulative times (a generator's resumptions count)."""
    drawn = (cumulative(stats, "bootstrap/double.py", "resamples")
             or cumulative(stats, "bootstrap/double.py", "resample"))
    summaries = cumulative(stats, "bootstrap/periodogram_refit.py", "summaries")
    features = cumulative(stats, "surrogate/features.py", "band_log_power_from_periodogram")
    binding = cumulative(stats, "surrogate/registry.py", "loglik")
    fit = cumulative(stats, "inference/map.py", "fit_map")
    factor = cumulative(stats, "prior/cholesky.py", "_factor_cholmod")
    solves = cumulative(stats, "prior/cholesky.py", "solve")
    likelihood = cumulative(stats, "surrogate/likelihood.py", "loglik")
    total = cumulative(stats, "bootstrap/double.py", "double_bootstrap")
    return {
        "resample (local periodogram)": drawn,
        "summary: features (band log powers)": features,
        "summary: network and the rest": summaries - features,
        "likelihood binding": binding,
        "MAP: CHOLMOD factorisation": factor,
        "MAP: CHOLMOD solves (PCG and Newton)": solves,
        "MAP: likelihood evaluations (1p table)": likelihood,
        "MAP: the rest (sparse products, assembly, line search)":
            fit - factor - solves - likelihood,
        "bootstrap bookkeeping (periodogram of the run, cache, calibration)":
            total - drawn - summaries - binding - fit,
        "total": total,
    }


def synthetic_refit(study_name: str):
    """The bench_bootstrap study's cleaned series, point estimate and refit."""
    study = STUDIES[study_name]
    tr, n_frames = study["tr"], study["n_frames"]
    surrogate = load_surrogate("1p", tr, n_frames)
    prior, _, y = synthetic_study(study["space"], tr, n_frames, 0)
    y_clean = clean(y, tr, surrogate.preprocessing)
    theta_t_hat, precision, _, noise_ar = point_estimate(prior, surrogate, y_clean, tr)
    return y_clean, theta_t_hat, MapRefit(surrogate, precision, theta_t_hat, tr,
                                          noise_ar=noise_ar)


def dataset_refit(bold: Path, surface: Path, tr: float, confounds: Path | None):
    """One hemisphere of a dataset's run, fitted as the workflow fits it (24P when a
    confounds table is given), without the bias correction or the bootstrap."""
    series, _ = load_func_gifti(bold)
    mesh = load_surface(surface)
    regressors = None
    if confounds is not None:
        _, regressors = strategy_regressors(read_confounds(confounds), "24P")
    surrogate = load_surrogate("1p", tr, series.shape[1])
    options = FitOptions(bootstrap=BootstrapOptions(mode="none"), bias_correction="none")
    result = fit_hemisphere(series, mesh, tr, surrogate, options, confounds=regressors)
    y_clean, *_ = clean_usable_vertices(series, np.arange(len(series)), len(mesh[0]), tr,
                                        surrogate.preprocessing, mesh, regressors, "run")
    return y_clean, result.theta_t, result.refit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", choices=sorted(STUDIES), default="fslr32k")
    parser.add_argument("--B", type=int, default=2)
    parser.add_argument("--R", type=int, default=10)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--plain", action="store_true",
                        help="no profiler (it adds ~25 %%): the total CPU per refit only")
    parser.add_argument("--bold", type=Path, help="a hemisphere's GIFTI series instead")
    parser.add_argument("--surface", type=Path, help="its surface (with --bold)")
    parser.add_argument("--tr", type=float, help="its repetition time, s (with --bold)")
    parser.add_argument("--confounds", type=Path, help="its confounds table (24P; optional)")
    args = parser.parse_args()
    if args.bold is not None:
        if args.surface is None or args.tr is None:
            parser.error("--bold needs --surface and --tr")
        label = args.bold.name
        y_clean, theta_t_hat, refit = dataset_refit(args.bold, args.surface, args.tr,
                                                    args.confounds)
    else:
        label = args.study
        y_clean, theta_t_hat, refit = synthetic_refit(args.study)
    tr = refit.tr
    refit(y_clean)  # the sparse analysis and the likelihood table, as each worker once
    factorised = sum(c.n_factorizations for c in refit_module._CHOLESKY.values())

    profiler = cProfile.Profile(time.process_time)
    run = profiler.runcall if not args.plain else lambda f, *a, **k: f(*a, **k)
    with tempfile.TemporaryDirectory() as tmp:
        cpu = time.process_time()
        result = run(double_bootstrap, y_clean, refit, theta_t_hat, tr, mode="double",
                     B=args.B, R=args.R, seed=args.seed, n_jobs=1, cache_dir=tmp,
                     progress=False)
        cpu = time.process_time() - cpu
    n = result.n_refits
    factorised = sum(c.n_factorizations for c in refit_module._CHOLESKY.values()) - factorised
    print(f"{label}: {y_clean.shape[0]} vertices, B={args.B} R={args.R}, {n} refits in "
          f"process, {factorised / n:.2f} factorisations per refit; load average "
          f"{os.getloadavg()[0]:.1f}; intervals digest {array_digest(result.lower)[:12]}")
    if args.plain:
        print(f"  total {cpu / n:.3f} CPU-s per refit (no profiler)")
        return
    stats = pstats.Stats(profiler).stats
    split = steps(stats)
    for step, seconds in split.items():
        print(f"  {step:<68} {seconds / n:6.3f} CPU-s per refit "
              f"({seconds / split['total']:5.1%})")


if __name__ == "__main__":
    main()
