"""--mem bounds the bootstrap workers by their estimated memory."""

from __future__ import annotations

from bids_app.resources import main_mb, worker_count, worker_mb


def test_workers_fit_in_the_memory_given():
    size = (10242, 300)  # fsaverage5 hemisphere, 300 frames
    assert worker_count(4, None, *size) == 4  # no --mem: no bound
    enough = main_mb(*size) + 3 * worker_mb(*size)
    assert worker_count(8, int(enough) + 1, *size) == 3
    assert worker_count(2, int(enough) + 1, *size) == 2  # never more than --nprocs
    assert worker_count(8, 100, *size) == 1  # at least one, with a warning


def test_bigger_hemispheres_need_more_per_worker():
    assert worker_mb(32492, 300) > worker_mb(10242, 300)
    assert main_mb(10242, 1200) > main_mb(10242, 300)
    assert worker_count(8, 4000, 32492, 1200) < worker_count(8, 4000, 10242, 300)
