"""Side by side with the peer tool rsHRF 1.8.0: time-to-peak accuracy and CPU cost.

Both tools see the same simulated data (issue 7): one ``hemocoupling-simulate``
subject on fsaverage5, one-parameter model, TR 0.72 s, 1,200 frames, the published HCP
calibration, true latent field from the SPDE prior (κ = 5e-3 /mm, τ² = 1e4); the true
time-to-peak 5/θ (s) is read from ``sourcedata/truth/``.

- hemocoupling: the full app, ``hemocoupling SIM OUT participant --bootstrap none``, on
  both hemispheres (20,484 vertices); its ``param-timetopeak_stat-estimate`` maps.
- rsHRF 1.8.0 (default canon2dd, ``--no-bids --TR 0.72 --n_jobs 1``) in its own venv
  (its numpy/scipy pins may differ from ours). rsHRF fits every vertex on its own, so a
  random vertex subset (half from each hemisphere, written as one GIFTI) measures it
  exactly as the whole mesh would, in a fraction of the time; ``--rshrf-vertices 0`` runs
  both full hemispheres (≈ 17 CPU-min more). Its ``*_T2P.gii`` map is its time-to-peak (s).

Printed: one row per tool (plus hemocoupling scored on rsHRF's subset) with the Pearson r
with the true time-to-peak within each hemisphere (the truth field is smooth at the
hemisphere scale, so a pooled r would mostly score the difference of hemisphere means),
the MSE (s²) and bias (s) over both, and the CPU seconds (user + system of the process
and its children, from ``os.wait4``) in total and per 1,000 vertices, with peak RSS.
Every subprocess runs with one BLAS/OpenMP thread.

Run (rsHRF venv created at ``--rshrf-venv`` with ``pip install rshrf==1.8.0`` if absent)::

    .venv/bin/python benchmarks/bench_rshrf.py [--work-dir /tmp/hemocoupling-bench-rshrf]
        [--rshrf-venv /tmp/rshrf] [--rshrf-vertices 1000] [--seed 7]
        [--kappa 5e-3 --tau2 1e4]

The simulated dataset in ``WORK_DIR/sim`` is reused when its truth.json matches. At
κ = 5e-3 /mm the truth's correlation range (√8/κ ≈ 570 mm) spans a hemisphere, so the
within-hemisphere spread is small; ``--kappa 5e-2 --tau2 1e2`` keeps the marginal
variance 1/(4πκ²τ²) and shortens the range to ≈ 57 mm (use another ``--work-dir``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

RSHRF_VERSION = "1.8.0"
SIMULATION = {"mesh": "fsaverage5", "tr": 0.72, "n_frames": 1200, "model": "1p"}
HEMIS = ("L", "R")


@dataclass
class Cost:
    """CPU seconds (user + system, children included) and peak RSS (MB) of one command."""

    cpu_s: float
    max_rss_mb: float


def run_measured(cmd: list[str], env: dict[str, str], log: Path) -> Cost:
    """Run ``cmd`` to completion with output in ``log``; raise if it fails.

    ``os.wait4`` returns the rusage of this child alone, which already includes the
    grandchildren it reaped (e.g. joblib workers), so the two tools are timed apart.
    """
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed with exit code {proc.returncode}; see {log}")
    return Cost(usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def source_version() -> str:
    """``git describe`` of this checkout (``-dirty`` when it has uncommitted changes)."""
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"],
                          capture_output=True, text=True)
    return done.stdout.strip() or "unknown (not a git checkout)"


def single_threaded_env() -> dict[str, str]:
    """Environment with one BLAS/OpenMP thread and the offline TemplateFlow copy if present."""
    env = dict(os.environ, MPLBACKEND="Agg")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "templateflow"
    if "TEMPLATEFLOW_HOME" not in env and shared.is_dir():
        env.update(TEMPLATEFLOW_HOME=str(shared), TEMPLATEFLOW_AUTOUPDATE="0")
    return env


def ensure_rshrf(venv: Path) -> Path:
    """Path of the ``rsHRF`` command in ``venv``, creating the venv if it is missing."""
    command = venv / "bin" / "rsHRF"
    if not command.exists():
        print(f"creating {venv} with rshrf=={RSHRF_VERSION} (separate from the project venv)")
        base = shutil.which("python3") or sys.executable
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"rshrf=={RSHRF_VERSION}"],
                       check=True)
    version = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('rshrf'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    if version != RSHRF_VERSION:
        sys.exit(f"{venv} has rshrf {version}, expected {RSHRF_VERSION}; pass another "
                 "--rshrf-venv (it is created there)")
    return command


def ensure_dataset(sim_dir: Path, seed: int, kappa: float, tau2: float,
                   env: dict[str, str]) -> None:
    """Simulate the study into ``sim_dir`` unless a matching dataset is already there."""
    truth_json = sim_dir / "sourcedata" / "truth" / "truth.json"
    if truth_json.exists():
        truth = json.loads(truth_json.read_text())
        wanted = dict(SIMULATION, seed=seed, n_subjects=1, kappa=kappa, tau2=tau2)
        if all(truth.get(k) == v for k, v in wanted.items()):
            print(f"reusing the simulated dataset {sim_dir}")
            return
        shutil.rmtree(sim_dir)
    subprocess.run([sys.executable, "-m", "bids_app.simulate", str(sim_dir),
                    "--mesh", SIMULATION["mesh"], "--subjects", "1",
                    "--tr", str(SIMULATION["tr"]), "--frames", str(SIMULATION["n_frames"]),
                    "--model", SIMULATION["model"], "--seed", str(seed),
                    "--kappa", str(kappa), "--tau2", str(tau2)],
                   check=True, env=env)


def gifti_array(path: Path, name: str | None = None) -> np.ndarray:
    """One data array of a GIFTI (the one whose Name is ``name``, else the first)."""
    arrays = nib.load(path).darrays
    if name is not None:
        arrays = [a for a in arrays if a.meta.get("Name") == name]
    return np.asarray(arrays[0].data, dtype=float)


def true_time_to_peak(sim_dir: Path) -> dict[str, np.ndarray]:
    """True time-to-peak (s) per hemisphere."""
    truth = sim_dir / "sourcedata" / "truth" / "sub-01"
    return {h: gifti_array(truth / f"sub-01_hemi-{h}_space-fsaverage5_desc-truth_derived"
                                    ".func.gii", "timetopeak") for h in HEMIS}


def run_hemocoupling(sim_dir: Path, out_dir: Path, env: dict[str, str]
                     ) -> tuple[dict[str, np.ndarray], Cost]:
    """The full participant level without bootstrap; time-to-peak map (s) per hemisphere."""
    shutil.rmtree(out_dir, ignore_errors=True)
    cost = run_measured([sys.executable, "-m", "bids_app.cli.run", str(sim_dir), str(out_dir),
                         "participant", "--bootstrap", "none", "--no-report", "--nprocs", "1",
                         "--omp-nthreads", "1", "-w", str(out_dir / "work")],
                        env, out_dir.parent / "hemocoupling.log")
    maps = {}
    for h in HEMIS:
        (path,) = (out_dir / "sub-01" / "func").glob(
            f"*_hemi-{h}_*param-timetopeak_stat-estimate_boldmap.func.gii")
        maps[h] = gifti_array(path)
    return maps, cost


def subset_indices(n_per_hemi: dict[str, int], n_total: int, seed: int
                   ) -> dict[str, np.ndarray]:
    """Random sorted vertex indices per hemisphere, half of ``n_total`` from each."""
    rng = np.random.default_rng(seed)
    take = {h: n_total // 2 + (n_total % 2 if h == "L" else 0) for h in HEMIS}
    return {h: np.sort(rng.choice(n_per_hemi[h], min(take[h], n_per_hemi[h]), replace=False))
            for h in HEMIS}


def write_subset_gifti(sim_dir: Path, subset: dict[str, np.ndarray], path: Path) -> None:
    """One GIFTI time series (one array per frame) of the subset vertices, L then R."""
    func = sim_dir / "sub-01" / "func"
    blocks = []
    for h in HEMIS:
        image = nib.load(func / f"sub-01_task-rest_hemi-{h}_space-fsaverage5_bold.func.gii")
        blocks.append(np.stack([a.data for a in image.darrays], axis=1)[subset[h]])
    series = np.concatenate(blocks).astype(np.float32)
    arrays = [nib.gifti.GiftiDataArray(series[:, t], intent="NIFTI_INTENT_TIME_SERIES",
                                       datatype="NIFTI_TYPE_FLOAT32")
              for t in range(series.shape[1])]
    nib.save(nib.GiftiImage(darrays=arrays), path)


def run_rshrf(rshrf: Path, bold: Path, out_dir: Path, subset: dict[str, np.ndarray],
              env: dict[str, str]) -> tuple[dict[str, np.ndarray], Cost]:
    """rsHRF canon2dd on ``bold``; its T2P (s) split back into hemispheres (0 → NaN)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    cost = run_measured([str(rshrf), str(bold), str(out_dir), "--no-bids",
                         "--TR", str(SIMULATION["tr"]), "--estimation", "canon2dd",
                         "--n_jobs", "1"], env, out_dir.parent / "rshrf.log")
    (path,) = out_dir.glob("*_T2P.gii")
    t2p = gifti_array(path)
    t2p[t2p == 0] = np.nan  # rsHRF writes 0 where it found no HRF
    n_left = subset["L"].size
    return {"L": t2p[:n_left], "R": t2p[n_left:]}, cost


