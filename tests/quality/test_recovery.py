"""The recovery check flags a map that would read the same for a wide range of truths."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.io.confounds import strategy_regressors
from bids_app.preprocess import clean
from bids_app.quality.recovery import MAX_RATIO, pooled_offset, recovery_check
from bids_app.simulate import HCP_1P, sample_nuisance, simulate_bold
from bids_app.simulate.confounds import simulated_confounds
from bids_app.surrogate import load_surrogate

# The demo's protocol, where the shipped 1p surrogate reads every slow truth as θ ≈ 1.
TR, FRAMES, N = 1.4, 300, 300


@pytest.fixture(scope="module")
def surrogate():
    return load_surrogate("1p", TR, FRAMES)


def white_run(surrogate, theta: float, seed: int):
    """Cleaned series of a uniform θ under the paper's white noise, 24P regressed, and
    the pooled latent estimate as the map."""
    rng = np.random.default_rng(seed)
    y = simulate_bold(surrogate.model, np.full((N, 1), theta), TR, FRAMES,
                      sample_nuisance(HCP_1P, N, rng), rng)
    regressors = strategy_regressors(simulated_confounds(FRAMES, TR, rng), "24P", "sim")[1]
    y_clean = clean(y, TR, surrogate.preprocessing, regressors)
    n_reg = regressors.shape[1]
    estimate = pooled_offset(surrogate, y_clean, np.zeros(N), TR, n_reg)
    return y_clean, np.full(N, estimate), n_reg


def test_a_slow_truth_read_as_canonical_is_not_identified(surrogate) -> None:
    y_clean, theta_t, n_reg = white_run(surrogate, 0.5, seed=0)
    check = recovery_check(y_clean, theta_t, surrogate, TR, n_reg, seed=0)
    assert check.ratio > MAX_RATIO, check
    low, high = check.truth_range
    assert low < 0.6 < high, check


def test_a_mid_range_truth_is_identified(surrogate) -> None:
    y_clean, theta_t, n_reg = white_run(surrogate, 1.8, seed=1)
    check = recovery_check(y_clean, theta_t, surrogate, TR, n_reg, seed=0)
    assert check.ratio <= MAX_RATIO, check
