"""The image's TemplateFlow pre-fetch list resolves and covers the templates the app reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "fetch_templates.py"


@pytest.fixture(scope="module")
def listed(tmp_path_factory) -> set[str]:
    """File names the fetch list matches in TemplateFlow's own index (no download)."""
    home = tmp_path_factory.mktemp("templateflow")
    env = {**os.environ, "TEMPLATEFLOW_HOME": str(home), "TEMPLATEFLOW_AUTOUPDATE": "0"}
    done = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--list"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {Path(line).name for line in done.stdout.split()}


@pytest.mark.parametrize("density", ["10k", "41k", "164k"])
@pytest.mark.parametrize("hemi", ["L", "R"])
def test_fsaverage_surfaces(listed, density, hemi):
    for suffix in ("white", "pial", "sphere"):
        assert f"tpl-fsaverage_hemi-{hemi}_den-{density}_{suffix}.surf.gii" in listed
    assert f"tpl-fsaverage_hemi-{hemi}_den-{density}_atlas-Destrieux2009_dseg.label.gii" \
        in listed


@pytest.mark.parametrize("hemi", ["L", "R"])
def test_fslr_surfaces_and_medial_wall(listed, hemi):
    assert f"tpl-fsLR_den-32k_hemi-{hemi}_midthickness.surf.gii" in listed
    assert f"tpl-fsLR_hemi-{hemi}_den-32k_sphere.surf.gii" in listed
    assert f"tpl-fsLR_hemi-{hemi}_den-32k_desc-nomedialwall_dparc.label.gii" in listed
    assert f"tpl-fsaverage_hemi-{hemi}_den-164k_midthickness.surf.gii" in listed


def test_covers_the_offline_copy_the_tests_use(listed, shared_data):
    offline = {p.name for p in (shared_data / "templateflow").rglob("*.gii")}
    assert offline and offline <= listed
