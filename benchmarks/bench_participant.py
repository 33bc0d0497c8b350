"""Wall and CPU time of ``hemocoupling … participant`` on one simulated subject.

Default: fsLR 32k (2 × 32,492 vertices), 1 run, TR 0.72 s, 1,200 frames, the default
evidence grid (4 κ × 5 τ²). Runs the participant level without bootstrap, then with a
small double bootstrap (B outer × R inner), and extrapolates the latter to B = 100,
R = 10 from the measured CPU cost per refit (the refits dominate and scale linearly).
CPU seconds are user + system of the command's process tree (``os.wait4``); wall
times are printed as measured but depend on the machine's load.

    .venv/bin/python benchmarks/bench_participant.py [--mesh fsLR32k] [--frames 1200]
        [--boot 4 2] [--nprocs 1] [--work-dir /tmp/bench_participant]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(args: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the process tree) of one command; exits on failure."""
    start = time.perf_counter()
    process = subprocess.Popen([str(a) for a in args])
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(map(str, args))}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", choices=("fsaverage5", "fsLR32k"), default="fsLR32k")
    parser.add_argument("--frames", type=int, default=1200)
    parser.add_argument("--tr", type=float, default=0.72)
    parser.add_argument("--boot", type=int, nargs=2, default=(4, 2), metavar=("B", "R"))
    parser.add_argument("--nprocs", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/bench_participant"))
    args = parser.parse_args()

    data = args.work_dir / f"sim_{args.mesh}_{args.frames}"
    if not data.is_dir():
        timed([BIN / "hemocoupling-simulate", data, "--mesh", args.mesh, "--subjects", 1,
               "--tr", args.tr, "--frames", args.frames, "--model", "1p", "--seed", 0])
    common = ["participant", "--nprocs", args.nprocs, "--omp-nthreads", 1, "--no-report"]
    results = {}
    b, r = args.boot
    for label, extra in (("none", ["--bootstrap", "none"]),
                         (f"double B={b} R={r}", ["--bootstrap", "double", "--n-boot", b,
                                                  "--n-inner", r])):
        out = args.work_dir / f"out_{label.split()[0]}"
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(args.work_dir / "work", ignore_errors=True)
        results[label] = timed([BIN / "hemocoupling", data, out, *common, "-w",
                                args.work_dir / "work", *extra])
        print(f"{args.mesh}, {args.frames} frames, --bootstrap {label}: "
              f"wall {results[label][0]:.0f} s, CPU {results[label][1]:.0f} s", flush=True)
    (_, cpu0), (_, cpu1) = results.values()
    refits = 2 * b * (r + 1)  # both hemispheres
    per_cpu = (cpu1 - cpu0) / refits
    full = 2 * 100 * 11
    # Wall time on a shared machine is not reproducible; extrapolate from CPU seconds,
    # with the refits spread over --nprocs otherwise idle cores.
    print(f"per refit: CPU {per_cpu:.2f} s; extrapolated double bootstrap B=100 R=10 "
          f"({full} refits): CPU {cpu0 + full * per_cpu:.0f} s, wall on {args.nprocs} free "
          f"core(s) ≈ {cpu0 + full * per_cpu / args.nprocs:.0f} s")

if __name__ == "__main__":
    main()
