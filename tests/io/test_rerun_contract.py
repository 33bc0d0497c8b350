"""Finished record, input fingerprint, staged swap, participant lock and refit count: the
pieces of the re-run contract, on small files."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bids_app.io.bids import SurfaceRun
from bids_app.io.dataset_description import finished_state, mark_finished, outputs_mismatch
from bids_app.io.input_fingerprint import HASHED_BYTES, input_fingerprint
from bids_app.io.participant_lock import participant_lock
from bids_app.io.refit_progress import refits_kept
from bids_app.io.staging import promote, staged

MAP = "sub-01/func/sub-01_task-rest_hemi-L_space-x_param-theta_stat-estimate_boldmap.func.gii"


def _run(bids: Path) -> SurfaceRun:
    func = bids / "sub-01" / "func"
    func.mkdir(parents=True, exist_ok=True)
    gifti = func / "sub-01_task-rest_hemi-L_bold.func.gii"
    sidecar = func / "sub-01_task-rest_hemi-L_bold.json"
    if not gifti.exists():
        gifti.write_bytes(b"series")
        sidecar.write_text(json.dumps({"RepetitionTime": 0.72}))
    return SurfaceRun("01", "sub-01_task-rest", {"subject": "01"}, "x", gifti={"L": gifti},
                      sidecars=(sidecar,))


def _result(out: Path, text: str) -> list[Path]:
    path = out / MAP
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return [path]


def test_finished_state_keys_on_settings_and_inputs(tmp_path):
    bids, out = tmp_path / "bids", tmp_path / "out"
    inputs = input_fingerprint([_run(bids)], bids)
    assert set(inputs["Files"]) == {"sub-01/func/sub-01_task-rest_hemi-L_bold.func.gii",
                                    "sub-01/func/sub-01_task-rest_hemi-L_bold.json"}
    mark_finished(out, "01", _result(out, "v1"), {"model": "1p"}, inputs)
    done, why = finished_state(out, "01", {"model": "1p"}, inputs)
    assert done and "settings" in why and "the same 2 input files" in why

    assert finished_state(out, "01", {"model": "2p"}, inputs) == (
        False, "settings changed (model)")
    sidecar = bids / "sub-01/func/sub-01_task-rest_hemi-L_bold.json"
    sidecar.write_text(json.dumps({"RepetitionTime": 2.00}))
    done, why = finished_state(out, "01", {"model": "1p"}, input_fingerprint([_run(bids)], bids))
    assert not done and why == ("1 input file(s) changed, e.g. "
                                "sub-01/func/sub-01_task-rest_hemi-L_bold.json")
    moved = tmp_path / "elsewhere"
    os.rename(bids, moved)
    done, why = finished_state(out, "01", {"model": "1p"}, input_fingerprint([_run(moved)], moved))
    assert not done and why.startswith("BIDS_DIR changed")


def test_touching_a_small_file_is_no_change_but_touching_a_large_one_is(tmp_path):
    bids = tmp_path / "bids"
    run = _run(bids)
    before = input_fingerprint([run], bids)
    os.utime(run.sidecars[0], ns=(1, 1))
    assert input_fingerprint([run], bids) == before
    big = run.gifti["L"]
    with open(big, "wb") as handle:
        handle.truncate(HASHED_BYTES + 1)
    first = input_fingerprint([run], bids)
    os.utime(big, ns=(2, 2))
    assert input_fingerprint([run], bids) != first


def test_outputs_mismatch_vouches_only_for_recorded_bytes(tmp_path):
    out = tmp_path / "out"
    assert "no finished record" in outputs_mismatch(out, "01", [MAP])
    mark_finished(out, "01", _result(out, "v1"))
    assert outputs_mismatch(out, "01", [MAP]) is None
    (out / MAP).write_text("edited")
    assert "differs from the map" in outputs_mismatch(out, "01", [MAP])
    assert "is not in" in outputs_mismatch(out, "01", ["sub-01/func/other.func.gii"])


def test_a_failure_while_staged_leaves_the_previous_result(tmp_path):
    out = tmp_path / "out"
    old = _result(out, "old")
    record = mark_finished(out, "01", old).read_text()
    with pytest.raises(RuntimeError), staged(out, "01") as folder:
        _result(folder, "new, half done")
        raise RuntimeError("fit failed")
    assert (out / MAP).read_text() == "old" and (out / "logs/sub-01_finished.json").read_text() \
        == record
    assert [p.name for p in out.iterdir() if p.name.startswith(".staging")] == []


def test_promote_replaces_every_previous_file(tmp_path):
    out = tmp_path / "out"
    stale = out / "sub-01/func/sub-01_task-rest_run-9_hemi-L_space-x_param-theta_stat-" \
                  "estimate_boldmap.func.gii"
    mark_finished(out, "01", _result(out, "old") + _result_at(stale))
    with staged(out, "01") as folder:
        _result(folder, "new")
        (folder / "sub-01.html").write_text("report")
        moved = promote(folder, out, "01")
    assert sorted(p.relative_to(out).as_posix() for p in moved) == sorted([MAP, "sub-01.html"])
    assert (out / MAP).read_text() == "new" and not stale.exists()
    assert not (out / "logs/sub-01_finished.json").exists()  # the caller writes the new one


def _result_at(path: Path) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("stale")
    return [path]


def test_a_second_holder_of_the_participant_lock_waits(tmp_path, caplog):
    order = []

    def second():
        with participant_lock(tmp_path, "01"):
            order.append("second")

    with participant_lock(tmp_path, "01"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first done")
    thread.join(5)
    assert order == ["first done", "second"]
    assert "being processed by another job" in caplog.text


def test_refits_kept_counts_the_problems_this_job_touched(tmp_path):
    since = time.time() - 1
    folder = tmp_path / "bootstrap" / "sub-01_task-rest_hemi-L" / "bootstrap-abc"
    folder.mkdir(parents=True)
    for b, r in [(0, 0), (0, 1), (1, 0), (7, 0)]:
        np.save(folder / f"b{b:04d}_r{r:03d}.npy", np.zeros(2))
    assert refits_kept(tmp_path, "double", 5, 2, since) == (3, 15)  # b7 is beyond B
    assert refits_kept(tmp_path, "single", 5, 2, since) == (2, 5)
    assert refits_kept(tmp_path, "none", 5, 2, since) == (0, 0)
    assert refits_kept(tmp_path, "double", 5, 2, time.time() + 60) == (0, 0)
