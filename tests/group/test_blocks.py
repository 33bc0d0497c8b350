"""Vertex blocks of the participant store give the same numbers here and on a Dask cluster."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.errors import OutputError
from bids_app.group.blocks import BlockRunner, block_runner
from bids_app.group.vertexwise import (
    estimate_name,
    fit_random_effects,
    group_stats,
    latent_names,
    retest_names,
    retest_stats,
)
from bids_app.io.spill import SpillReader, SpillStore

N, V = 12, 700


@pytest.fixture
def store(tmp_path):
    """N participants' latent estimates, variances and two repeats, with absent values."""
    rng = np.random.default_rng(0)
    with SpillStore(N, V, tmp_path) as spill:
        latent, variance = latent_names("theta")
        spill.array(latent)[:] = rng.normal(-0.5, 0.3, (N, V))
        spill.array(variance)[:] = rng.uniform(0.01, 0.1, (N, V)) ** 2
        spill.array(latent)[:3, :50] = np.nan
        spill.array(estimate_name("theta"))[:] = rng.uniform(0.8, 1.6, (N, V))
        level = rng.normal(1.2, 0.1, (N, V))
        for repeat in range(2):
            estimate, se = retest_names("theta", repeat)
            spill.array(estimate)[:] = level + rng.normal(0, 0.05, (N, V))
            spill.array(se)[:] = 0.05
        yield spill


def _everything(runner: BlockRunner, reader: SpillReader) -> dict[str, np.ndarray]:
    blocks = [slice(a, min(a + 256, V)) for a in range(0, V, 256)]
    x = np.column_stack([np.ones(N), np.linspace(-1, 1, N)])
    fit = fit_random_effects(runner, reader, "theta", np.arange(1, N), x[1:], blocks)
    stats = group_stats(runner, reader, "theta", N, blocks)
    retest = retest_stats(runner, reader, "theta", 2, N, blocks)
    return {"beta": fit.beta, "se": fit.se, "tau2": fit.tau2, "weights": fit.tau2_weights,
            **stats, **{f"retest_{k}": v for k, v in retest.items()}}


def test_a_dask_cluster_gives_the_local_numbers(store, dask_scheduler):
    reader = store.reader()
    local = _everything(BlockRunner(), reader)
    with block_runner(dask_scheduler) as runner:
        assert runner.client is not None
        remote = _everything(runner, reader)
    assert set(remote) == set(local)
    for name, values in local.items():
        np.testing.assert_array_equal(remote[name], values, err_msg=name)  # bit for bit
    assert np.isfinite(local["tau2"]).all() and (local["retest_icc"] > 0.5).mean() > 0.9


def test_workers_without_the_work_folder_get_a_one_line_error(tmp_path, dask_scheduler):
    missing = SpillReader(tmp_path / "not-shared", N, V)
    with block_runner(dask_scheduler) as runner, pytest.raises(OutputError, match="-w"):
        group_stats(runner, missing, "theta", N, [slice(0, V)])
