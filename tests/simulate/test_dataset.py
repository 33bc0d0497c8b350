"""Synthetic fMRIPrep-style datasets: layout, round trips, truth, motion, determinism."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_app.io.surface_files import load_cifti_series, load_func_gifti, load_surface
from bids_app.models import ONE_PARAM, TWO_PARAM
from bids_app.prior import icosphere
from bids_app.simulate.dataset import DatasetSpec, simulate_dataset
from bids_app.simulate.motion import MOTION_COLUMNS, framewise_displacement


@pytest.fixture(scope="module")
def fsaverage5_dataset(tmp_path_factory):
    """One subject, two runs, one session on fsaverage5 (nilearn or TemplateFlow mesh)."""
    spec = DatasetSpec(mesh="fsaverage5", n_subjects=1, tr=1.5, n_frames=24, model="1p",
                       seed=7, n_runs=2, n_sessions=1)
    return simulate_dataset(tmp_path_factory.mktemp("fsa5"), spec)


def _ico_meshes():
    vertices, faces = icosphere(3, radius_mm=60.0)
    shift = np.array([70.0, 0.0, 0.0])
    return {"L": (vertices - shift, faces), "R": (vertices + shift, faces)}


def test_loads_with_pybids(fsaverage5_dataset):
    from bids import BIDSLayout

    layout = BIDSLayout(fsaverage5_dataset, validate=False, is_derivative=True)
    bold = layout.get(subject="01", suffix="bold", extension=".func.gii")
    assert len(bold) == 4  # 2 hemispheres × 2 runs
    assert {f.get_entities()["space"] for f in bold} == {"fsaverage5"}
    assert {f.get_entities()["hemi"] for f in bold} == {"L", "R"}
    assert {f.get_entities()["session"] for f in bold} == {"1"}
    assert bold[0].get_metadata()["RepetitionTime"] == 1.5
    assert len(layout.get(subject="01", desc="confounds", suffix="timeseries",
                          extension=".tsv")) == 2
    assert len(layout.get(subject="01", suffix="midthickness", extension=".surf.gii")) == 2
    assert not [f for f in layout.get() if "sourcedata" in f.path]  # truth is not indexed


def test_every_gifti_round_trips_through_nibabel(fsaverage5_dataset):
    files = sorted(fsaverage5_dataset.rglob("*.gii"))
    assert len(files) == 4 + 2 + 6  # bold, meshes, truth maps
    for path in files:
        image = nib.load(path)
        again = nib.GiftiImage.from_bytes(image.to_bytes())
        for a, b in zip(image.darrays, again.darrays, strict=True):
            assert np.array_equal(a.data, b.data, equal_nan=True)
        if path.name.endswith("_bold.func.gii"):
            data, step = load_func_gifti(path)
            assert data.shape == (10242, 24) and len(image.darrays) == 24
            assert step == pytest.approx(1.5)
        if path.name.endswith(".surf.gii"):
            assert load_surface(path)[0].shape == (10242, 3)


def test_truth_record_and_maps(fsaverage5_dataset):
    truth_dir = fsaverage5_dataset / "sourcedata" / "truth"
    record = json.loads((truth_dir / "truth.json").read_text())
    assert record["kappa"] == 5e-3 and record["tau2"] == 1e4 and record["seed"] == 7
    assert record["Nuisance"]["noise_sd"] == [0.1515, 0.1515]
    stem = truth_dir / "sub-01" / "sub-01_hemi-L_space-fsaverage5_desc-truth"
    theta, _ = load_func_gifti(f"{stem}_theta.func.gii")
    latent, _ = load_func_gifti(f"{stem}_latent.func.gii")
    lo, hi = ONE_PARAM.link_bounds()
    assert np.all((theta >= lo) & (theta <= hi))
    assert np.allclose(ONE_PARAM.to_theta(latent), theta, rtol=1e-5)


def test_motion_really_contaminates_bold(fsaverage5_dataset):
    func = fsaverage5_dataset / "sub-01" / "ses-1" / "func"
    data, _ = load_func_gifti(func / "sub-01_ses-1_task-rest_run-1_hemi-L_space-fsaverage5"
                                     "_bold.func.gii")
    table = pd.read_csv(func / "sub-01_ses-1_task-rest_run-1_desc-confounds_timeseries.tsv",
                        sep="\t", na_values="n/a")
    motion = table[list(MOTION_COLUMNS)].to_numpy()
    x = np.column_stack([np.ones(len(motion)), motion - motion.mean(axis=0)])
    y = (data - data.mean(axis=1, keepdims=True)).T
    fitted = x @ np.linalg.lstsq(x, y, rcond=None)[0]
    r2 = (fitted**2).sum(axis=0) / (y**2).sum(axis=0)
    chance = 6 / (len(motion) - 1)
    assert r2.mean() > chance + 0.1
    fd = table["framewise_displacement"].to_numpy()
    assert np.isnan(fd[0]) and np.allclose(fd[1:], framewise_displacement(motion)[1:])


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    def run(folder, seed):
        spec = DatasetSpec(n_frames=12, tr=2.0, model="2p", seed=seed)
        root = simulate_dataset(tmp_path / folder, spec, meshes=_ico_meshes())
        return load_func_gifti(root / "sub-01" / "func"
                               / "sub-01_task-rest_hemi-R_space-fsaverage5_bold.func.gii")[0]

    a, b, c = run("a", 3), run("b", 3), run("c", 4)
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_medial_wall_mask_gives_zero_data_and_nan_truth(tmp_path):
    meshes = _ico_meshes()
    n = len(meshes["L"][0])
    masks = {hemi: mesh[0][:, 2] > -20 for hemi, mesh in meshes.items()}
    spec = DatasetSpec(n_frames=10, tr=1.0, model="2p", seed=1)
    root = simulate_dataset(tmp_path, spec, meshes=meshes, cortex_masks=masks)
    data, _ = load_func_gifti(root / "sub-01/func/sub-01_task-rest_hemi-L_space-fsaverage5"
                                     "_bold.func.gii")
    theta, _ = load_func_gifti(root / "sourcedata/truth/sub-01/sub-01_hemi-L_space-fsaverage5"
                                      "_desc-truth_theta.func.gii")
    outside = ~masks["L"]
    assert data.shape == (n, 10) and theta.shape == (n, TWO_PARAM.n_params)
    assert np.all(data[outside] == 0) and np.all(data[~outside].std(axis=1) > 0)
    assert np.isnan(theta[outside]).all() and np.isfinite(theta[~outside]).all()


@pytest.mark.shared
def test_fslr_gifti_and_cifti_variants_agree(shared_data, tmp_path):
    spec = DatasetSpec(mesh="fsLR32k", n_frames=8, tr=0.8, cifti=True, seed=2)
    root = simulate_dataset(tmp_path, spec)
    func = root / "sub-01" / "func"
    series = load_cifti_series(func / "sub-01_task-rest_space-fsLR_den-91k_bold.dtseries.nii")
    assert series.step_s == pytest.approx(0.8)
    for hemi in "LR":
        gifti, _ = load_func_gifti(func / f"sub-01_task-rest_hemi-{hemi}_space-fsLR_den-32k"
                                          "_bold.func.gii")
        assert gifti.shape == (32492, 8)
        assert np.array_equal(series.cortex[hemi].to_full(0.0), gifti)
    assert (root / "sub-01/anat/sub-01_hemi-L_space-fsLR_den-32k_midthickness.surf.gii").exists()
