"""Simulated confounds: the app's strategies applied to simulated tables."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.io.confounds import strategy_regressors
from bids_app.preprocess import clean
from bids_app.simulate.confounds import (
    STRATEGIES,
    STRATEGY_WIDTHS,
    regressors_of_count,
    simulated_confounds,
    simulated_regressors,
)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_widths_match_the_app_strategies(strategy):
    rng = np.random.default_rng(0)
    regressors = simulated_regressors(strategy, 200, 1.4, rng)
    width = 0 if regressors is None else regressors.shape[1]
    assert width == STRATEGY_WIDTHS[strategy]
    if regressors is not None:
        assert np.isfinite(regressors).all()


def test_same_code_path_as_real_tables():
    table = simulated_confounds(180, 2.0, np.random.default_rng(1))
    names, regressors = strategy_regressors(table, "acompcor", "x.tsv")
    assert names[-10:] == tuple(f"{p}_comp_cor_{k:02d}" for p in "wc" for k in range(5))
    np.testing.assert_array_equal(regressors[:, 0], table["trans_x"].to_numpy())


def test_count_reproduces_a_strategy_or_takes_a_prefix():
    rng = np.random.default_rng(2)
    assert regressors_of_count(0, 150, 1.0, rng) is None
    assert regressors_of_count(36, 150, 1.0, rng).shape == (150, 36)
    assert regressors_of_count(7, 150, 1.0, rng).shape == (150, 7)


def test_regression_removes_low_frequency_power():
    """24 motion regressors take mostly slow power out of white noise of 300 frames."""
    rng = np.random.default_rng(3)
    y = rng.standard_normal((400, 300))
    plain = clean(y, 1.4)
    regressed = clean(y, 1.4, confounds=simulated_regressors("24P", 300, 1.4, rng))
    low = slice(1, 30)  # below ~0.07 Hz

    def low_share(x):
        power = np.abs(np.fft.rfft(x, axis=1)) ** 2
        return power[:, low].sum() / power[:, 1:].sum()

    assert low_share(regressed) < low_share(plain)
