"""``hemocoupling`` exit codes and messages, through ``main`` and the installed command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bids_app.cli.run import main

REPO = Path(__file__).resolve().parents[2]


def test_version_prints_the_version_file(capsys):
    assert main(["--version"]) == 0
    expected = (REPO / "version").read_text().strip()
    assert capsys.readouterr().out.strip() == f"hemocoupling {expected}"


def test_installed_command_prints_version():
    command = Path(sys.executable).with_name("hemocoupling")
    done = subprocess.run([str(command), "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert (REPO / "version").read_text().strip() in done.stdout


def test_unknown_option_exits_64_with_one_line(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path / "out"), "participant", "--bogus"]) == 64
    err = capsys.readouterr().err.strip()
    assert "--bogus" in err and len(err.splitlines()) == 1


def test_missing_analysis_level_exits_64(tmp_path):
    assert main([str(tmp_path), str(tmp_path / "out")]) == 64


def test_missing_bids_dir_exits_66_with_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "absent"), str(tmp_path / "out"), "participant"]) == 66
    err = capsys.readouterr().err.strip()
    assert "absent" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unwritable_output_exits_73(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([str(tmp_path), str(blocker / "out"), "participant"]) == 73
    assert "OUTPUT_DIR" in capsys.readouterr().err


def test_surrogate_card_must_exist_and_match_the_model(tmp_path, capsys):
    """--surrogate takes a card hemocoupling-train wrote, for the chosen --model."""
    import json

    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    out = str(tmp_path / "out")
    assert main([str(bids), out, "participant", "--surrogate", str(tmp_path / "none.json")]) == 66
    assert "none.json" in capsys.readouterr().err
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"model": "2p"}))
    assert main([str(bids), out, "participant", "--surrogate", str(card)]) == 64
    err = capsys.readouterr().err.strip()
    assert "2p surrogate" in err and "--model is 1p" in err and len(err.splitlines()) == 1


def test_readme_lists_every_exit_code():
    import re

    from bids_app.errors import EXIT_CODES

    readme = (REPO / "README.md").read_text()
    table = readme.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    assert {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)} == set(EXIT_CODES)


def _omp_thread_limit() -> int:
    """The OpenMP thread limit CHOLMOD's runtime (the system libgomp) holds here."""
    import ctypes

    from sksparse import cholmod  # noqa: F401  (loads the runtime as the refits do)

    return ctypes.CDLL("libgomp.so.1").omp_get_thread_limit()


def test_omp_nthreads_caps_openmp_teams_in_worker_processes(monkeypatch):
    """--omp-nthreads reaches the OpenMP runtime of the bootstrap's worker processes as a
    thread limit, which also binds the four-thread teams CHOLMOD requests itself."""
    from types import SimpleNamespace

    import pytest
    from joblib.externals.loky import ProcessPoolExecutor

    from bids_app.cli.run import apply_threads
    from bids_app.threads import THREAD_VARIABLES

    pytest.importorskip("sksparse", reason="CHOLMOD (scikit-sparse) not installed")

    for var in THREAD_VARIABLES:
        monkeypatch.setenv(var, "7")  # restored after the test
    apply_threads(SimpleNamespace(omp_nthreads=1))
    # Workers of loky (joblib's backend) started after the call; not joblib's shared
    # executor, which later tests in this process reuse.
    with ProcessPoolExecutor(max_workers=2) as workers:
        limits = [workers.submit(_omp_thread_limit).result() for _ in range(2)]
    assert limits == [1, 1]


_MAIN_PROCESS_LIMIT = """
import ctypes, sys
from bids_app.cli import launch
sys.argv = ["hemocoupling", "--omp-nthreads", "1", "--version"]
try:
    launch.main()
except SystemExit:
    pass
print(ctypes.CDLL("libgomp.so.1").omp_get_thread_limit())
"""


def test_the_command_caps_openmp_teams_in_its_own_process_too():
    """The command sets the limit from its arguments before scipy.optimize loads
    CHOLMOD's OpenMP runtime, so the point estimate in the main process is bound too."""
    import os

    import pytest

    pytest.importorskip("sksparse", reason="CHOLMOD (scikit-sparse) not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "OPENBLAS_"))}
    out = subprocess.run([sys.executable, "-c", _MAIN_PROCESS_LIMIT], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out[-1] == "1"


def test_thread_flags_are_read_before_parsing(monkeypatch):
    import os

    from bids_app.threads import THREAD_VARIABLES, limit_threads_from_argv

    for var in THREAD_VARIABLES:
        monkeypatch.setenv(var, "7")  # restored after the test
    limit_threads_from_argv(["bids", "out", "participant", "--omp-nthreads", "zero"])
    assert os.environ["OMP_THREAD_LIMIT"] == "7"  # left for the parser to reject
    limit_threads_from_argv(["bids", "out", "participant", "--n_cpus=2", "--omp-nthreads=3"])
    assert {os.environ[var] for var in THREAD_VARIABLES} == {"3"}
