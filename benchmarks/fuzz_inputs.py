"""Fuzz the input and re-run contract: corrupted copies of one simulated subject, run by
``hemocoupling … participant`` as a subprocess, one row per case.

Each case copies a freshly simulated fMRIPrep-style dataset (one subject, 200 frames,
TR 2 s, on a 642-vertex sphere per hemisphere or on fsaverage5 with ``--mesh
fsaverage5``), damages it, runs the command (``--bootstrap none --bias-correction none``
unless the case needs more) and prints a Markdown table: case → exit code → the
one-line message (error, or the warning/skip line that matters) → what OUTPUT_DIR holds
afterwards (maps, finished record, staging folders, whether a previous result is intact).
The ``expected`` column is the documented code; a row whose code differs is marked ✗ and
the script exits 1. 37 cases, ≈ 3 CPU-minutes on the sphere.

Examples
--------
    .venv/bin/python benchmarks/fuzz_inputs.py
    .venv/bin/python benchmarks/fuzz_inputs.py --mesh fsaverage5 --only tr- confounds-
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bids_app.io.dataset_description import file_sha256, finished_path  # noqa: E402
from bids_app.io.surface_files import save_func_gifti, save_surface  # noqa: E402
from bids_app.prior import icosphere  # noqa: E402
from bids_app.simulate.dataset import DatasetSpec, simulate_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FUNC = "sub-01/func/sub-01_task-rest_hemi-{hemi}_space-fsaverage5_bold"
CONFOUNDS = "sub-01/func/sub-01_task-rest_desc-confounds_timeseries.tsv"
FAST = ("--bootstrap", "none", "--bias-correction", "none", "--no-report",
        "--kappa", "0.05", "--tau2", "100", "--nprocs", "1")


@dataclass
class Case:
    """A damage applied to the copy (returns extra CLI args), what to expect, and whether
    a clean run happens first (re-run cases)."""

    name: str
    expected: int
    damage: Callable[[Path, Path], list[str]] = lambda bids, tmp: []
    prerun: bool = False
    args: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- damages


def sidecar(bids: Path, **values) -> list[str]:
    for hemi in "LR":
        path = bids / f"{FUNC.format(hemi=hemi)}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **values}))
    return []


def drop_tr(bids: Path) -> list[str]:
    for hemi in "LR":
        stem = bids / FUNC.format(hemi=hemi)
        Path(f"{stem}.json").unlink()
        image = nib.load(f"{stem}.func.gii")
        arrays = [nib.gifti.GiftiDataArray(a.data, intent=a.intent) for a in image.darrays]
        nib.save(nib.gifti.GiftiImage(darrays=arrays), f"{stem}.func.gii")
    return []


def edit_confounds(bids: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> list[str]:
    path = bids / CONFOUNDS
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    edit(table).to_csv(path, sep="\t", index=False)
    return []


def set_cell(column: str, rows: list[int], value: str):
    def edit(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[rows, column] = value
        return table
    return edit


def series(bids: Path, hemi: str) -> tuple[Path, np.ndarray]:
    path = bids / f"{FUNC.format(hemi=hemi)}.func.gii"
    return path, np.column_stack([a.data for a in nib.load(path).darrays])


def rewrite_series(bids: Path, hemi: str, change: Callable[[np.ndarray], np.ndarray],
                   tr: float) -> list[str]:
    path, data = series(bids, hemi)
    save_func_gifti(path, change(data), tr, hemi)
    return []


def remove_hemi(bids: Path, hemi: str = "R") -> list[str]:
    for ext in (".func.gii", ".json"):
        Path(f"{bids / FUNC.format(hemi=hemi)}{ext}").unlink()
    return []


def filter_file(tmp: Path, filters: dict | str) -> list[str]:
    path = tmp / "filters.json"
    path.write_text(filters if isinstance(filters, str) else json.dumps(filters))
    return ["--bids-filter-file", str(path)]


def wrong_mesh(bids: Path) -> list[str]:
    vertices, faces = icosphere(2, radius_mm=50.0)
    for old in (bids / "sub-01" / "anat").glob("*hemi-L*midthickness.surf.gii"):
        old.unlink()
    save_surface(bids / "sub-01/anat/sub-01_hemi-L_space-fsaverage5_midthickness.surf.gii",
                 vertices, faces, "L")
    return []


def cases(tr: float) -> list[Case]:
    """The corrupted inputs; ``tr`` is the simulated one (GIFTI TimeStep agrees with it)."""
    return [
        Case("clean", 0),
        Case("rerun-unchanged", 0, prerun=True),
        Case("rerun-sidecar-TR-corrected", 0, lambda b, t: sidecar(b, RepetitionTime=tr / 2),
             prerun=True),
        Case("overwrite-with-now-bad-TR", 16, lambda b, t: sidecar(b, RepetitionTime="abc"),
             prerun=True, args=["--overwrite"]),
        Case("tr-text", 16, lambda b, t: sidecar(b, RepetitionTime="abc")),
        Case("tr-in-ms", 16, lambda b, t: sidecar(b, RepetitionTime=tr * 1000)),
        Case("tr-negative", 16, lambda b, t: sidecar(b, RepetitionTime=-tr)),
        Case("tr-missing", 66, lambda b, t: drop_tr(b)),
        Case("tr-json-vs-timestep-2%", 0, lambda b, t: sidecar(b, RepetitionTime=tr * 1.02)),
        Case("json-malformed", 16, lambda b, t: (
            (b / f"{FUNC.format(hemi='R')}.json").write_text('{"RepetitionTime": 2.0,'), [])[1]),
        Case("json-not-utf8", 16, lambda b, t: (
            (b / f"{FUNC.format(hemi='L')}.json").write_bytes(b'{"Task": "\xff"}'), [])[1]),
        Case("confounds-non-numeric-cell", 16, lambda b, t: edit_confounds(
            b, set_cell("trans_y", [50], "1,5e-3"))),
        Case("confounds-na-mid-column", 0, lambda b, t: edit_confounds(
            b, set_cell("trans_x", [80, 81], "n/a"))),
        Case("confounds-rows-short", 16, lambda b, t: edit_confounds(b, lambda x: x.iloc[:-5])),
        Case("confounds-column-missing", 66, lambda b, t: edit_confounds(
            b, lambda x: x.drop(columns=["rot_z"]))),
        Case("confounds-file-missing", 66, lambda b, t: ((b / CONFOUNDS).unlink(), [])[1]),
        Case("confounds-binary-garbage", 16, lambda b, t: (
            (b / CONFOUNDS).write_bytes(os.urandom(4096)), [])[1]),
        Case("gifti-truncated", 16, lambda b, t: (
            (p := b / f"{FUNC.format(hemi='L')}.func.gii").write_bytes(p.read_bytes()[:5000]),
            [])[1]),
        Case("gifti-hemi-missing", 66, lambda b, t: remove_hemi(b)),
        Case("gifti-hemi-all-zero", 16, lambda b, t: rewrite_series(
            b, "R", lambda d: np.zeros_like(d), tr)),
        Case("gifti-hemi-all-nan", 16, lambda b, t: rewrite_series(
            b, "R", lambda d: np.full_like(d, np.nan), tr)),
        Case("gifti-hemi-fewer-frames", 16, lambda b, t: rewrite_series(
            b, "R", lambda d: d[:, :-10], tr)),
        Case("gifti-some-vertices-nan", 0, lambda b, t: rewrite_series(
            b, "L", lambda d: np.where(np.arange(len(d))[:, None] < 20, np.nan, d), tr)),
        Case("mesh-other-vertex-count", 16, lambda b, t: wrong_mesh(b)),
        Case("filter-subject", 64, lambda b, t: filter_file(t, {"bold": {"subject": "02"}})),
        Case("filter-task", 64, lambda b, t: filter_file(t, {"bold": {"task": "other"}})),
        Case("filter-not-json", 64, lambda b, t: filter_file(t, "{bold: run 1}")),
        Case("filter-hemi-L-with-R-missing", 0, lambda b, t: (
            remove_hemi(b), filter_file(t, {"bold": {"hemi": "L"}}))[1]),
        Case("filter-selects-nothing", 18, lambda b, t: filter_file(t, {"bold": {"run": 7}})),
        Case("label-unknown", 18, args=["--participant-label", "99"]),
        Case("bids-dir-is-a-file", 66, lambda b, t: (
            shutil.rmtree(b), b.write_text("not a folder"), [])[2]),
        Case("bids-dir-missing", 66, lambda b, t: (shutil.rmtree(b), [])[1]),
        Case("no-dataset-description-tolerated", 0, lambda b, t: (
            (b / "dataset_description.json").unlink(), [])[1]),
        Case("dummy-scans-leave-too-few", 16, args=["--dummy-scans", "150"]),
        Case("unicode-paths", 0),
    ]


# --------------------------------------------------------------------------- running


def command(bids: Path, out: Path, work: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "bids_app.cli.run", str(bids), str(out), "participant",
            "-w", str(work), *FAST, *extra]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run(cmd: list[str]) -> tuple[int, str]:
    done = subprocess.run(cmd, env=environment(), capture_output=True, text=True)
    return done.returncode, done.stderr


# Log lines worth a row when the run did not fail, most telling first.
TELLING = ("already finished", "running (", "disagrees", "n/a in column", "waiting for it")


def message(stderr: str, root: Path) -> str:
    """The error line, else the most telling log line, with the temp root cut."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    chosen = next((line for line in lines if line.startswith("hemocoupling:")), None)
    if chosen is None:
        chosen = next((line.split(" ", 1)[1] for key in TELLING for line in lines
                       if key in line), "")
    return chosen.replace(str(root) + "/", "").replace("|", "\\|")


