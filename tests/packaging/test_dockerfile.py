"""The Dockerfile lints clean and keeps the properties users of BIDS-App images rely on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
HADOLINT = Path(sys.executable).parent / "hadolint"


def env_value(name: str) -> str:
    found = re.findall(rf"\b{name}=(\S+)", DOCKERFILE)
    assert found, f"{name} is not set in the Dockerfile"
    return found[-1]


def test_hadolint_clean():
    done = subprocess.run([HADOLINT, ROOT / "Dockerfile"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_base_image_pinned_by_digest():
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}$",
                     DOCKERFILE, flags=re.MULTILINE)


def test_stages_and_absolute_entrypoint():
    stages = re.findall(r"^FROM \S+ AS (\w+)$", DOCKERFILE, flags=re.MULTILINE)
    assert stages == ["build", "runtime", "test"]
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", DOCKERFILE, re.MULTILINE)[1])
    assert entrypoint == [f"{env_value('HEMOCOUPLING_VENV')}/bin/hemocoupling"]


def test_installs_through_the_ci_install_script_and_lock_files():
    assert "RUN bash scripts/install.sh" in DOCKERFILE
    assert re.search(r"-r \S*requirements-dev\.lock", DOCKERFILE)  # test stage: CI tools, locked


@pytest.mark.parametrize(("name", "value"), [
    ("TEMPLATEFLOW_AUTOUPDATE", "0"), ("MPLBACKEND", "Agg"),
    ("MPLCONFIGDIR", "/tmp/hemocoupling-mpl"), ("NUMBA_CACHE_DIR", "/tmp/hemocoupling-numba"),
    ("TORCH_HOME", "/tmp/hemocoupling-torch"), ("XDG_CACHE_HOME", "/tmp/hemocoupling-cache"),
])
def test_runtime_environment_for_read_only_containers(name, value):
    assert env_value(name) == value


def test_templates_prefetched_into_the_image_home():
    home = env_value("HOME")
    assert env_value("TEMPLATEFLOW_HOME").startswith(home + "/")
    assert "scripts/fetch_templates.py --prune" in DOCKERFILE
    assert f"COPY --from=build {home} {home}" in DOCKERFILE


def test_dockerignore_keeps_the_venv_and_git_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored)
