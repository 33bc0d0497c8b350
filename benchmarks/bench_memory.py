"""Peak memory of the main process and of each bootstrap worker of ``hemocoupling``.

Runs ``hemocoupling … participant --bootstrap single --nprocs 2`` on one simulated
subject per mesh and samples the resident memory (RSS) of the process tree with psutil:
the main process, and every worker process (loky) it starts. The per-worker peaks are
what ``--mem`` divides the memory by (``bids_app.cli.resources``): compare the printed
figures with ``worker_mb`` there.

    .venv/bin/python benchmarks/bench_memory.py [--meshes fsaverage5 fsLR32k]
        [--frames 300] [--n-boot 4] [--work-dir /tmp/bench_memory]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent
VERTICES = {"fsaverage5": 10242, "fsLR32k": 32492}


def peak_rss(args: list[str], interval: float = 0.2) -> tuple[float, list[float]]:
    """(peak MB of the main process, peak MB of each child process) of one command."""
    process = subprocess.Popen([str(a) for a in args])
    main = psutil.Process(process.pid)
    main_peak, children = 0.0, {}
    while process.poll() is None:
        try:
            main_peak = max(main_peak, main.memory_info().rss)
            for child in main.children(recursive=True):
                children[child.pid] = max(children.get(child.pid, 0), child.memory_info().rss)
        except psutil.Error:  # a worker ended between listing and reading
            pass
        time.sleep(interval)
    if process.returncode != 0:
        sys.exit(f"failed ({process.returncode}): {' '.join(map(str, args))}")
    return main_peak / 2**20, sorted((rss / 2**20 for rss in children.values()), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meshes", nargs="+", choices=tuple(VERTICES),
                        default=["fsaverage5", "fsLR32k"])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--n-boot", type=int, default=4)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/bench_memory"))
    args = parser.parse_args()
    for mesh in args.meshes:
        data = args.work_dir / f"sim_{mesh}_{args.frames}"
        if not data.is_dir():
            subprocess.run([str(BIN / "hemocoupling-simulate"), str(data), "--mesh", mesh,
                            "--subjects", "1", "--tr", "1.0", "--frames", str(args.frames),
                            "--seed", "0"], check=True)
        out, work = args.work_dir / f"out_{mesh}", args.work_dir / f"work_{mesh}"
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        main_mb, workers = peak_rss([
            BIN / "hemocoupling", data, out, "participant", "-w", work, "--no-report",
            "--bootstrap", "single", "--n-boot", args.n_boot, "--nprocs", 2,
            "--omp-nthreads", 1, "--bias-correction", "none"])
        biggest = ", ".join(f"{mb:.0f}" for mb in workers[:4])
        print(f"{mesh} ({VERTICES[mesh]} vertices/hemisphere), {args.frames} frames: "
              f"main peak {main_mb:.0f} MB; worker peaks (largest 4 of {len(workers)}) "
              f"{biggest} MB", flush=True)


if __name__ == "__main__":
    main()