def score(name: str, estimate: dict[str, np.ndarray], truth: dict[str, np.ndarray],
          cost: Cost | None, n_fitted: int) -> str:
    """One table row: r per hemisphere, MSE and bias over both, CPU per 1,000 vertices."""
    r = {}
    errors = []
    for h in HEMIS:
        ok = np.isfinite(estimate[h])
        r[h] = np.corrcoef(estimate[h][ok], truth[h][ok])[0, 1]
        errors.append(estimate[h][ok] - truth[h][ok])
    error = np.concatenate(errors)
    cpu = (f"{cost.cpu_s:9.1f} {1000 * cost.cpu_s / n_fitted:9.1f} {cost.max_rss_mb:8.0f}"
           if cost else f"{'(same run)':>28}")
    return (f"{name:<30} {error.size:>6} {r['L']:6.3f} {r['R']:6.3f} {np.mean(error**2):8.4f} "
            f"{np.mean(error):7.3f} {n_fitted:>7} {cpu}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/hemocoupling-bench-rshrf"),
                        help="simulated data, outputs and logs go here")
    parser.add_argument("--rshrf-venv", type=Path, default=Path("/tmp/rshrf"),
                        help=f"venv with rshrf=={RSHRF_VERSION} (created if missing)")
    parser.add_argument("--rshrf-vertices", type=int, default=1000,
                        help="random vertices given to rsHRF, half per hemisphere (0: all)")
    parser.add_argument("--seed", type=int, default=7, help="simulation and subset seed")
    parser.add_argument("--kappa", type=float, default=5e-3,
                        help="SPDE range parameter of the true field, 1/mm (issue 7: 5e-3)")
    parser.add_argument("--tau2", type=float, default=1e4,
                        help="SPDE precision scale of the true field (issue 7: 1e4)")
    args = parser.parse_args()

    env = single_threaded_env()
    rshrf = ensure_rshrf(args.rshrf_venv)
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    sim_dir = work / "sim"
    ensure_dataset(sim_dir, args.seed, args.kappa, args.tau2, env)
    truth = true_time_to_peak(sim_dir)
    n_per_hemi = {h: truth[h].size for h in HEMIS}
    n_subset = args.rshrf_vertices or sum(n_per_hemi.values())
    subset = subset_indices(n_per_hemi, n_subset, args.seed)
    n_subset = sum(s.size for s in subset.values())

    print("hemocoupling participant level (both hemispheres) ...", flush=True)
    ours, ours_cost = run_hemocoupling(sim_dir, work / "hemocoupling", env)
    print(f"rsHRF {RSHRF_VERSION} canon2dd on {n_subset} vertices ...", flush=True)
    bold = work / "rshrf_subset_bold.func.gii"
    write_subset_gifti(sim_dir, subset, bold)
    peer, peer_cost = run_rshrf(rshrf, bold, work / "rshrf", subset, env)

    spread = ", ".join(f"{h} {truth[h].min():.2f}-{truth[h].max():.2f} s "
                       f"(SD {truth[h].std():.3f})" for h in HEMIS)
    print(f"\nhemocoupling source {source_version()}\n"
          f"fsaverage5, 1p, TR {SIMULATION['tr']} s, {SIMULATION['n_frames']} frames, "
          f"seed {args.seed}, truth kappa {args.kappa:g} /mm, tau2 {args.tau2:g}\n"
          f"true time-to-peak {spread}")
    print(f"{'tool':<30} {'scored':>6} {'r L':>6} {'r R':>6} {'MSE s2':>8} {'bias s':>7} "
          f"{'fitted':>7} {'CPU s':>9} {'s/1000v':>9} {'RSS MB':>8}")
    n_ours = sum(int(np.isfinite(ours[h]).sum()) for h in HEMIS)
    print(score("hemocoupling (all vertices)", ours, truth, ours_cost, n_ours))
    print(score("hemocoupling (rsHRF's subset)", {h: ours[h][subset[h]] for h in HEMIS},
                {h: truth[h][subset[h]] for h in HEMIS}, None, n_ours))
    print(score(f"rsHRF {RSHRF_VERSION} canon2dd", peer,
                {h: truth[h][subset[h]] for h in HEMIS}, peer_cost, n_subset))
    failed = sum(int(np.isnan(peer[h]).sum()) for h in HEMIS)
    print(f"(rsHRF found no HRF at {failed} of {n_subset} vertices; those are not scored. "
          f"Logs and outputs: {work})")


if __name__ == "__main__":
    main()
