"""The app runs as an arbitrary unprivileged user with a read-only HOME and the image's
environment (what `docker run -u UID --read-only --tmpfs /tmp` and Singularity give it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bids_app.surrogate.registry import SHIPPED, WEIGHTS_DIR

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NOBODY = 65534
SETPRIV = shutil.which("setpriv")

pytestmark = pytest.mark.skipif(os.geteuid() == 0 and SETPRIV is None,
                                reason="running as root without setpriv to drop privileges")


def image_environment() -> dict[str, str]:
    """``ENV`` settings of the Dockerfile's runtime stage (KEY=VALUE pairs)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    runtime = text.split(" AS runtime", 1)[1].split(" AS test", 1)[0]
    pairs: dict[str, str] = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            pairs.update(re.findall(r"(\w+)=(\S+)", line))
    return pairs


@pytest.fixture
def sandbox(shared_data) -> Iterator[tuple[Path, dict[str, str]]]:
    """A scratch folder owned by the unprivileged user and the environment to run in.

    HOME is a folder that user cannot write; the image's /tmp caches point into the
    scratch folder (the container's tmpfs); templates come from the read-only offline copy.
    """
    scratch = Path(tempfile.mkdtemp(prefix="hemocoupling-uid-"))
    home = scratch / "home"
    (home / ".cache").mkdir(parents=True)
    tmp = scratch / "tmp"
    tmp.mkdir()
    if os.geteuid() == 0:
        os.chmod(scratch, 0o755)
        os.chown(tmp, NOBODY, NOBODY)
    else:
        home.chmod(0o555)
    env = {k: v.replace("/tmp", str(tmp)) for k, v in image_environment().items()}
    env.update(HOME=str(home), TMPDIR=str(tmp), PATH=f"{BIN}:/usr/bin:/bin",
               TEMPLATEFLOW_HOME=str(shared_data / "templateflow"), OMP_NUM_THREADS="1")
    try:
        yield tmp, env
    finally:
        home.chmod(0o755)
        shutil.rmtree(scratch, ignore_errors=True)


def run(command: list, env: dict[str, str]) -> subprocess.CompletedProcess:
    prefix = [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] \
        if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *map(str, command)], env=env, capture_output=True,
                          text=True, cwd=env["TMPDIR"])


def test_image_environment_is_parsed():
    env = image_environment()
    assert env["TEMPLATEFLOW_AUTOUPDATE"] == "0" and env["MPLBACKEND"] == "Agg"


def test_version_and_usage_error_as_nobody(sandbox):
    _, env = sandbox
    done = run([BIN / "hemocoupling", "--version"], env)
    assert done.returncode == 0, done.stderr
    assert run([BIN / "hemocoupling", "--no-such-option"], env).returncode == 64


def test_unwritable_output_dir_exits_73(sandbox):
    tmp, env = sandbox
    bids = tmp / "bids"
    bids.mkdir()
    done = run([BIN / "hemocoupling", bids, "/proc/hemocoupling-out", "participant"], env)
    assert done.returncode == 73, done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not (WEIGHTS_DIR / f"{SHIPPED['1p']}.json").exists(),
                    reason="participant workflow not usable yet: the shipped 1p surrogate "
                           "(bids_app/surrogate/weights) has not landed")
def test_simulate_participant_group_as_nobody_with_read_only_home(sandbox):
    tmp, env = sandbox
    simulate = [BIN / "hemocoupling-simulate", tmp / "bids", "--mesh", "fsaverage5",
                "--subjects", "1", "--tr", "1.4", "--frames", "200", "--seed", "2", "--runs", "1"]
    done = run(simulate, env)
    assert done.returncode == 0, done.stderr
    out = tmp / "out"
    for level in ("participant", "group"):
        done = run([BIN / "hemocoupling", tmp / "bids", out, level, "--bootstrap", "none",
                    "--kappa", "0.005", "--tau2", "1e4", "--nprocs", "1",
                    "--omp-nthreads", "1", "-w", tmp / "work",
                    *(["--include-flagged"] if level == "group" else [])], env)
        assert done.returncode == 0, f"{level}: {done.stderr[-3000:]}"
    owner = NOBODY if os.geteuid() == 0 else os.geteuid()
    assert (out / "dataset_description.json").stat().st_uid == owner
    assert list(out.glob("sub-01/func/*_stat-estimate_boldmap.func.gii"))
