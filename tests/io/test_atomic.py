"""Atomic writers: complete files or nothing, hidden temporaries."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from bids_app.errors import OutputError
from bids_app.io.atomic import atomic_path, save_image, write_bytes, write_json, write_text


def test_writers_create_folders_and_leave_no_temporaries(tmp_path):
    write_text(tmp_path / "a" / "x.txt", "hello")
    write_bytes(tmp_path / "a" / "y.bin", b"\x00\x01")
    write_json(tmp_path / "a" / "z.json", {"n": np.int64(3), "v": np.arange(2.0)})
    assert (tmp_path / "a" / "x.txt").read_text() == "hello"
    assert (tmp_path / "a" / "y.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "a" / "z.json").read_text()) == {"n": 3, "v": [0.0, 1.0]}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.txt", "y.bin", "z.json"]


def test_failed_write_keeps_old_file_and_removes_temporary(tmp_path):
    target = tmp_path / "keep.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_temporary_is_hidden_in_same_folder_with_full_suffix(tmp_path):
    with atomic_path(tmp_path / "sub-01_bold.func.gii") as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".") and tmp.name.endswith(".func.gii")
        tmp.write_bytes(b"")


def test_save_image_writes_loadable_nifti(tmp_path):
    image = nib.Nifti1Image(np.arange(8, dtype=np.float32).reshape(2, 2, 2), np.eye(4))
    path = save_image(tmp_path / "x.nii.gz", image)
    assert np.array_equal(nib.load(path).get_fdata(), image.get_fdata())


def test_unwritable_folder_raises_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="file"):
        write_text(blocker / "x.txt", "no")
