"""The ``version`` file is the one source of the version: every place that shows it agrees."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import version as installed_version
from pathlib import Path

import bids_app
from bids_app.io.dataset_description import dataset_description

ROOT = Path(__file__).resolve().parents[2]
VERSION = (ROOT / "version").read_text().strip()


def test_version_file_is_a_plain_release_number():
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?(a|b|rc|dev|post)\d+)?", VERSION)


def test_package_metadata_and_module_agree():
    assert installed_version("hemocoupling") == VERSION, "reinstall: bash scripts/install.sh"
    assert bids_app.__version__ == VERSION


def test_cli_version():
    done = subprocess.run([Path(sys.executable).parent / "hemocoupling", "--version"],
                          capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.strip() == f"hemocoupling {VERSION}"


def test_generated_by():
    assert dataset_description()["GeneratedBy"][0]["Version"] == VERSION


def test_boutiques_tool_version_and_image_tag():
    descriptor = json.loads((ROOT / "boutiques.json").read_text())
    assert descriptor["tool-version"] == VERSION
    assert descriptor["container-image"]["image"].endswith(f":{VERSION}")


def test_docker_label_defaults_to_the_version_file():
    dockerfile = (ROOT / "Dockerfile").read_text()
    defaults = re.findall(r"^ARG VERSION=(\S+)$", dockerfile, flags=re.MULTILINE)
    assert defaults and set(defaults) == {VERSION}
    assert 'org.opencontainers.image.version="${VERSION}"' in dockerfile
    assert re.search(r"^COPY version ", dockerfile, flags=re.MULTILINE)


def test_brainlife_main_runs_the_image_of_this_version():
    main = (ROOT / "brainlife" / "main").read_text()
    assert re.search(rf"^VERSION={re.escape(VERSION)}$", main, flags=re.MULTILINE)