def outputs_left(out: Path, before: dict[str, str] | None) -> str:
    """Maps and other participant files, the finished record, staging folders left, and
    (re-run cases) whether the previous result is byte-identical."""
    if not out.exists():
        return "OUTPUT_DIR not created"
    files = {p.relative_to(out).as_posix(): p for p in out.rglob("*") if p.is_file()
             and "logs" not in p.relative_to(out).parts}
    maps = [n for n in files if n.endswith(("_boldmap.func.gii", "_boldmap.dscalar.nii"))]
    parts = [f"{len(maps)} maps" if maps else "no maps",
             "finished record" if finished_path(out, "01").is_file() else "no record"]
    staging = [p.name for p in out.iterdir() if p.name.startswith(".staging")]
    if staging:
        parts.append(f"staging left: {staging}")
    if before is not None:
        now = {n: file_sha256(p) for n, p in files.items()}
        parts.append("previous result intact" if now == before else "result replaced")
    return ", ".join(parts)


def run_case(case: Case, dataset: Path, tmp: Path) -> dict[str, str]:
    bids = Path(shutil.copytree(dataset, tmp / ("dätä ünïcode" if case.name == "unicode-paths"
                                                else "fmriprep")))
    out, work = tmp / "out", tmp / "work"
    before = None
    if case.prerun:
        code, err = run(command(bids, out, work, []))
        assert code == 0, err
        before = {p.relative_to(out).as_posix(): file_sha256(p) for p in out.rglob("*")
                  if p.is_file() and "logs" not in p.relative_to(out).parts}
    extra = case.damage(bids, tmp) + case.args
    code, err = run(command(bids, out, work, extra + (["-v"] if case.prerun else [])))
    return {"case": case.name, "exit": str(code), "expected": str(case.expected),
            "message": message(err, tmp), "outputs": outputs_left(out, before)}


