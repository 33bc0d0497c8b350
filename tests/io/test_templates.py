"""Template meshes from TemplateFlow (offline copy) and the nilearn wheel; parcellations offline."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from bids_app.errors import MissingInputError
from bids_app.io.templates import _nilearn_fsaverage5, template_mesh


def _check_mesh(vertices, faces, n_vertices):
    assert vertices.shape == (n_vertices, 3) and faces.shape[1] == 3
    assert faces.min() == 0 and faces.max() == n_vertices - 1
    # Closed genus-0 surface: F = 2V - 4; extent of a hemisphere in mm.
    assert faces.shape[0] == 2 * n_vertices - 4
    assert 100 < np.ptp(vertices[:, 1]) < 250


def test_fsaverage5_from_nilearn_wheel_is_midthickness():
    vertices, faces = _nilearn_fsaverage5("L")
    _check_mesh(vertices, faces, 10242)


@pytest.mark.shared
def test_templateflow_meshes(shared_data):
    _check_mesh(*template_mesh("fsaverage5", "R"), 10242)
    _check_mesh(*template_mesh("fsLR32k", "L"), 32492)
    left, right = template_mesh("fsLR", "L")[0], template_mesh("fsLR", "R")[0]
    assert left[:, 0].mean() < 0 < right[:, 0].mean()


@pytest.mark.shared
def test_missing_template_names_templateflow_home(shared_data):
    with pytest.raises(MissingInputError, match="TEMPLATEFLOW_HOME"):
        template_mesh("fsaverage6", "L")  # not in the offline copy


def test_unknown_space_is_missing_input_error():
    with pytest.raises(MissingInputError, match="MNI152"):
        template_mesh("MNI152NLin6Asym", "L")


def test_offline_parcellations_never_download(tmp_path):
    """With TEMPLATEFLOW_AUTOUPDATE=0 the empty placeholders of TemplateFlow's skeleton stay
    empty (no S3 request) and one warning names a missing atlas file and the fetch script."""
    code = (
        "import logging; logging.basicConfig(level=logging.WARNING)\n"
        "from bids_app.io.templates import templateflow_parcellations\n"
        "assert templateflow_parcellations('fsaverage5', ['L', 'R']) == {}\n"
    )
    env = {**os.environ, "TEMPLATEFLOW_HOME": str(tmp_path), "TEMPLATEFLOW_AUTOUPDATE": "0"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "parcellation" in line]
    assert len(warnings) == 1
    assert "den-10k_atlas-" in warnings[0] and "scripts/fetch_templates.py" in warnings[0]
    atlases = list(tmp_path.glob("tpl-fsaverage/*den-10k*_dseg.label.gii"))
    assert atlases and all(path.stat().st_size == 0 for path in atlases)
