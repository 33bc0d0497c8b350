"""The hemocoupling-simulate command: tiny run, usage errors, unwritable output."""

from __future__ import annotations

import json

from bids_app.cli.simulate import main


def test_cli_writes_tiny_dataset(tmp_path):
    code = main([str(tmp_path / "ds"), "--mesh", "fsaverage5", "--subjects", "1", "--tr",
                 "2.0", "--frames", "12", "--model", "2p", "--seed", "5", "--kappa", "0.01"])
    assert code == 0
    truth = json.loads((tmp_path / "ds/sourcedata/truth/truth.json").read_text())
    assert truth["model"] == "2p" and truth["kappa"] == 0.01 and truth["seed"] == 5
    assert (tmp_path / "ds/sub-01/func/sub-01_task-rest_hemi-L_space-fsaverage5_bold.func.gii"
            ).is_file()
    assert not list(tmp_path.rglob(".*"))  # no temporary files left


def test_usage_errors_exit_64(tmp_path, capsys):
    assert main([str(tmp_path), "--mesh", "fsaverage7"]) == 64
    assert main([str(tmp_path), "--cifti"]) == 64  # CIFTI needs fsLR32k
    assert main([str(tmp_path), "--frames", "1"]) == 64
    assert "error" in capsys.readouterr().err


def test_unwritable_output_exits_73(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([str(blocker / "ds"), "--frames", "4"]) == 73
