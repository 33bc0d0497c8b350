"""Repetition time from sidecar, CIFTI step or GIFTI TimeStep (with unit checks)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from nibabel import cifti2
from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiMetaData

from bids_app.errors import InputValidationError, MissingInputError
from bids_app.io.metadata import check_sidecars, repetition_time, tr_disagreement


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


@pytest.mark.parametrize("value", ["abc", "2.0", True, None, [2.0]])
def test_non_numeric_sidecar_tr_names_the_file_and_fix(tmp_path, value):
    sidecar = tmp_path / "x_bold.json"
    sidecar.write_text(json.dumps({"RepetitionTime": value}))
    with pytest.raises(InputValidationError, match=r"x_bold\.json.*JSON number"):
        repetition_time(tmp_path / "x_bold.func.gii", [sidecar])


def test_malformed_sidecar_anywhere_in_the_run_is_reported(tmp_path):
    good, bad = tmp_path / "a_bold.json", tmp_path / "b_bold.json"
    good.write_text(json.dumps({"RepetitionTime": 2.0}))
    bad.write_text('{"RepetitionTime": 2.0,')
    assert repetition_time(tmp_path / "a_bold.func.gii", [good, bad]) == 2.0  # not reached
    with pytest.raises(InputValidationError, match=r"b_bold\.json.*line 1.*fix the JSON"):
        check_sidecars([good, bad])


@pytest.mark.parametrize(("timestep", "tr", "warned"),
                         [(2000, 2.0, False), (2000, 2.015, False), (2000, 2.05, True),
                          (720, 2.0, True), (1.4, 1.4, False), (None, 2.0, False)])
def test_timestep_disagreeing_with_the_sidecar_by_over_1_percent(tmp_path, timestep, tr,
                                                                 warned):
    bold = _gifti(tmp_path / "x_bold.func.gii", timestep=timestep)
    warning = tr_disagreement(bold, tr)
    assert (warning is not None) == warned
    if warned:
        assert "x_bold.func.gii" in warning and f"RepetitionTime {tr:g}" in warning


def test_cifti_step_disagreeing_with_the_sidecar_is_warned(tmp_path):
    series = cifti2.SeriesAxis(0.0, 0.8, 3, unit="SECOND")
    models = cifti2.BrainModelAxis.from_surface(np.arange(4), 4, "CIFTI_STRUCTURE_CORTEX_LEFT")
    path = tmp_path / "x_bold.dtseries.nii"
    nib.save(cifti2.Cifti2Image(np.zeros((3, 4), np.float32), header=(series, models)), path)
    assert tr_disagreement(path, 0.8) is None
    assert "CIFTI series step 0.8 s disagrees" in tr_disagreement(path, 2.0)
