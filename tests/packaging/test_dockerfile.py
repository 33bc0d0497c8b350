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
    assert "bash scripts/install.sh --deps-only" in DOCKERFILE
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


def stage(name: str) -> list[str]:
    """Instructions of one stage, continuation lines joined."""
    text = DOCKERFILE.replace("\\\n", " ")
    body = re.split(rf"^FROM \S+ AS {name}$", text, flags=re.MULTILINE)[1]
    body = re.split(r"^FROM ", body, flags=re.MULTILINE)[0]
    return [line for line in body.splitlines() if line and not line.startswith("#")]


def test_download_sources_are_build_arguments_with_public_defaults():
    # scripts/build_image.sh overrides each one to build from local copies
    args = dict(re.findall(r"^ARG (\w+)=(.*)$", DOCKERFILE, flags=re.MULTILINE))
    assert args["HEMOCOUPLING_TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert args["PIP_INDEX_URL"] == "https://pypi.org/simple"
    assert args["TEMPLATEFLOW_ARCHIVE"] == '""'  # empty: TemplateFlow's own S3
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS build$", DOCKERFILE, flags=re.MULTILINE)
    script = (ROOT / "scripts" / "build_image.sh").read_text()
    for name in ("PYTHON_IMAGE", "HEMOCOUPLING_TORCH_INDEX", "TEMPLATEFLOW_ARCHIVE"):
        assert f"--build-arg {name}=" in script
    assert "--target runtime" in script  # the last stage is test


def test_dependencies_are_installed_before_the_sources_are_copied():
    """A source edit must not reinstall torch or recompile scikit-sparse."""
    build = stage("build")
    deps = next(i for i, line in enumerate(build) if "install.sh --deps-only" in line)
    assert "--mount=type=cache,target=/root/.cache/pip" in build[deps]
    assert build.index("COPY . /src") > deps
    copied = {src for line in build[:deps] if line.startswith("COPY ")
              for src in line.split()[1:-1]}
    assert copied == {"requirements.lock", "requirements-dev.lock", "scripts/install.sh"}
    # the runtime stage copies the venv of that layer and adds the package after it
    runtime = stage("runtime")
    venv = runtime.index(f"COPY --from=build {env_value('HEMOCOUPLING_VENV')} "
                         f"{env_value('HEMOCOUPLING_VENV')}")
    wheel = next(i for i, line in enumerate(runtime) if "pip install" in line and ".whl" in line)
    assert venv < wheel
    test = stage("test")
    dev_tools = next(i for i, line in enumerate(test) if "requirements-dev.lock" in line
                     and line.startswith("RUN "))
    assert test.index("COPY . /src") > dev_tools
