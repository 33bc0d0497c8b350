"""The input and re-run contract (issue 18), one corrupted copy of a simulated dataset per
case: exit code, the one-line message (file and fix) and what OUTPUT_DIR holds after."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bids_app.cli.run import main
from bids_app.io.dataset_description import file_sha256, finished_path
from bids_app.io.derivatives import write_map
from bids_app.io.surface_files import save_func_gifti

FUNC = "sub-01/func/sub-01_task-rest_hemi-{hemi}_space-fsaverage5_bold"
CONFOUNDS = "sub-01/func/sub-01_task-rest_desc-confounds_timeseries.tsv"
FAST = ("--bootstrap", "none", "--bias-correction", "none", "--no-report",
        "--kappa", "0.05", "--tau2", "100")


@pytest.fixture
def bids(dataset, tmp_path) -> Path:
    """A private copy of the dataset to damage."""
    return Path(shutil.copytree(dataset, tmp_path / "fmriprep"))


def command(bids: Path, out: Path, *extra: str) -> list[str]:
    return [str(bids), str(out), "participant", "-w", str(out.parent / "work"), *FAST, *extra]


def run(bids: Path, out: Path, *extra: str) -> int:
    return main(command(bids, out, *extra))


def error_line(capsys) -> str:
    """The one ``hemocoupling: error:`` line on stderr (and nothing else of that kind)."""
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if line.startswith("hemocoupling:")]
    assert len(lines) == 1, err
    return lines[0]


def outputs(out: Path) -> dict[str, str]:
    """Every participant file under OUTPUT_DIR (logs aside) → sha256."""
    if not out.exists():
        return {}
    return {p.relative_to(out).as_posix(): file_sha256(p) for p in sorted(out.rglob("*"))
            if p.is_file() and "logs" not in p.relative_to(out).parts
            and p.name not in ("dataset_description.json", ".bidsignore")}


def log_text(out: Path) -> str:
    return "".join(p.read_text() for p in sorted((out / "logs").glob("*.log")))


def set_sidecar(bids: Path, **values) -> None:
    for hemi in "LR":
        path = bids / f"{FUNC.format(hemi=hemi)}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


# --------------------------------------------------------------------------- 1, 2


def test_failed_overwrite_keeps_the_old_result_and_the_group_uses_it(bids, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(bids, out) == 0
    before, record = outputs(out), finished_path(out, "01").read_text()
    set_sidecar(bids, RepetitionTime="abc")
    capsys.readouterr()
    assert run(bids, out, "--overwrite") == 16
    line = error_line(capsys)
    assert "RepetitionTime" in line and f"{FUNC.format(hemi='L')}.json" in line
    assert "JSON number" in line
    assert outputs(out) == before and finished_path(out, "01").read_text() == record
    assert not any(p.name.startswith(".staging") for p in out.iterdir())

    assert main([str(bids), str(out), "group", "-w", str(tmp_path / "work")]) == 0
    err = capsys.readouterr().err
    assert "Warning" not in err  # the plotting libraries' warnings go to the log
    table = pd.read_csv(out / "group_participants.tsv", sep="\t")
    assert list(table["status"]) == ["included"] and list(table["finished"]) == ["yes"]


def test_overwrite_failing_during_the_fit_leaves_the_old_result(bids, tmp_path, capsys):
    """Inputs pass, then the fit fails (its bootstrap cache cannot be created): the staged
    outputs are dropped and the previous complete result stays as it was."""
    out, work = tmp_path / "out", tmp_path / "blocked"
    assert run(bids, out) == 0
    before, record = outputs(out), finished_path(out, "01").read_text()
    work.mkdir()
    (work / "bootstrap").write_text("a file where the cache folder goes")
    capsys.readouterr()
    args = command(bids, out, "--overwrite", "--n-boot", "2")
    args[args.index("-w") + 1] = str(work)
    args[args.index("--bootstrap") + 1] = "single"
    assert main(args) == 73
    assert "bootstrap cache" in error_line(capsys)
    assert outputs(out) == before and finished_path(out, "01").read_text() == record
    assert not any(p.name.startswith(".staging") for p in out.iterdir())


def test_group_excludes_maps_the_finished_record_does_not_vouch_for(bids, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(bids, out) == 0
    estimate = sorted(out.glob("sub-01/func/*hemi-L*param-theta_stat-estimate*.func.gii"))[0]
    write_map(estimate, np.ones(642), hemi="L", name="theta_estimate")  # stale or edited
    capsys.readouterr()
    assert main([str(bids), str(out), "group", "-w", str(tmp_path / "work"),
                 "--no-report"]) == 18  # nobody left to aggregate
    err = capsys.readouterr().err
    assert "sub-01 excluded" in err and estimate.name in err and "rerun" in err
    table = pd.read_csv(out / "group_participants.tsv", sep="\t")
    assert list(table["status"]) == ["excluded"] and list(table["finished"]) == ["no"]
    assert not list(out.glob("*_stat-mean_boldmap.func.gii"))


def test_changed_input_redoes_a_finished_participant(bids, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(bids, out) == 0
    set_sidecar(bids, RepetitionTime=2.0)
    capsys.readouterr()
    assert run(bids, out, "-v") == 0
    err = capsys.readouterr().err
    assert "input file(s) changed" in err and "already finished" not in err
    sidecar = next(out.glob("sub-01/func/*hemi-L*param-theta_stat-estimate_boldmap.json"))
    assert json.loads(sidecar.read_text())["RepetitionTime"] == 2.0
    record = json.loads(finished_path(out, "01").read_text())
    assert record["Inputs"]["BidsDir"] == str(bids.resolve())
    assert f"{FUNC.format(hemi='R')}.json" in record["Inputs"]["Files"]

    assert run(bids, out) == 0
    err = capsys.readouterr().err
    assert "already finished with settings and the same 7 input files" in err


# --------------------------------------------------------------------------- 3


def _non_numeric_confound(bids: Path) -> str:
    path = bids / CONFOUNDS
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    table.loc[50, "trans_y"] = "1,5e-3"
    table.to_csv(path, sep="\t", index=False)
    return CONFOUNDS


def _malformed_sidecar(bids: Path) -> str:
    path = bids / f"{FUNC.format(hemi='R')}.json"
    path.write_text(path.read_text().rstrip().rstrip("}") + ",\n")
    return path.relative_to(bids).as_posix()


def _text_tr(bids: Path) -> str:
    set_sidecar(bids, RepetitionTime="abc")
    return f"{FUNC.format(hemi='L')}.json"


@pytest.mark.parametrize("damage, fix", [(_text_tr, "JSON number"),
                                         (_non_numeric_confound, "fix the cell"),
                                         (_malformed_sidecar, "fix the JSON")])
def test_bad_values_exit_16_naming_the_file_and_fix(bids, tmp_path, capsys, damage, fix):
    name = damage(bids)
    out = tmp_path / "out"
    assert run(bids, out) == 16
    line = error_line(capsys)
    assert line.startswith("hemocoupling: error:") and name in line and fix in line
    assert outputs(out) == {} and not finished_path(out, "01").exists()


# --------------------------------------------------------------------------- 4


def test_na_inside_a_confound_column_is_interpolated_and_said(bids, tmp_path, capsys):
    path = bids / CONFOUNDS
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    table.loc[[80, 81], "trans_x"] = "n/a"
    table.to_csv(path, sep="\t", index=False)
    out = tmp_path / "out"
    assert run(bids, out) == 0
    err = capsys.readouterr().err
    assert err.count("2 n/a in column trans_x") == 1 and "interpolation" in err
    assert CONFOUNDS.split("/")[-1] in err
    sidecar = next(out.glob("sub-01/func/*hemi-L*param-theta_stat-estimate_boldmap.json"))
    assert json.loads(sidecar.read_text())["InterpolatedConfounds"] == {"trans_x": 2}


def test_sidecar_tr_disagreeing_with_the_gifti_timestep_is_warned(bids, tmp_path, capsys):
    set_sidecar(bids, RepetitionTime=1.005)  # TimeStep 1000 ms: within 1 %, no warning
    assert run(bids, tmp_path / "near") == 0
    assert "disagrees" not in capsys.readouterr().err
    set_sidecar(bids, RepetitionTime=1.5)
    assert run(bids, tmp_path / "far") == 0
    err = capsys.readouterr().err
    assert "GIFTI TimeStep" in err and "disagrees with the sidecar RepetitionTime 1.5" in err
    sidecar = next((tmp_path / "far").glob("sub-01/func/*param-theta_stat-estimate*.json"))
    assert json.loads(sidecar.read_text())["RepetitionTime"] == 1.5


# --------------------------------------------------------------------------- 5


@pytest.mark.parametrize("key, option", [("subject", "--participant-label"),
                                         ("task", "--task-id")])
def test_filter_file_may_not_set_what_the_command_line_decides(dataset, tmp_path, capsys, key,
                                                               option):
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"bold": {key: "02"}}))
    out = tmp_path / "out"
    assert run(dataset, out, "--bids-filter-file", str(filters)) == 64
    line = error_line(capsys)
    assert str(filters) in line and f"'{key}'" in line and option in line
    assert outputs(out) == {}


# --------------------------------------------------------------------------- 6


def test_dead_hemisphere_fails_before_any_fit(bids, tmp_path, capsys):
    gifti = bids / f"{FUNC.format(hemi='R')}.func.gii"
    save_func_gifti(gifti, np.zeros((642, 200)), 1.0, "R")
    out = tmp_path / "out"
    assert run(bids, out) == 16
    line = error_line(capsys)
    assert str(gifti) in line and "dead" in line and '{"hemi": "L"}' in line
    assert outputs(out) == {} and "vertices fitted" not in log_text(out)


def test_missing_hemisphere_fails_the_same_way_unless_one_is_asked_for(bids, tmp_path,
                                                                       capsys):
    for ext in (".func.gii", ".json"):
        Path(f"{bids / FUNC.format(hemi='R')}{ext}").unlink()
    out = tmp_path / "out"
    assert run(bids, out) == 66
    line = error_line(capsys)
    assert f"{FUNC.format(hemi='R')}.func.gii is missing" in line and '{"hemi": "L"}' in line
    assert outputs(out) == {} and "vertices fitted" not in log_text(out)

    filters = tmp_path / "left.json"
    filters.write_text(json.dumps({"bold": {"hemi": "L"}}))
    assert run(bids, out, "--bids-filter-file", str(filters)) == 0
    written = outputs(out)
    assert written and all("hemi-L" in name for name in written)


# --------------------------------------------------------------------------- 7


def test_bids_dir_that_is_a_file_is_named_as_such(tmp_path, capsys):
    regular = tmp_path / "data.zip"
    regular.write_text("")
    assert run(regular, tmp_path / "out") == 66
    line = error_line(capsys)
    assert str(regular) in line and "is a file, not a folder" in line
    assert outputs(tmp_path / "out") == {}


def _subprocess(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen([sys.executable, "-m", "bids_app.cli.run", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_exits_143_and_logs_the_refits_kept(dataset, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    args = command(dataset, out, "--nprocs", "1")
    args[args.index("--bootstrap") + 1] = "single"
    job = _subprocess([*args, "--n-boot", "40"])
    deadline = time.time() + 600
    while len(list(work.rglob("b*_r000.npy"))) < 2 and time.time() < deadline:
        time.sleep(0.2)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 143
    kept = len(list(work.rglob("b*_r000.npy")))
    assert f"interrupted, {kept} of 40 refits kept" in log_text(out)
    assert "interrupted (SIGTERM)" in err and "resume" in err
    assert outputs(out) == {} and not finished_path(out, "01").exists()


def test_two_identical_jobs_do_the_work_once(dataset, tmp_path):
    out = tmp_path / "out"
    jobs = [_subprocess(command(dataset, out)) for _ in range(2)]
    errs = [job.communicate(timeout=300)[1] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0]
    assert sum("already finished" in err for err in errs) == 1, errs
    assert log_text(out).count("every input of 1 run(s) checked") == 1
    assert (out / "logs" / ".sub-01.lock").is_file() and finished_path(out, "01").is_file()
