"""``--config-file FILE.toml``: options from a file, the command line winning."""

from __future__ import annotations

from pathlib import Path

import pytest

from bids_app.cli.parser import parse_command_line
from bids_app.cli.run import main
from bids_app.errors import MissingInputError, UsageError


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "options.toml"
    path.write_text(text)
    return path


def _parse(tmp_path: Path, *argv: str):
    return parse_command_line([str(tmp_path / "bids"), str(tmp_path / "out"), "participant",
                               *argv])


def test_file_options_are_converted_and_the_command_line_wins(tmp_path):
    path = _toml(tmp_path, 'n-boot = 50\nparticipant_label = ["sub-01", "02"]\n'
                           'overwrite = true\nkappa = [0.05, 0.5]\nmodel = "2p"\n'
                           'derivatives = "fmriprep=/data"\nverbose = 2\n')
    args = _parse(tmp_path, "--config-file", str(path))
    assert args.n_boot == 50 and args.participant_label == ["sub-01", "02"]
    assert args.overwrite and args.kappa == [0.05, 0.5] and args.model == "2p"
    assert args.derivatives == [("fmriprep", Path("/data"))] and args.verbose == 2
    wins = _parse(tmp_path, "--n-boot", "7", "--config-file", str(path), "--model", "1p",
                  "--participant-label", "03")
    assert (wins.n_boot, wins.model, wins.participant_label) == (7, "1p", ["03"])
    assert wins.kappa == [0.05, 0.5]  # still from the file


@pytest.mark.parametrize(("text", "named"), [
    ("n_bootstrap = 50\n", "'n_bootstrap'"),
    ("config-file = 'x.toml'\n", "'config-file'"),
    ("bids_dir = '/data'\n", "'bids_dir'"),
    ("n-boot = 0\n", "--n-boot"),
    ("model = '3p'\n", "--model"),
    ("overwrite = 'yes'\n", "'overwrite'"),
    ("n-boot = [1, 2]\n", "'n-boot'"),
    ("[execution]\nnprocs = 2\n", "'execution'"),
    ("n-boot = \n", "not valid TOML"),
])
def test_bad_keys_and_values_are_usage_errors_naming_them(tmp_path, text, named):
    path = _toml(tmp_path, text)
    with pytest.raises(UsageError, match=r"options\.toml") as raised:
        _parse(tmp_path, "--config-file", str(path))
    assert named in str(raised.value)


def test_missing_file_is_missing_input(tmp_path):
    with pytest.raises(MissingInputError, match=r"absent\.toml"):
        _parse(tmp_path, "--config-file", str(tmp_path / "absent.toml"))


def test_bad_key_exits_64_with_one_line_and_creates_nothing(tmp_path, capsys):
    (tmp_path / "bids").mkdir()
    path = _toml(tmp_path, "nprocs = 2\nbogus = 1\n")
    code = main([str(tmp_path / "bids"), str(tmp_path / "out"), "participant",
                 "-w", str(tmp_path / "work"), "--config-file", str(path)])
    assert code == 64
    err = capsys.readouterr().err.strip()
    assert "'bogus'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()
