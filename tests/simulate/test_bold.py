"""Forward BOLD model and simulated training sets."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.models import ONE_PARAM
from bids_app.preprocess import Preprocessing
from bids_app.simulate.bold import (
    HCP_1P,
    HCP_2P,
    NuisancePrior,
    ar1_noise,
    fft_convolve,
    sample_nuisance,
    simulate_bold,
    simulate_training_set,
)


def test_fft_convolution_equals_direct_convolution():
    rng = np.random.default_rng(0)
    signal = rng.random((5, 301))
    kernel = rng.standard_normal((5, 47))
    direct = np.stack([np.convolve(s, k)[:301] for s, k in zip(signal, kernel, strict=True)])
    assert np.max(np.abs(fft_convolve(signal, kernel) - direct)) < 1e-6


@pytest.mark.parametrize(("model", "prior"), [("1p", HCP_1P), ("2p", HCP_2P)])
@pytest.mark.parametrize(("tr", "n_frames"), [(0.4, 333), (3.0, 57)])
def test_any_tr_and_length(model, prior, tr, n_frames):
    rng = np.random.default_rng(1)
    n_params = 1 if model == "1p" else 2
    theta = np.ones((7, n_params))
    y = simulate_bold(model, theta, tr, n_frames, sample_nuisance(prior, 7, rng), rng)
    assert y.shape == (7, n_frames) and y.dtype == np.float32 and np.isfinite(y).all()


def test_same_seed_same_data_and_new_seed_new_data():
    def run(seed):
        return simulate_training_set("1p", 50, 0.72, 120, HCP_1P, Preprocessing(),
                                     np.random.default_rng(seed))

    (ta, ya), (tb, yb), (_tc, yc) = run(3), run(3), run(4)
    assert np.array_equal(ta, tb) and np.array_equal(ya, yb)
    assert not np.allclose(yc, ya)


def test_burn_in_gives_steady_state_from_first_frame():
    rng = np.random.default_rng(2)
    n = 4000
    prior = NuisancePrior(noise_sd=(0.0, 0.0), amplitude=(1.0, 1.0), rate=(0.1, 0.1))
    y = simulate_bold("1p", np.full((n, 1), 0.5), 1.0, 100, sample_nuisance(prior, n, rng), rng)
    # The stationary mean of the convolved events is rate * sum(kernel) at every frame.
    assert y[:, 0].mean() == pytest.approx(y[:, 50:].mean(), rel=0.05)


def test_ar1_noise_has_requested_autocorrelation_and_sd():
    rng = np.random.default_rng(3)
    e = ar1_noise(np.full(500, 2.0), np.full(500, 0.6), 400, rng)
    lag1 = np.mean(e[:, 1:] * e[:, :-1]) / np.mean(e * e)
    assert lag1 == pytest.approx(0.6, abs=0.03)
    assert e.std() == pytest.approx(2.0, rel=0.05)


def test_nuisance_ranges_and_degenerate_published_priors():
    rng = np.random.default_rng(4)
    wide = NuisancePrior(noise_sd=(0.1, 1.0), amplitude=(0.5, 1.0), rate=(0.01, 0.3),
                         ar_coef=(0.0, 0.5))
    draw = sample_nuisance(wide, 1000, rng)
    assert 0.1 <= draw["noise_sd"].min() and draw["noise_sd"].max() <= 1.0
    assert 0.01 <= draw["rate"].min() and draw["rate"].max() <= 0.3
    assert draw["ar_coef"].max() > 0.3
    fixed = sample_nuisance(HCP_2P, 10, rng)
    assert np.all(fixed["noise_sd"] == 0.2421) and np.all(fixed["amp_low"] == 1.0)
    with pytest.raises(ValueError, match="ar_coef"):
        NuisancePrior(noise_sd=(0.1, 0.1), amplitude=(1, 1), rate=(0.1, 0.1), ar_coef=(0, 1))


def test_training_set_is_standard_normal_latent_and_cleaned():
    theta_t, y = simulate_training_set(ONE_PARAM, 2000, 0.72, 200, HCP_1P, Preprocessing(),
                                       np.random.default_rng(5))
    assert theta_t.shape == (2000, 1) and y.shape == (2000, 200)
    assert abs(theta_t.mean()) < 0.1 and theta_t.std() == pytest.approx(1.0, abs=0.1)
    assert np.allclose(y.mean(axis=1), 0, atol=1e-4)
    assert np.allclose(y.std(axis=1), 1, atol=1e-3)


def test_slower_hrf_puts_more_power_at_low_frequency():
    rng = np.random.default_rng(6)
    n, tr = 2000, 0.72
    prior = NuisancePrior(noise_sd=(0.05, 0.05), amplitude=(1.0, 1.0), rate=(0.1, 0.1))
    centroids = []
    for theta in (0.6, 2.0):
        y = simulate_bold("1p", np.full((n, 1), theta), tr, 400,
                          sample_nuisance(prior, n, rng), rng)
        power = np.abs(np.fft.rfft(y - y.mean(axis=1, keepdims=True), axis=1)) ** 2
        freqs = np.fft.rfftfreq(400, tr)
        centroids.append((power.mean(axis=0) * freqs).sum() / power.mean(axis=0).sum())
    assert centroids[0] < centroids[1]


def test_nuisance_must_match_series():
    rng = np.random.default_rng(7)
    with pytest.raises(ValueError, match="one value per series"):
        simulate_bold("1p", np.ones((5, 1)), 1.0, 20, sample_nuisance(HCP_1P, 4, rng), rng)


def test_asking_for_the_ar_coefficients_does_not_change_the_series():
    """Reported, not redrawn: a surrogate told φ trains on the same series as one not told."""
    prior = NuisancePrior(noise_sd=(0.1, 0.3), amplitude=(0.7, 0.9), rate=(0.01, 0.2),
                          ar_coef=(0.0, 0.1))
    plain = simulate_training_set("1p", 50, 0.72, 120, prior, Preprocessing(),
                                  np.random.default_rng(3))
    theta_t, y, ar = simulate_training_set("1p", 50, 0.72, 120, prior, Preprocessing(),
                                           np.random.default_rng(3), with_ar_coef=True)
    np.testing.assert_array_equal(plain[0], theta_t)
    np.testing.assert_array_equal(plain[1], y)
    assert ar.shape == (50,) and 0.0 <= ar.min() and ar.max() <= 0.1 and np.ptp(ar) > 0
