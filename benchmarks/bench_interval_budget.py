"""Monte Carlo error budget of the intervals: what the bootstrap SE misses, over runs.

One bootstrap sees one run. Here one true field (bench_bootstrap.py's study, seed 0) is
observed in ``--runs`` independent runs (new nuisance, neural events and noise each time);
every run gets the workflow's point estimate, its simulated bias correction and a single
local bootstrap (``--B`` refits). Over the runs, per vertex:

- the sampling SD of the estimate, corrected or not (what the bootstrap SE should be);
- the bias map (mean over runs − truth): its mean, and its spatial SD after the mean is
  removed (the prior's smoothing and any θ-dependent likelihood bias: no resampling of
  one run sees it);
- the SD over runs of each run's mean error (the common mode, one draw per run for all
  vertices: for the correction, the matched regime's randomness);
- coverage of the truth by corrected ± 1.96 SE (the workflow's single interval), per run
  and pooled, and of the truth plus the mean bias (what the mean bias left costs).

Examples
--------
    .venv/bin/python benchmarks/bench_interval_budget.py --study fsaverage5 --runs 12
    .venv/bin/python benchmarks/bench_interval_budget.py --study fslr32k --runs 8 --B 40
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

for _var in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from bench_bootstrap import STUDIES, point_estimate, study_field, study_run  # noqa: E402

from bids_app.bias.simulated import simulated_bias  # noqa: E402
from bids_app.bootstrap import double_bootstrap  # noqa: E402
from bids_app.inference.refit import MapRefit  # noqa: E402
from bids_app.preprocess import clean  # noqa: E402
from bids_app.simulate import HCP_1P  # noqa: E402
from bids_app.surrogate import load_surrogate  # noqa: E402

Z95 = 1.959964


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", choices=sorted(STUDIES), default="fsaverage5")
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--B", type=int, default=40, help="single local bootstrap per run")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--nuisance", choices=("hcp", "all"), default="hcp",
                        help="as bench_bootstrap.py --nuisance")
    args = parser.parse_args()
    study = STUDIES[args.study]
    tr, n_frames = study["tr"], study["n_frames"]
    surrogate = load_surrogate("1p", tr, n_frames)
    nuisance, per_run = HCP_1P, None
    if args.nuisance == "all":
        from bench_real_nuisance import KINDS, run_level

        nuisance, per_run = replace(HCP_1P, **KINDS["all"]), run_level
    prior, truth = study_field(study["space"], np.random.default_rng(0))

    estimates, corrected, ses = [], [], []
    for run in range(args.runs):
        started = time.perf_counter()
        rng = np.random.default_rng([0, 77, run])
        y = clean(study_run(truth, tr, n_frames, rng, nuisance, per_run), tr,
                  surrogate.preprocessing)
        theta_t, precision, evidence, noise_ar = point_estimate(prior, surrogate, y, tr)
        refit = MapRefit(surrogate, precision, theta_t, tr, noise_ar=noise_ar)
        bias = simulated_bias(refit, theta_t, y, None, run)
        boot = double_bootstrap(y, refit, theta_t, tr, mode="single", B=args.B, R=0,
                                seed=run, n_jobs=args.n_jobs, cache_dir=None)
        estimates.append(theta_t[:, 0])
        corrected.append(theta_t[:, 0] - bias.shift[:, 0])
        ses.append(boot.se[:, 0])
        covered = np.abs(corrected[-1] - truth) <= Z95 * ses[-1]
        print(f"run {run}: kappa {evidence.kappa:.3g}, tau2 {evidence.tau2:.3g}; mean error "
              f"estimate {estimates[-1].mean() - truth.mean():+.3f}, corrected "
              f"{corrected[-1].mean() - truth.mean():+.3f} ({bias.skipped or 'applied'}, "
              f"{bias.iterations} iterations); SE median {np.median(ses[-1]):.4f}; "
              f"coverage {covered.mean():.3f}; {time.perf_counter() - started:.0f} s",
              flush=True)
    ses = np.array(ses)
    print(f"\n{args.study}, {args.nuisance} nuisance, {args.runs} runs, single local "
          f"bootstrap B = {args.B} (latent units)")
    print(f"bootstrap SE median {np.median(ses):.4f} (SD over runs of the per-run median "
          f"{np.median(ses, axis=1).std(ddof=1):.4f})")
    for name, values in (("estimate", np.array(estimates)), ("corrected", np.array(corrected))):
        budget(name, values, truth, ses)


def budget(name: str, values: np.ndarray, truth: np.ndarray, ses: np.ndarray) -> None:
    """Print the error budget of ``values`` (runs, V) against ``truth`` and the SEs."""
    sd = values.std(axis=0, ddof=1)
    bias = values.mean(axis=0) - truth
    error = values - truth
    covered = np.abs(error) <= Z95 * ses
    covered_centred = np.abs(error - bias.mean()) <= Z95 * ses
    print(f"{name}: sampling SD median {np.median(sd):.4f} (SE / SD median "
          f"{np.median(ses.mean(axis=0) / sd):.2f}); bias mean {bias.mean():+.4f}, spatial SD "
          f"{(bias - bias.mean()).std():.4f}; SD over runs of the run's mean error "
          f"{error.mean(axis=1).std(ddof=1):.4f}")
    print(f"  ± 1.96 SE covers the truth at {covered.mean():.3f} (runs "
          f"{covered.mean(axis=1).min():.3f}-{covered.mean(axis=1).max():.3f}); the truth "
          f"plus the mean bias at {covered_centred.mean():.3f}")


if __name__ == "__main__":
    main()
