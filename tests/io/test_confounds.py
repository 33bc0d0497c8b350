"""Confound strategies, dummy frames and honest motion censoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bids_app.errors import InputValidationError, MissingInputError
from bids_app.io.confounds import MOTION, TISSUE, fill_gaps, longest_run, select_frames

N = 40


def _tsv(tmp_path, **extra):
    rng = np.random.default_rng(1)
    table = pd.DataFrame({name: rng.normal(size=N) for name in MOTION + TISSUE})
    table["framewise_displacement"] = np.r_[np.nan, np.full(N - 1, 0.1)]
    for name, values in extra.items():
        table[name] = values
    path = tmp_path / "sub-01_task-rest_desc-confounds_timeseries.tsv"
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")
    return path


@pytest.mark.parametrize(("strategy", "width"), [("24P", 24), ("36P", 36), ("none", 0)])
def test_strategy_widths(tmp_path, strategy, width):
    selection = select_frames(_tsv(tmp_path), N, strategy)
    assert len(selection.names) == width
    if width:
        assert selection.regressors.shape == (N, width)
        assert np.isfinite(selection.regressors).all()
    assert selection.n_regressors == width == selection.summary()["NumberOfRegressors"]


def test_24p_derivative_and_square_columns(tmp_path):
    path = _tsv(tmp_path)
    x = pd.read_csv(path, sep="\t")["trans_x"].to_numpy()
    reg = select_frames(path, N, "24P").regressors
    np.testing.assert_allclose(reg[1:, 6], np.diff(x))
    np.testing.assert_allclose(reg[:, 12], x**2)


def test_acompcor_uses_wm_and_csf_components(tmp_path):
    comps = {f"{p}_comp_cor_{k:02d}": np.arange(N) * k for p in "wc" for k in range(7)}
    selection = select_frames(_tsv(tmp_path, **comps), N, "acompcor")
    assert selection.regressors.shape == (N, 12 + 10)
    assert "w_comp_cor_04" in selection.names and "w_comp_cor_05" not in selection.names


def test_non_steady_state_frames_are_dropped(tmp_path):
    flags = np.zeros(N)
    flags[:3] = 1
    selection = select_frames(_tsv(tmp_path, non_steady_state_outlier00=flags), N)
    assert (selection.start, selection.stop, selection.n_dummy) == (3, N, 3)
    assert selection.regressors.shape[0] == N - 3
    assert select_frames(_tsv(tmp_path), N, dummy_scans=5).start == 5


def test_censoring_keeps_longest_contiguous_low_motion_segment(tmp_path):
    fd = np.full(N, 0.1)
    fd[[10, 11, 30]] = 2.0
    selection = select_frames(_tsv(tmp_path, framewise_displacement=fd), N, fd_threshold=0.5)
    assert (selection.start, selection.stop) == (12, 30)
    assert selection.n_high_motion == 3
    assert selection.summary()["NumberOfFrames"] == 18


def test_longest_run_edge_cases():
    assert longest_run(np.array([True, True, False, True])) == (0, 2)
    assert longest_run(np.array([False, False])) == (0, 0)
    assert longest_run(np.array([True, False, True, True, True]), first=3) == (3, 5)


def test_missing_columns_and_wrong_length_are_user_errors(tmp_path):
    path = _tsv(tmp_path)
    with pytest.raises(InputValidationError, match="rows"):
        select_frames(path, N + 1)
    with pytest.raises(MissingInputError, match="aCompCor"):
        select_frames(path, N, "acompcor")
    with pytest.raises(MissingInputError, match=r"found for sub-01_task-rest.*--confounds none"):
        select_frames(None, N, "24P", run="sub-01_task-rest")
    assert select_frames(None, N, "none", dummy_scans=2).start == 2


def test_non_numeric_cell_names_file_column_and_line(tmp_path):
    path = _tsv(tmp_path)
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    table.loc[7, "rot_x"] = "0,01"
    table.to_csv(path, sep="\t", index=False)
    with pytest.raises(InputValidationError, match=r"timeseries\.tsv: column rot_x holds "
                                                   r"'0,01' on line 9.*fix the cell"):
        select_frames(path, N, "24P")


def test_unparseable_table_is_a_validation_error(tmp_path):
    path = tmp_path / "sub-01_task-rest_desc-confounds_timeseries.tsv"
    path.write_bytes(b"\x00\xff\xfe" * 200)
    with pytest.raises(InputValidationError, match="tab-separated"):
        select_frames(path, N, "24P")


def test_na_inside_a_column_is_interpolated_and_recorded(tmp_path, caplog):
    trans_x = np.arange(N, dtype=float)
    trans_x[[10, 11]] = np.nan
    trans_x[-1] = np.nan
    path = _tsv(tmp_path, trans_x=trans_x)
    selection = select_frames(path, N, "24P")
    expected = np.arange(N, dtype=float)
    expected[-1] = N - 2  # held after the last value
    np.testing.assert_allclose(selection.regressors[:, 0], expected)
    assert selection.summary()["InterpolatedConfounds"] == {"trans_x": 3}
    assert "3 n/a in column trans_x" in caplog.text and "interpolation" in caplog.text


def test_leading_na_stays_as_fmriprep_writes_it():
    values = np.array([np.nan, 1.0, np.nan, 3.0])
    np.testing.assert_allclose(fill_gaps(values), [np.nan, 1.0, 2.0, 3.0])
