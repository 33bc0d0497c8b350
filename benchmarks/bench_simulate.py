"""Time and peak memory of simulating one fsLR hemisphere: 32,492 vertices × 1,300 frames.

Target (issue 2): < 20 s and < 4 GB on the 2-core development machine. The authors'
dense-Toeplitz simulator needs ≈ 5 s per 100 series (≈ 27 min per hemisphere).

Run: ``.venv/bin/python benchmarks/bench_simulate.py [--vertices N] [--frames N]``
Prints wall time of the raw simulation and of simulation + cleaning, the peak of
numpy allocations (tracemalloc) and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
from threadpoolctl import threadpool_limits

from bids_app.models import ONE_PARAM
from bids_app.preprocess import Preprocessing
from bids_app.simulate.bold import HCP_1P, sample_nuisance, simulate_bold, simulate_training_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vertices", type=int, default=32_492)
    parser.add_argument("--frames", type=int, default=1_300)
    parser.add_argument("--tr", type=float, default=0.72)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    theta = ONE_PARAM.to_theta(rng.standard_normal((args.vertices, 1)))
    with threadpool_limits(args.threads):
        tracemalloc.start()
        start = time.perf_counter()
        nuisance = sample_nuisance(HCP_1P, args.vertices, rng)
        y = simulate_bold(ONE_PARAM, theta, args.tr, args.frames, nuisance, rng)
        raw_s = time.perf_counter() - start
        _, raw_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        start = time.perf_counter()
        simulate_training_set(ONE_PARAM, args.vertices, args.tr, args.frames, HCP_1P,
                              Preprocessing(), rng)
        full_s = time.perf_counter() - start
        _, full_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"series: {args.vertices} vertices x {args.frames} frames, TR {args.tr} s, "
          f"{args.threads} thread(s); output {y.nbytes / 1e6:.0f} MB float32")
    print(f"simulate_bold:          {raw_s:6.2f} s, numpy peak {raw_peak / 1e9:.2f} GB")
    print(f"simulate_training_set:  {full_s:6.2f} s, numpy peak {full_peak / 1e9:.2f} GB "
          "(theta draw + simulation + clean())")
    print(f"process peak RSS:       {rss_gb:.2f} GB (includes interpreter and imports)")


if __name__ == "__main__":
    main()
