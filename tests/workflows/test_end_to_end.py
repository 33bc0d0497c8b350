"""End to end through the installed commands: simulate → participant (two concurrent
jobs on one OUTPUT_DIR) → group.

``hemocoupling-simulate`` writes two fsaverage5 subjects with known θ maps; the
participant level (no bootstrap, κ and τ² fixed at the simulation's values to keep the
test to one MAP per hemisphere) must recover them (Pearson r > 0.8 per hemisphere),
and the group level must aggregate both subjects.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SIDECAR_KEYS = {"Units", "Model", "Surrogate", "Kappa", "Tau2", "LogEvidence", "Convergence",
                "Bootstrap", "CalibrationCheck", "Identifiability", "RandomSeed", "Sources",
                "RepetitionTime", "Confounds"}


def start(name: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / name), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={"OMP_NUM_THREADS": "1", "PATH": str(BIN), **_templateflow_env()})


def finish(process: subprocess.Popen) -> None:
    _, err = process.communicate()
    assert process.returncode == 0, err[-2000:]


def command(name: str, *args: object) -> None:
    finish(start(name, *args))


def _templateflow_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k.startswith(("TEMPLATEFLOW", "HOME"))}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("e2e")
    bids, out = root / "bids", root / "out"
    command("hemocoupling-simulate", bids, "--mesh", "fsaverage5", "--subjects", 2,
            "--tr", 0.72, "--frames", 300, "--model", "1p", "--seed", 0)
    truth = json.loads((bids / "sourcedata" / "truth" / "truth.json").read_text())
    fixed = ("--kappa", truth["kappa"], "--tau2", truth["tau2"])
    # The two participants run as two concurrent jobs on one OUTPUT_DIR (cluster array).
    jobs = [start("hemocoupling", bids, out, "participant", "--participant-label", label,
                  "-w", root / f"work{label}", "--bootstrap", "none", "--nprocs", 1,
                  "--omp-nthreads", 1, *fixed) for label in ("01", "02")]
    for job in jobs:
        finish(job)
    # Keep flagged participants: this test counts every participant in the group maps.
    command("hemocoupling", bids, out, "group", "-w", root / "work", "--include-flagged")
    return bids, out


def _map(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).darrays[0].data, dtype=float)


@pytest.mark.parametrize("subject", ["01", "02"])
def test_participant_files_exist(outputs, subject):
    _, out = outputs
    func = out / f"sub-{subject}" / "func"
    for hemi in "LR":
        for param in ("theta", "timetopeak"):
            stem = f"sub-{subject}_task-rest_hemi-{hemi}_space-fsaverage5_param-{param}" \
                   "_stat-estimate_boldmap"
            assert (func / f"{stem}.func.gii").is_file()
            record = json.loads((func / f"{stem}.json").read_text())
            assert SIDECAR_KEYS <= set(record), SIDECAR_KEYS - set(record)
            assert record["Surrogate"]["Sha256"]
            assert record["NumberOfRegressors"] == 24  # default 24P, what the surrogate is told
            assert record["Sources"][0].startswith("bids:fmriprep:sub-")
    assert (out / f"sub-{subject}.html").is_file()
    assert (out / "logs" / f"sub-{subject}_finished.json").is_file()


def test_dataset_level_files(outputs):
    _, out = outputs
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "hemocoupling"
    assert (out / ".bidsignore").is_file()
    assert list((out / "logs").glob("hemocoupling_*.json"))


def test_theta_maps_follow_the_truth(outputs):
    bids, out = outputs
    correlations = {}
    for subject in ("01", "02"):
        for hemi in "LR":
            truth = _map(bids / "sourcedata" / "truth" / f"sub-{subject}" /
                         f"sub-{subject}_hemi-{hemi}_space-fsaverage5_desc-truth_theta.func.gii")
            estimate = _map(out / f"sub-{subject}" / "func" /
                            f"sub-{subject}_task-rest_hemi-{hemi}_space-fsaverage5_param-theta"
                            "_stat-estimate_boldmap.func.gii")
            ok = np.isfinite(truth) & np.isfinite(estimate)
            correlations[f"sub-{subject} hemi-{hemi}"] = np.corrcoef(truth[ok], estimate[ok])[0, 1]
    print("Pearson r (theta estimate vs truth):",
          {k: round(float(v), 3) for k, v in correlations.items()})
    assert min(correlations.values()) > 0.8, correlations


def test_group_outputs(outputs):
    _, out = outputs
    for hemi in "LR":
        for stat in ("mean", "sd", "n"):
            name = f"task-rest_hemi-{hemi}_space-fsaverage5_param-theta_stat-{stat}_boldmap"
            assert (out / f"{name}.func.gii").is_file()
    n_map = _map(out / "task-rest_hemi-L_space-fsaverage5_param-theta_stat-n_boldmap.func.gii")
    assert np.nanmax(n_map) == 2
    table = (out / "group_participants.tsv").read_text()
    assert "sub-01" in table and "sub-02" in table
    assert (out / "group.html").is_file()


def test_rerun_skips_finished_participants(outputs, tmp_path):
    bids, out = outputs
    finished = out / "logs" / "sub-01_finished.json"
    before = finished.stat().st_mtime_ns
    truth = json.loads((bids / "sourcedata" / "truth" / "truth.json").read_text())
    command("hemocoupling", bids, out, "participant", "--participant-label", "01", "-w",
            tmp_path / "work", "--bootstrap", "none", "--kappa", truth["kappa"], "--tau2",
            truth["tau2"])
    assert finished.stat().st_mtime_ns == before
