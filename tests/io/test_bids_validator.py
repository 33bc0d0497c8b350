"""The real BIDS validator (bids-validator-deno) on small raw datasets made here."""

from __future__ import annotations

import json
import logging

import pytest

from bids_app.errors import InputValidationError
from bids_app.io.bids_validator import dataset_type, validate_bids_dir


def test_valid_raw_dataset_passes_and_the_report_is_logged(tmp_path, caplog, make_raw):
    raw = make_raw(tmp_path / "raw")
    with caplog.at_level(logging.INFO, logger="bids_app"):
        validate_bids_dir(raw)
    assert "is valid BIDS" in caplog.text
    assert "README_FILE_MISSING" in caplog.text  # a warning, in the log only


def test_errors_name_the_first_one_and_the_skip_option(tmp_path, make_raw):
    raw = make_raw(tmp_path / "raw")
    broken = raw / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz"
    broken.write_bytes(b"")
    with pytest.raises(InputValidationError) as raised:
        validate_bids_dir(raw)
    message = str(raised.value)
    assert str(broken) in message and "--skip-bids-validation" in message
    assert "\n" not in message
    validate_bids_dir(raw, skip=True)  # skipped: no error


def test_derivatives_are_not_validated(tmp_path):
    deriv = tmp_path / "fmriprep"
    deriv.mkdir()
    (deriv / "dataset_description.json").write_text(json.dumps(
        {"Name": "f", "BIDSVersion": "1.9.0", "DatasetType": "derivative"}))
    (deriv / "not_bids.txt").write_text("x")
    assert dataset_type(deriv) == "derivative"
    validate_bids_dir(deriv)
    assert dataset_type(tmp_path / "absent") is None


def test_the_fmriprep_folder_is_not_validated_whatever_its_description(tmp_path, make_raw):
    """BIDS_DIR given as the fMRIPrep outputs, with a description that omits DatasetType."""
    deriv = make_raw(tmp_path / "fmriprep")
    (deriv / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz").write_bytes(b"")
    assert dataset_type(deriv) == "raw"
    validate_bids_dir(deriv, fmriprep_dir=deriv)  # not validated: no error
    with pytest.raises(InputValidationError):
        validate_bids_dir(deriv, fmriprep_dir=tmp_path / "elsewhere")