def sigterm_case(dataset: Path, tmp: Path) -> dict[str, str]:
    """SIGTERM during a single bootstrap once two refits are cached."""
    out, work = tmp / "out", tmp / "work"
    cmd = command(dataset, out, work, ["--n-boot", "40"])
    cmd[cmd.index("--bootstrap") + 1] = "single"
    job = subprocess.Popen(cmd, env=environment(), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while len(list(work.rglob("b*_r000.npy"))) < 2 and time.time() < deadline:
        time.sleep(0.2)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate()
    logged = [line.split(" ERROR ", 1)[1] for p in (out / "logs").glob("*.log")
              for line in p.read_text().splitlines() if "interrupted" in line]
    return {"case": "sigterm-during-bootstrap", "exit": str(job.returncode), "expected": "143",
            "message": message(err, tmp) + (f" (log: {logged[0]})" if logged else ""),
            "outputs": outputs_left(out, None)}


def two_jobs_case(dataset: Path, tmp: Path) -> dict[str, str]:
    """Two identical jobs on one OUTPUT_DIR at once."""
    out, work = tmp / "out", tmp / "work"
    jobs = [subprocess.Popen(command(dataset, out, work, []), env=environment(),
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [job.communicate()[1] for job in jobs]
    skipped = sum("already finished" in err for err in errs)
    waited = sum("waiting for it" in err for err in errs)
    codes = "/".join(str(job.returncode) for job in jobs)
    return {"case": "two-identical-jobs", "exit": codes, "expected": "0/0",
            "message": f"{2 - skipped} fitted, {skipped} skipped as finished, "
                       f"{waited} waited for the lock",
            "outputs": outputs_left(out, None)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", choices=("sphere", "fsaverage5"), default="sphere",
                        help="642-vertex sphere per hemisphere (fast) or the fsaverage5 "
                             "template (10,242)")
    parser.add_argument("--only", nargs="+", metavar="PREFIX",
                        help="run the cases whose names start with one of these")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args()

    tr = 2.0
    scratch = Path(tempfile.mkdtemp(prefix="hemocoupling-fuzz-"))
    spec = DatasetSpec(n_subjects=1, n_frames=200, tr=tr, seed=3)
    meshes = None
    if args.mesh == "sphere":
        mesh = icosphere(3, radius_mm=50.0)
        meshes = {"L": mesh, "R": mesh}
    dataset = simulate_dataset(scratch / "dataset" / "fmriprep", spec, meshes=meshes)

    selected = [c for c in cases(tr) if not args.only or c.name.startswith(tuple(args.only))]
    extra = [("sigterm-during-bootstrap", sigterm_case), ("two-identical-jobs", two_jobs_case)]
    rows, start = [], time.time()
    for index, case in enumerate(selected):
        rows.append(run_case(case, dataset, Path(tempfile.mkdtemp(dir=scratch,
                                                                  prefix=f"{index:02d}-"))))
        print(f"[{time.time() - start:5.0f} s] {case.name}: {rows[-1]['exit']}", file=sys.stderr)
    for name, special in extra:
        if not args.only or name.startswith(tuple(args.only)):
            rows.append(special(dataset, Path(tempfile.mkdtemp(dir=scratch, prefix=name))))
            print(f"[{time.time() - start:5.0f} s] {name}: {rows[-1]['exit']}", file=sys.stderr)

    print("| case | exit (expected) | message | outputs left |\n|---|---|---|---|")
    failed = 0
    for row in rows:
        ok = row["exit"] == row["expected"]
        failed += not ok
        mark = "" if ok else " ✗"
        print(f"| {row['case']} | {row['exit']} ({row['expected']}){mark} | {row['message']} "
              f"| {row['outputs']} |")
    print(f"\n{len(rows)} cases, {failed} with an unexpected exit code; mesh {args.mesh}, "
          f"{time.time() - start:.0f} s wall")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
