"""The non-editable install the image makes carries every package file (weights, report
templates, JSON specs), not only the Python modules an editable install hides behind."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def package_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in (root / "bids_app").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_wheel_holds_every_package_file(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(ROOT / "bids_app", source / "bids_app",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "version", "README.md"):
        shutil.copy(ROOT / name, source / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", tmp_path / "dist", source], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("hemocoupling-*.whl")
    assert wheel.name.startswith(f"hemocoupling-{(ROOT / 'version').read_text().strip()}-")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(package_files(source) - in_wheel)
    assert missing == [], f"add their extensions to [tool.setuptools.package-data]: {missing}"
