"""Discovery of surface BOLD runs in fMRIPrep-style derivatives."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.gifti import GiftiDataArray, GiftiImage

from bids_app.cli.parser import build_parser
from bids_app.config import make_config
from bids_app.errors import InputValidationError, MissingInputError, NothingSelectedError
from bids_app.io.bids import discover, load_mesh, run_prefix

N_VERTICES = 12


def _gifti_series(path: Path, n_vertices: int = N_VERTICES, n_frames: int = 5) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).normal(size=(n_vertices, n_frames)).astype(np.float32)
    nib.save(GiftiImage(darrays=[GiftiDataArray(data[:, t], intent="NIFTI_INTENT_TIME_SERIES")
                                 for t in range(n_frames)]), path)


def _mesh(path: Path, n_vertices: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    angle = np.linspace(0, 2 * np.pi, n_vertices, endpoint=False)
    points = np.column_stack([np.cos(angle), np.sin(angle), angle]).astype(np.float32)
    faces = np.array([[i, (i + 1) % n_vertices, (i + 2) % n_vertices]
                      for i in range(n_vertices)], dtype=np.int32)
    nib.save(GiftiImage(darrays=[GiftiDataArray(points, intent="NIFTI_INTENT_POINTSET"),
                                 GiftiDataArray(faces, intent="NIFTI_INTENT_TRIANGLE")]), path)


def make_derivatives(root: Path) -> Path:
    """sub-01: two runs, new and old entity orders, fsnative + fsaverage5; sub-02: volume only."""
    if root.is_dir():
        return root
    (root / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({
        "Name": "t", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "fMRIPrep"}]}))
    func = root / "sub-01" / "func"
    for hemi in "LR":
        _gifti_series(func / f"sub-01_task-rest_run-1_hemi-{hemi}_space-fsnative_bold.func.gii")
        _gifti_series(func / f"sub-01_task-rest_run-2_space-fsnative_hemi-{hemi}_bold.func.gii")
        _gifti_series(func / f"sub-01_task-rest_run-1_hemi-{hemi}_space-fsaverage5_bold.func.gii")
        _gifti_series(func / f"sub-01_task-nback_hemi-{hemi}_space-fsnative_bold.func.gii")
        _mesh(root / "sub-01" / "anat" / f"sub-01_hemi-{hemi}_midthickness.surf.gii", N_VERTICES)
    (func / "sub-01_task-rest_run-1_hemi-L_space-fsnative_bold.json").write_text(
        json.dumps({"RepetitionTime": 2.0}))
    (func / "sub-01_task-rest_run-1_desc-confounds_timeseries.tsv").write_text("trans_x\n0\n")
    (root / "sub-02" / "func").mkdir(parents=True)
    (root / "sub-02" / "func" / "sub-02_task-rest_space-T1w_desc-preproc_bold.nii.gz").touch()
    return root


def _config(tmp_path: Path, *extra: str, bids: Path | None = None):
    bids = bids or make_derivatives(tmp_path / "deriv")
    argv = [str(bids), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "w"), *extra]
    return make_config(build_parser().parse_args(argv))


def test_pairs_hemispheres_across_entity_orders(tmp_path):
    runs = discover(_config(tmp_path, "--participant-label", "01", "--space", "fsnative"))["01"]
    assert [r.prefix for r in runs] == ["sub-01_task-rest_run-1", "sub-01_task-rest_run-2"]
    assert all(set(r.gifti) == {"L", "R"} for r in runs)
    assert runs[0].confounds.name == "sub-01_task-rest_run-1_desc-confounds_timeseries.tsv"
    assert runs[1].confounds is None
    assert runs[0].sidecars[0].name.endswith("hemi-L_space-fsnative_bold.json")
    assert set(runs[0].meshes) == {"L", "R"}


def test_default_space_prefers_fsaverage5(tmp_path):
    runs = discover(_config(tmp_path, "--participant-label", "sub-01"))["01"]
    assert [r.space for r in runs] == ["fsaverage5"]


def test_filter_file_and_task_select_runs(tmp_path):
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"bold": {"run": 2}}))
    runs = discover(_config(tmp_path, "--participant-label", "01", "--space", "fsnative",
                            "--bids-filter-file", str(filters)))["01"]
    assert [r.prefix for r in runs] == ["sub-01_task-rest_run-2"]
    nback = discover(_config(tmp_path, "--participant-label", "01", "--task-id", "nback",
                             "--space", "fsnative"))["01"]
    assert [r.prefix for r in nback] == ["sub-01_task-nback"]


def test_unknown_label_selects_nothing(tmp_path):
    with pytest.raises(NothingSelectedError, match="03"):
        discover(_config(tmp_path, "--participant-label", "03"))


def test_session_filter_selecting_nothing(tmp_path):
    with pytest.raises(NothingSelectedError, match="sub-01"):
        discover(_config(tmp_path, "--participant-label", "01", "--session-label", "9"))


def test_volume_only_participant_is_missing_input(tmp_path):
    with pytest.raises(MissingInputError, match=r"no surface BOLD .* for sub-02"):
        discover(_config(tmp_path, "--participant-label", "02"))


def test_missing_space_is_missing_input(tmp_path):
    with pytest.raises(MissingInputError, match="fsLR_den-91k"):
        discover(_config(tmp_path, "--participant-label", "01", "--space", "fsLR_den-91k"))


def test_raw_dataset_with_derivatives_option(tmp_path):
    deriv = make_derivatives(tmp_path / "fmriprep")
    raw = tmp_path / "raw"
    (raw / "sub-01" / "func").mkdir(parents=True)
    (raw / "dataset_description.json").write_text(json.dumps({"Name": "r", "BIDSVersion": "1.9"}))
    (raw / "sub-01" / "func" / "sub-01_task-rest_run-2_bold.json").write_text(
        json.dumps({"RepetitionTime": 1.5}))
    config = _config(tmp_path, "--participant-label", "01", "--space", "fsnative",
                     "--derivatives", f"fmriprep={deriv}", bids=raw)
    run2 = discover(config)["01"][1]
    assert run2.sidecars == (raw / "sub-01" / "func" / "sub-01_task-rest_run-2_bold.json",)


def test_mesh_vertex_count_must_match(tmp_path):
    run = discover(_config(tmp_path, "--participant-label", "01", "--space", "fsnative"))["01"][0]
    vertices, _, source = load_mesh(run, "L", N_VERTICES)
    assert vertices.shape == (N_VERTICES, 3) and source.endswith("midthickness.surf.gii")
    with pytest.raises(InputValidationError, match="vertices"):
        load_mesh(run, "L", N_VERTICES + 1)


def test_template_space_uses_template_mesh(tmp_path, shared_data):
    run = discover(_config(tmp_path, "--participant-label", "01"))["01"][0]
    vertices, _, source = load_mesh(run, "R", 10242)
    assert source == "template:fsaverage5" and vertices.shape == (10242, 3)
    with pytest.raises(InputValidationError, match="template"):
        load_mesh(run, "R", 10241)


def test_run_prefix_drops_space_entities():
    name = "sub-1_ses-2_task-rest_acq-AP_run-01_space-fsLR_den-91k_bold.dtseries.nii"
    assert run_prefix(name) == "sub-1_ses-2_task-rest_acq-AP_run-01"
