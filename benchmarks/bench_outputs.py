"""Wall time of writing participant maps, drawing and assembling the participant report,
and the group level.

Synthetic participants (smooth θ maps with a bootstrap's four statistics, medial wall
NaN) on a template mesh are written with :func:`write_parameter_maps`; then one
participant's report figures (surfaces shaded by the mesh curvature, evidence, Newton;
no carpet: no fit), the report's assembly from them (what ``--reports-only`` does) and
the group level (maps, TSV, report) are timed. Printed: seconds per participant for the
maps, seconds for the figures and for the assembly, the figures' and the report's size
in MB, and seconds for the group level.

Examples
--------
    .venv/bin/python benchmarks/bench_outputs.py --space fsaverage5 --subjects 4
    .venv/bin/python benchmarks/bench_outputs.py --space fsLR --subjects 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

for _var in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402

from bids_app.io.dataset_description import mark_finished  # noqa: E402
from bids_app.io.derivatives import (  # noqa: E402
    FitMetadata,
    ParameterMaps,
    StatArrays,
    write_parameter_maps,
)
from bids_app.io.templates import template_mesh  # noqa: E402
from bids_app.report.participant import write_participant_report  # noqa: E402
from bids_app.report.participant_figures import write_map_figures  # noqa: E402
from bids_app.workflows.group import group_level  # noqa: E402


def _metadata() -> FitMetadata:
    kappas, tau2s = np.geomspace(5e-4, 5e-1, 4), np.geomspace(1e2, 1e6, 5)
    return FitMetadata(
        surrogate={"Id": "bench", "Sha256": "0" * 64},
        kappa=5e-3,
        tau2=1e3,
        log_evidence=-1e4,
        convergence={
            "Converged": True,
            "Iterations": 6,
            "GradientNorm": list(10.0 ** -np.arange(7)),
        },
        random_seed=0,
        sources=[],
        bootstrap={"Mode": "double", "B": 100, "R": 10, "BlockLengthSeconds": 72.0},
        calibration_check={"in_distribution": True, "distance": 0.3},
        evidence_grid={"Kappa": kappas, "Tau2": tau2s, "LogEvidence": -np.add.outer(kappas, tau2s)},
    )


def _maps(vertices: np.ndarray, rng: np.random.Generator) -> dict[str, StatArrays]:
    theta = 1.5 + 0.5 * np.sin(vertices[:, 1] / 15.0 + rng.uniform(0, 6))
    theta[vertices[:, 0] ** 2 < 25.0] = np.nan  # a band standing in for the medial wall
    se = np.full_like(theta, 0.05)
    return {
        "theta": StatArrays(theta, se, theta - 0.1, theta + 0.1),
        "timetopeak": StatArrays(
            5 / theta, 5 * se / theta**2, 5 / (theta + 0.1), 5 / (theta - 0.1)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="fsaverage5", choices=["fsaverage5", "fsLR"])
    parser.add_argument("--subjects", type=int, default=4)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    meshes = {hemi: template_mesh(args.space, hemi) for hemi in "LR"}
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        for i in range(args.subjects):
            written = []
            for hemi, (vertices, _) in meshes.items():
                ents = {"sub": f"{i:02d}", "task": "rest", "hemi": hemi, "space": args.space}
                written += write_parameter_maps(
                    out, ParameterMaps(ents, "1p", _maps(vertices, rng), _metadata())
                )
            mark_finished(out, f"{i:02d}", written)  # the group level takes finished ones
        t_maps = (time.perf_counter() - start) / args.subjects
        start = time.perf_counter()
        figures = write_map_figures(out, "00", lambda space, hemi: meshes[hemi])
        t_figures = time.perf_counter() - start
        start = time.perf_counter()
        report = write_participant_report(out, "00")
        t_report = time.perf_counter() - start
        figure_mb = sum(path.stat().st_size for path in figures) / 1e6
        start = time.perf_counter()
        group_level(out, parcellations={})
        t_group = time.perf_counter() - start
        size = report.stat().st_size / 1e6
    n = len(meshes["L"][0])
    print(f"space {args.space} ({n} vertices/hemisphere), {args.subjects} participants")
    print(f"maps + sidecars per participant: {t_maps:.2f} s (16 files)")
    print(f"participant report figures: {t_figures:.2f} s, {len(figures)} SVG, "
          f"{figure_mb:.2f} MB")
    print(f"participant report assembly (--reports-only): {t_report:.2f} s, {size:.2f} MB")
    print(f"group level (mean/SD/N maps, TSV, report): {t_group:.2f} s")


if __name__ == "__main__":
    main()
