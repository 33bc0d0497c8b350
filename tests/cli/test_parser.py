"""The ``hemocoupling`` parser and its validation into a Config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bids_app.cli.parser import build_parser
from bids_app.config import make_config
from bids_app.errors import MissingInputError, OutputError, UsageError


def _config(tmp_path: Path, *extra: str):
    bids = tmp_path / "bids"
    bids.mkdir(exist_ok=True)
    argv = [str(bids), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "work"), *extra]
    return make_config(build_parser().parse_args(argv))


def test_labels_lose_their_prefix_and_both_spellings_work(tmp_path):
    config = _config(tmp_path, "--participant_label", "sub-01", "02",
                     "--session-label", "ses-A")
    assert config.participant_labels == ("01", "02")
    assert config.session_labels == ("A",)
    assert config.task_id == "rest"


def test_defaults_are_documented_values(tmp_path):
    config = _config(tmp_path)
    assert (config.model, config.confounds, config.bootstrap) == ("1p", "24P", "double")
    assert (config.n_boot, config.n_inner, config.block_length) == (100, 10, 72.0)
    assert config.report and not config.overwrite
    assert config.fmriprep_dir == config.bids_dir


def test_single_kappa_fixes_the_grid(tmp_path):
    config = _config(tmp_path, "--kappa", "1e-3", "--tau2", "1e3", "1e4")
    assert config.kappas == (1e-3,)
    assert config.tau2s == (1e3, 1e4)


def test_config_is_frozen_and_serialisable(tmp_path):
    config = _config(tmp_path)
    with pytest.raises(AttributeError):
        config.model = "2p"
    assert json.loads(json.dumps(config.to_dict()))["output_dir"] == str(tmp_path / "out")


@pytest.mark.parametrize("argv", [
    ["--bogus"],
    ["--model", "3p"],
    ["--n-boot", "0"],
    ["--derivatives", "fmriprep"],
    ["--participant-label", "sub-0_1"],
])
def test_usage_errors_raise_usage_error(tmp_path, argv):
    with pytest.raises(UsageError):
        _config(tmp_path, *argv)


def test_missing_derivatives_folder_is_missing_input(tmp_path):
    with pytest.raises(MissingInputError, match="fmriprep"):
        _config(tmp_path, "--derivatives", f"fmriprep={tmp_path / 'nope'}")


def test_filter_file_is_read_and_checked(tmp_path):
    good = tmp_path / "f.json"
    good.write_text(json.dumps({"bold": {"run": 1}}))
    assert _config(tmp_path, "--bids-filter-file", str(good)).bids_filters == {"bold": {"run": 1}}
    bad = tmp_path / "g.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        _config(tmp_path, "--bids-filter-file", str(bad))


def test_unwritable_output_is_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    bids = tmp_path / "bids"
    bids.mkdir()
    args = build_parser().parse_args([str(bids), str(blocker / "out"), "participant"])
    with pytest.raises(OutputError, match="OUTPUT_DIR"):
        make_config(args)


@pytest.mark.parametrize(("key", "option"), [("subject", "--participant-label"),
                                             ("task", "--task-id"),
                                             ("extension", "extension")])
def test_filter_file_may_not_set_what_the_command_line_decides(tmp_path, key, option):
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"bold": {key: "x"}}))
    with pytest.raises(UsageError, match=rf"f\.json.*'{key}'.*{option}"):
        _config(tmp_path, "--bids-filter-file", str(path))


def test_session_in_filter_file_and_on_the_command_line_conflict(tmp_path):
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"bold": {"session": "A"}}))
    assert _config(tmp_path, "--bids-filter-file", str(path)).bids_filters["bold"] == {
        "session": "A"}
    with pytest.raises(UsageError, match="keep one"):
        _config(tmp_path, "--bids-filter-file", str(path), "--session-label", "B")


def test_bids_dir_that_is_a_file_says_so(tmp_path):
    regular = tmp_path / "bids.zip"
    regular.write_text("")
    argv = [str(regular), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "w")]
    with pytest.raises(MissingInputError, match="is a file, not a folder"):
        make_config(build_parser().parse_args(argv))


def test_config_creates_no_folder(tmp_path):
    """Folders are made when the run starts, after the inputs were selected."""
    config = _config(tmp_path, "-w", str(tmp_path / "deep" / "work"))
    assert not config.output_dir.exists() and not config.work_dir.exists()
