"""Repetition time from sidecar, CIFTI step or GIFTI TimeStep (with unit checks)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from nibabel import cifti2
from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiMetaData

from bids_app.errors import InputValidationError, MissingInputError
from bids_app.io.metadata import repetition_time


def _gifti(path, timestep=None):
    meta = GiftiMetaData({"TimeStep": str(timestep)}) if timestep is not None else None
    arrays = [GiftiDataArray(np.zeros(4, np.float32), intent="NIFTI_INTENT_TIME_SERIES",
                             meta=meta) for _ in range(3)]
    nib.save(GiftiImage(darrays=arrays), path)
    return path


def test_sidecar_wins(tmp_path):
    bold = _gifti(tmp_path / "x_bold.func.gii", timestep=2000)
    sidecar = tmp_path / "x_bold.json"
    sidecar.write_text(json.dumps({"RepetitionTime": 0.72}))
    assert repetition_time(bold, [tmp_path / "absent.json", sidecar]) == 0.72


def test_sidecar_in_milliseconds_is_rejected(tmp_path):
    sidecar = tmp_path / "x_bold.json"
    sidecar.write_text(json.dumps({"RepetitionTime": 1400}))
    with pytest.raises(InputValidationError, match="seconds"):
        repetition_time(tmp_path / "x_bold.func.gii", [sidecar])


@pytest.mark.parametrize(("timestep", "expected"), [(2000.0, 2.0), (1.4, 1.4)])
def test_gifti_timestep_units(tmp_path, timestep, expected):
    bold = _gifti(tmp_path / "x_bold.func.gii", timestep=timestep)
    assert repetition_time(bold) == pytest.approx(expected)


def test_cifti_series_step(tmp_path):
    series = cifti2.SeriesAxis(0.0, 0.8, 3, unit="SECOND")
    models = cifti2.BrainModelAxis.from_surface(np.arange(4), 4, "CIFTI_STRUCTURE_CORTEX_LEFT")
    path = tmp_path / "x_bold.dtseries.nii"
    nib.save(cifti2.Cifti2Image(np.zeros((3, 4), np.float32), header=(series, models)), path)
    assert repetition_time(path) == pytest.approx(0.8)


def test_no_tr_anywhere_names_the_file(tmp_path):
    bold = _gifti(tmp_path / "x_bold.func.gii")
    with pytest.raises(MissingInputError, match=r"x_bold\.func\.gii.*x_bold\.json"):
        repetition_time(bold, [tmp_path / "x_bold.json"])
