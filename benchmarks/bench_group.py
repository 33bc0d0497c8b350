"""Group level on simulated fsaverage5 studies: random effects vs the unweighted mean,
test–retest ICC, and wall time / peak memory against the number of participants.

``--part study``: N participants (default 30) with known latent θ̃ fields, a covariate
(age, standardised) acting in one ≈ 25 mm disc of the left hemisphere and nowhere else,
a between-participant SD τ and heterogeneous participant SEs, written as participant maps
(estimate, SE, interval bounds) and run through ``group_level`` with ``~ age``. Printed:
recovery of the age effect (r and RMSE against the truth, in θ units at the average
participant), false discovery proportion outside the disc and power inside it at
q = 0.05, and the same for today's unweighted analysis (OLS of the MAP θ on age per
vertex, t-test, BH); RMSE of the group-mean θ for both.

``--part retest``: N participants × 2 sessions with a known ICC per vertex, through the
streamed ICC(3,1) accumulator the workflow uses; printed: median ICC over vertices, the
fraction of vertices within ±0.05 of the truth, and per-parcel (100 random patches) ICC.

``--part time``: wall seconds, peak traced heap (tracemalloc: numpy and Python
allocations) and peak RSS of ``group_level`` (``~ age``, no report) in a fresh process for
each N in ``--sizes`` (default 20 100) on ``--space``; the maps are written first. With
``--dask`` the vertex blocks run on a fresh ``LocalCluster`` of 2 single-threaded worker
processes per N (``--dask-scheduler`` as the CLI takes it), and the workers' peak RSS is
printed beside the client's.

Examples
--------
    .venv/bin/python benchmarks/bench_group.py --part study --subjects 30
    .venv/bin/python benchmarks/bench_group.py --part retest --subjects 100 --icc 0.6
    .venv/bin/python benchmarks/bench_group.py --part time --sizes 20 100 [--space fsLR] [--dask]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from bids_app.group.latent import Z975, slope_factor, to_natural  # noqa: E402
from bids_app.group.random_effects import bh_qvalues  # noqa: E402
from bids_app.group.reliability import ReliabilityAccumulator  # noqa: E402
from bids_app.io.dataset_description import mark_finished  # noqa: E402
from bids_app.io.derivatives import (  # noqa: E402
    FitMetadata,
    ParameterMaps,
    StatArrays,
    read_map,
    write_parameter_maps,
)
from bids_app.io.templates import template_mesh  # noqa: E402
from bids_app.workflows.group import GroupOptions, group_level  # noqa: E402

SPACES = {"fsaverage5": {"space": "fsaverage5"}, "fsLR": {"space": "fsLR", "den": "32k"}}
Q = 0.05
META = FitMetadata(surrogate={"Id": "bench", "Sha256": "0" * 64}, kappa=5e-3, tau2=1e3,
                   log_evidence=-1.0, convergence={"Converged": True}, random_seed=0,
                   sources=[], bootstrap={"Mode": "double"})


def _coordinates(space: str) -> dict[str, np.ndarray]:
    return {h: np.asarray(template_mesh(space, h)[0], float) for h in "LR"}


def simulate(n: int, beta: float, tau: float, seed: int, space: str = "fsaverage5") -> dict:
    """Latent truth, covariate, participant estimates and SEs (per hemisphere)."""
    rng = np.random.default_rng(seed)
    coords = _coordinates(space)
    age = rng.normal(size=n)
    age = (age - age.mean()) / age.std()
    quality = rng.uniform(0.05, 0.5, n)  # participant SE level: heterogeneous on purpose
    centre = coords["L"][len(coords["L"]) // 3]
    out = {"age": age, "mean": {}, "effect": {}, "y": {}, "s": {}, "space": space}
    for hemi, xyz in coords.items():
        mu = -0.6 + 0.3 * np.sin(xyz[:, 0] / 30.0) * np.cos(xyz[:, 1] / 40.0)
        region = np.linalg.norm(xyz - centre, axis=1) < 25.0 if hemi == "L" else np.zeros(
            len(xyz), bool)
        effect = np.where(region, beta, 0.0)
        truth = mu + effect * age[:, None] + rng.normal(0, tau, (n, len(xyz)))
        s = quality[:, None] * rng.uniform(0.8, 1.2, (n, len(xyz)))
        out["mean"][hemi], out["effect"][hemi] = mu, effect
        out["y"][hemi] = truth + s * rng.normal(size=s.shape)
        out["s"][hemi] = s
    return out


def write_study(root: Path, sim: dict) -> None:
    """Participant maps (θ and time to peak with SE and 95% bounds), each participant's
    finished record (the group level reads only vouched-for maps) + participants.tsv."""
    n = len(sim["age"])
    for i in range(n):
        paths = []
        for hemi in "LR":
            y, s = sim["y"][hemi][i], sim["s"][hemi][i]
            theta = to_natural("1p", "theta", y)
            lower = to_natural("1p", "theta", y - Z975 * s)
            upper = to_natural("1p", "theta", y + Z975 * s)
            se = s * slope_factor("1p", "theta", y)
            maps = {"theta": StatArrays(theta, se, lower, upper),
                    "timetopeak": StatArrays(5 / theta, 5 * se / theta**2, 5 / upper, 5 / lower)}
            ents = {"sub": f"{i:03d}", "task": "rest", "hemi": hemi, **SPACES[sim["space"]]}
            paths += write_parameter_maps(root / "out", ParameterMaps(ents, "1p", maps, META))
        mark_finished(root / "out", f"{i:03d}", paths)
    (root / "bids").mkdir(exist_ok=True)
    pd.DataFrame({"participant_id": [f"sub-{i:03d}" for i in range(n)], "age": sim["age"]}
                 ).to_csv(root / "bids" / "participants.tsv", sep="\t", index=False)


def run_group(root: Path, trace: bool = False, scheduler: str | None = None
              ) -> tuple[float, float]:
    """Wall seconds and (with ``trace``) peak traced numpy + Python heap MB of
    ``group_level``; tracing slows it, so the timing comes from an untraced run."""
    table = pd.read_csv(root / "bids" / "participants.tsv", sep="\t")
    options = GroupOptions(formula="~ age", participants_table=table,
                           work_dir=root / "work", dask_scheduler=scheduler)
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    group_level(root / "out", report=False, parcellations={}, options=options)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else np.nan
    tracemalloc.stop()
    return seconds, peak


def _rates(q: np.ndarray, region: np.ndarray) -> tuple[float, float, int]:
    found = q <= Q
    fdp = float((found & ~region).sum() / max(found.sum(), 1))
    return fdp, float(found[region].mean()), int(found.sum())


def part_study(args: argparse.Namespace) -> None:
    sim = simulate(args.subjects, args.beta, args.tau, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_study(root, sim)
        seconds, _ = run_group(root)
        read = {
            (desc, stat): np.concatenate([read_map(
                root / "out" / f"task-rest_hemi-{h}_space-fsaverage5_desc-{desc}_param-theta_"
                f"stat-{stat}_boldmap.func.gii").values for h in "LR"])
            for desc, stat in (("age", "effect"), ("age", "q"), ("intercept", "effect"))
        }
    region = np.concatenate([sim["effect"][h] != 0 for h in "LR"])
    mu = np.concatenate([sim["mean"][h] for h in "LR"])
    beta = np.concatenate([sim["effect"][h] for h in "LR"])
    truth_effect = slope_factor("1p", "theta", mu) * beta  # θ per SD of age at the mean
    truth_mean = to_natural("1p", "theta", mu)

    # today's analysis: the MAP θ only, unweighted, per-vertex OLS on age with a t-test
    theta = to_natural("1p", "theta", np.concatenate([sim["y"][h] for h in "LR"], axis=1))
    age = sim["age"]
    x = np.column_stack([np.ones_like(age), age])
    coef, *_ = np.linalg.lstsq(x, theta, rcond=None)
    resid = theta - x @ coef
    dof = len(age) - 2
    se_slope = np.sqrt((resid**2).sum(axis=0) / dof / ((age - age.mean()) ** 2).sum())
    p_ols = 2 * stats.t.sf(np.abs(coef[1] / se_slope), dof)
    q_ols = bh_qvalues(p_ols)

    print(f"simulated study: {args.subjects} participants, fsaverage5 ({len(mu)} vertices), "
          f"age effect {args.beta} latent/SD in {int(region.sum())} vertices, tau {args.tau}, "
          f"participant SE 0.05-0.5 latent; group_level wall {seconds:.1f} s")
    rows = []
    for name, effect, q, mean in (
        ("random effects", read[("age", "effect")], read[("age", "q")],
         read[("intercept", "effect")]),
        ("unweighted mean/OLS", coef[1], q_ols, theta.mean(axis=0)),
    ):
        fdp, power, found = _rates(q, region)
        rows.append({
            "method": name,
            "effect r": np.corrcoef(effect, truth_effect)[0, 1],
            "region mean / truth": effect[region].mean() / truth_effect[region].mean(),
            "effect RMSE in region": np.sqrt(np.mean((effect - truth_effect)[region] ** 2)),
            "effect RMSE outside": np.sqrt(np.mean((effect - truth_effect)[~region] ** 2)),
            "FDP outside (q=0.05)": fdp,
            "power inside": power,
            "discoveries": found,
            "mean theta RMSE": np.sqrt(np.mean((mean - truth_mean) ** 2)),
        })
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def part_retest(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    n_vertices = sum(len(c) for c in _coordinates("fsaverage5").values())
    between, within = np.sqrt(args.icc) * 0.1, np.sqrt(1 - args.icc) * 0.1
    level = 1.2 + rng.normal(0, between, (args.subjects, n_vertices))
    patches = rng.integers(0, 100, n_vertices)  # 100 random "parcels"
    vertex = ReliabilityAccumulator(2, n_vertices)
    parcel = ReliabilityAccumulator(2, 100)
    start = time.perf_counter()
    for i in range(args.subjects):
        sessions = level[i] + rng.normal(0, within, (2, n_vertices))
        se = np.full_like(sessions, within)
        vertex.add(sessions, se)
        means = np.stack([np.bincount(patches, weights=s) / np.bincount(patches)
                          for s in sessions])
        parcel.add(means)
    seconds = time.perf_counter() - start
    icc = vertex.result()["icc"]
    # a parcel mean averages independent vertex noise and signal alike: same ICC
    parcel_icc = parcel.result()["icc"]
    print(f"test-retest: {args.subjects} participants x 2 sessions, {n_vertices} vertices, "
          f"true ICC {args.icc}; {seconds:.1f} s")
    print(f"  vertex ICC median {np.median(icc):.4f} (error {np.median(icc) - args.icc:+.4f}), "
          f"IQR {np.subtract(*np.percentile(icc, [75, 25])):.3f}, "
          f"{np.mean(np.abs(icc - args.icc) <= 0.05):.1%} of vertices within +/-0.05")
    print(f"  parcel ICC (100 patches) median {np.median(parcel_icc):.4f}, "
          f"{np.mean(np.abs(parcel_icc - args.icc) <= 0.05):.1%} within +/-0.05; "
          f"meanse {np.median(vertex.result()['meanse']):.4f} vs within SD "
          f"{np.median(vertex.result()['withinsd']):.4f} (true {within:.4f})")


def _time_child(tmp: str, scheduler: str | None) -> tuple[float, float, float]:
    """Wall seconds, peak traced heap MB and peak RSS MB of ``--part _run`` in a child."""
    command = [sys.executable, __file__, "--part", "_run", "--dir", tmp]
    child = subprocess.Popen(command + (["--scheduler", scheduler] if scheduler else []))
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(f"group_level failed in {tmp}")
    seconds, traced = map(float, (Path(tmp) / "seconds").read_text().split())
    return seconds, traced, usage.ru_maxrss / 1024


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def part_time(args: argparse.Namespace) -> None:
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_study(root, simulate(n, args.beta, args.tau, args.seed, args.space))
            where = "in process"
            if args.dask:
                from distributed import Client, LocalCluster

                with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, Client(cluster) as client:
                    seconds, traced, rss = _time_child(tmp, cluster.scheduler_address)
                    workers = client.run(_peak_rss_mb).values()
                where = ("on a LocalCluster of 2 workers (peak RSS "
                         f"{' and '.join(f'{w:.0f}' for w in workers)} MB)")
            else:
                seconds, traced, rss = _time_child(tmp, None)
            print(f"{args.space} N={n}: group_level {where}: wall {seconds:.1f} s, peak traced "
                  f"heap {traced:.0f} MB, peak RSS {rss:.0f} MB (fresh process: imports and "
                  "memory-mapped spill pages included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("study", "retest", "time", "_run"), default="study")
    parser.add_argument("--subjects", type=int, default=30)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--beta", type=float, default=0.25, help="age effect, latent per SD")
    parser.add_argument("--tau", type=float, default=0.2, help="between-participant SD")
    parser.add_argument("--icc", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--space", choices=sorted(SPACES), default="fsaverage5",
                        help="mesh of --part time (the study and retest use fsaverage5)")
    parser.add_argument("--dask", action="store_true",
                        help="--part time: vertex blocks on a 2-worker LocalCluster")
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--scheduler", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part == "_run":
        seconds, _ = run_group(args.dir, scheduler=args.scheduler)
        _, traced = run_group(args.dir, trace=True, scheduler=args.scheduler)
        (args.dir / "seconds").write_text(f"{seconds} {traced}")
    else:
        {"study": part_study, "retest": part_retest, "time": part_time}[args.part](args)


if __name__ == "__main__":
    main()
