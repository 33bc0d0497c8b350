"""The simulated bias of the MAP under the run's own noise regime, on the shipped 1p
surrogate: under the HCP calibration (white noise, the edge of the surrogate's training
prior) the MAP sits low, and removing the simulated shift brings it back."""

import numpy as np
import pytest

from bids_app.bias.simulated import simulated_bias, skip_reason, smooth_in_estimate
from bids_app.bootstrap import double_bootstrap
from bids_app.bootstrap.intervals import shift_result
from bids_app.preprocess import clean, lowpass_filter

from .refits import CountingRefit, simulate_ar1, surrogate_study

TR, N_FRAMES = 0.72, 1200


@pytest.fixture(scope="module")
def study():
    return surrogate_study(TR, N_FRAMES, 3, 60.0, tau2=100.0, center=True)


def test_removing_the_simulated_shift_brings_the_estimate_to_the_truth(study):
    truth_t, y_clean, refit, theta_t = study
    bias = simulated_bias(refit, theta_t, y_clean, None, seed=0)
    before = theta_t[:, 0] - truth_t
    after = theta_t[:, 0] - bias.shift[:, 0] - truth_t
    assert before.mean() < -0.06  # the surrogate's bias under white noise
    assert abs(after.mean()) < 0.5 * abs(before.mean())
    assert np.sqrt(np.mean(after**2)) < np.sqrt(np.mean(before**2))
    assert bias.match.prior.ar_coef[0] == pytest.approx(0.0, abs=0.04)
    record = bias.sidecar()
    assert record["Method"] == "simulation" and record["NoiseModel"]["NoiseAR"] is not None


def test_same_seed_same_shift(study):
    _, y_clean, refit, theta_t = study
    one = simulated_bias(refit, theta_t, y_clean, None, seed=3, n_simulations=1)
    two = simulated_bias(refit, theta_t, y_clean, None, seed=3, n_simulations=1)
    np.testing.assert_array_equal(one.shift, two.shift)


def test_only_validated_models_are_corrected():
    assert skip_reason("1p") is None
    assert "2p" in skip_reason("2p")


def test_shift_moves_intervals_and_draws_but_not_the_se(tmp_path):
    y = simulate_ar1(20, 300, seed=0)
    result = double_bootstrap(y, CountingRefit(), np.zeros((20, 1)), 1.0, mode="single", B=8,
                              block_s=20.0, seed=0, cache_dir=tmp_path)
    shift = np.linspace(-0.2, 0.2, 20)[:, None]
    moved = shift_result(result, shift)
    np.testing.assert_allclose(moved.lower, result.lower - shift)
    np.testing.assert_allclose(moved.upper, result.upper - shift)
    np.testing.assert_allclose(moved.draws.std(axis=0, ddof=1), result.draws.std(axis=0, ddof=1),
                               atol=1e-6)
    np.testing.assert_array_equal(moved.se, result.se)


def test_a_run_the_noise_model_cannot_describe_is_left_alone(study):
    """Series low-passed before they reached the app (as the shared real run was) have
    almost no power above the cut-off, which no AR(1) noise reproduces: nothing is moved."""
    _, y_clean, refit, theta_t = study
    filtered = clean(lowpass_filter(y_clean, TR, 0.05), TR, refit.surrogate.preprocessing)
    bias = simulated_bias(refit, theta_t, filtered, None, seed=0)
    assert bias.skipped is not None and not bias.shift.any()
    record = bias.sidecar()
    assert record["Method"] == "none" and "spectrum" in record["Reason"]
    assert record["NoiseModel"]["LogSpectrumDistance"] > 0.1


def test_smoothing_keeps_the_trend_in_the_estimate_and_drops_the_noise():
    rng = np.random.default_rng(0)
    theta_t = rng.normal(0.0, 1.0, (5000, 1))
    trend = -0.1 - 0.05 * theta_t
    smooth = smooth_in_estimate(theta_t, trend + rng.normal(0.0, 0.2, theta_t.shape))
    inner = np.abs(theta_t[:, 0]) < 1.5
    assert np.abs(smooth - trend)[inner].max() < 0.03


def test_matching_the_regime_again_at_the_corrected_estimate_removes_more_bias():
    """At TR 2 s / 300 frames the MAP reads white-noise runs fast; the regime matched at
    that biased estimate overstates the signal-to-noise ratios and so understates the
    bias. Matched again at the estimate less the shift, it leaves less than half the
    bias a single match leaves."""
    truth_t, y_clean, refit, theta_t = surrogate_study(2.0, 300, 3, 60.0, tau2=100.0,
                                                       center=True)
    assert (theta_t[:, 0] - truth_t).mean() > 0.15
    left = {}
    for n_matches in (1, 3):
        bias = simulated_bias(refit, theta_t, y_clean, None, seed=0, n_matches=n_matches)
        left[n_matches] = abs((theta_t[:, 0] - bias.shift[:, 0] - truth_t).mean())
    assert left[3] < 0.6 * left[1]


class FlatEstimator:
    """The shipped refit's surrogate and TR, but an estimate that does not follow the
    simulated field at all (a likelihood's flat stretch, taken to the limit)."""

    def __init__(self, refit, estimate):
        self.surrogate, self.tr, self.estimate = refit.surrogate, refit.tr, estimate

    def __call__(self, y):
        return self.estimate


def test_where_the_estimate_does_not_follow_the_field_the_first_pass_is_kept(study):
    """Iterating the fixed point there would walk the correction off without end: every
    pass moves the field and the simulated estimates stay put. The first pass is kept."""
    _, y_clean, refit, theta_t = study
    flat = FlatEstimator(refit, theta_t + 0.3)
    bias = simulated_bias(flat, theta_t, y_clean, None, seed=0)
    assert bias.iterations == 1
    np.testing.assert_allclose(bias.shift, 0.3, atol=1e-9)
    assert bias.sidecar()["FixedPointIterations"] == 1


def test_a_shift_that_would_reorder_the_map_moves_its_level_only(study):
    """Refits that exaggerate the map's pattern twice over would make the full shift
    turn the map upside down; only the shift's mean is applied."""
    _, y_clean, refit, theta_t = study
    steep = FlatEstimator(refit, theta_t + 2.0 * (theta_t - theta_t.mean(axis=0)) + 0.1)
    bias = simulated_bias(steep, theta_t, y_clean, None, seed=0)
    assert bias.level_only and np.ptp(bias.shift) == 0.0
    assert abs(float(bias.shift.mean()) - 0.1) < 0.02
    assert bias.sidecar()["LevelOnly"] is True
