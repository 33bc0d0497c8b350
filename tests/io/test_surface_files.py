"""GIFTI and CIFTI round trips, and reading fMRIPrep-style real files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bids_app.errors import InputValidationError, MissingInputError
from bids_app.io.surface_files import (
    SurfaceBlock,
    load_cifti_scalars,
    load_cifti_series,
    load_func_gifti,
    load_surface,
    save_cifti_scalars,
    save_cifti_series,
    save_func_gifti,
    save_scalar_gifti,
    save_surface,
)

REAL_FUNC = "real/fmriprep_fsaverage5/sub-010188/ses-02/func"


def test_func_gifti_round_trip_one_array_per_frame(tmp_path):
    data = np.random.default_rng(0).standard_normal((50, 7)).astype(np.float32)
    path = save_func_gifti(tmp_path / "x_bold.func.gii", data, tr=0.72, hemi="L")
    image = nib.load(path)
    assert len(image.darrays) == 7
    assert image.darrays[0].intent == nib.nifti1.intent_codes["NIFTI_INTENT_TIME_SERIES"]
    assert image.meta["AnatomicalStructurePrimary"] == "CortexLeft"
    loaded, step = load_func_gifti(path)
    assert np.array_equal(loaded, data) and step == pytest.approx(0.72)


def test_scalar_gifti_round_trip(tmp_path):
    maps = np.array([[1.0, np.nan], [2.0, 3.0]])
    path = save_scalar_gifti(tmp_path / "m.func.gii", maps, names=["a", "b"], hemi="R")
    loaded, step = load_func_gifti(path)
    assert np.array_equal(loaded, maps.astype(np.float32), equal_nan=True) and step is None
    assert [a.meta["Name"] for a in nib.load(path).darrays] == ["a", "b"]


def test_surface_round_trip(tmp_path):
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    faces = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    path = save_surface(tmp_path / "s.surf.gii", vertices, faces, hemi="L")
    v, f = load_surface(path)
    assert np.array_equal(v, vertices) and np.array_equal(f, faces)


def test_bad_inputs_raise_user_errors(tmp_path):
    with pytest.raises(MissingInputError, match="nothere"):
        load_func_gifti(tmp_path / "nothere.func.gii")
    (tmp_path / "junk.func.gii").write_text("not xml")
    with pytest.raises(InputValidationError, match="junk"):
        load_func_gifti(tmp_path / "junk.func.gii")
    path = save_func_gifti(tmp_path / "f.func.gii", np.zeros((4, 2)), 1.0)
    with pytest.raises(InputValidationError, match="surface mesh"):
        load_surface(path)


def test_cifti_series_and_scalars_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    keep = {"L": np.array([0, 2, 3, 7]), "R": np.array([1, 4, 5])}
    cortex = {h: SurfaceBlock(rng.standard_normal((len(v), 6)).astype(np.float32), v, 9)
              for h, v in keep.items()}
    series = load_cifti_series(save_cifti_series(tmp_path / "x.dtseries.nii", cortex, 2.0))
    assert series.step_s == 2.0
    for hemi in "LR":
        assert np.array_equal(series.cortex[hemi].data, cortex[hemi].data)
        assert np.array_equal(series.cortex[hemi].vertices, keep[hemi])
        assert series.cortex[hemi].n_vertices == 9
    maps = {h: SurfaceBlock(b.data[:, :2], b.vertices, 9) for h, b in cortex.items()}
    loaded, names = load_cifti_scalars(save_cifti_scalars(tmp_path / "m.dscalar.nii", maps,
                                                          ["est", "se"]))
    assert names == ["est", "se"]
    assert np.array_equal(loaded["R"].to_full()[keep["R"]], maps["R"].data)
    assert np.isnan(loaded["R"].to_full()[0]).all()


def test_surface_block_from_full_drops_nan_rows():
    full = np.array([[1.0], [np.nan], [3.0]])
    block = SurfaceBlock.from_full(full)
    assert block.vertices.tolist() == [0, 2] and block.n_vertices == 3
    assert np.array_equal(block.to_full(), full, equal_nan=True)


@pytest.mark.shared
def test_reads_real_fmriprep_gifti(shared_data):
    path = next((shared_data / REAL_FUNC).glob("*hemi-L_space-fsaverage5_bold.func.gii"))
    data, step = load_func_gifti(path)
    assert data.shape == (10242, 200) and data.dtype == np.float32
    assert step == pytest.approx(1.4)
    assert (data == 0).all(axis=1).sum() == 888  # medial wall, per the data README


@pytest.mark.shared
def test_real_cifti_round_trip(shared_data, tmp_path):
    path = next((shared_data / REAL_FUNC).glob("*_den-91k_bold.dtseries.nii"))
    series = load_cifti_series(path)
    assert series.step_s == pytest.approx(1.4)
    assert series.cortex["L"].data.shape == (29696, 40)
    assert series.cortex["R"].data.shape == (29716, 40)
    assert series.cortex["L"].n_vertices == series.cortex["R"].n_vertices == 32492
    again = load_cifti_series(save_cifti_series(tmp_path / "c.dtseries.nii", series.cortex, 1.4))
    for hemi in "LR":
        assert np.array_equal(again.cortex[hemi].data, series.cortex[hemi].data)
        assert np.array_equal(again.cortex[hemi].vertices, series.cortex[hemi].vertices)
