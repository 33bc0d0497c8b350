"""Shipped surrogates: integrity, coverage errors, and the workflow-facing methods."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bids_app.errors import InputValidationError
from bids_app.simulate.bold import HCP_1P, simulate_training_set
from bids_app.surrogate.registry import (
    SHIPPED,
    WEIGHTS_DIR,
    load_surrogate,
    read_surrogate,
    sha256_of,
)


@pytest.mark.parametrize("model", sorted(SHIPPED))
def test_shipped_surrogate_matches_its_card(model):
    card_path = WEIGHTS_DIR / f"{SHIPPED[model]}.json"
    card = json.loads(card_path.read_text())
    assert sha256_of(WEIGHTS_DIR / card["weights"]) == card["sha256"]
    surrogate = load_surrogate(model, 0.72, 1200)
    assert surrogate.card["id"] == SHIPPED[model] and surrogate.model.name == model
    assert surrogate.preprocessing.lowpass is None
    # Neither shipped flow is told the noise colour (README: Known limitations).
    assert surrogate.noise_ar_candidates is None


def test_tampered_weights_are_refused(tmp_path):
    card_path = WEIGHTS_DIR / f"{SHIPPED['1p']}.json"
    card = json.loads(card_path.read_text())
    shutil.copy(card_path, tmp_path / card_path.name)
    data = bytearray((WEIGHTS_DIR / card["weights"]).read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / card["weights"]).write_bytes(bytes(data))
    with pytest.raises(InputValidationError, match="sha256"):
        read_surrogate(tmp_path / card_path.name)


@pytest.mark.parametrize(("tr", "frames", "lowpass"), [
    (0.3, 600, None), (4.0, 600, None), (1.0, 100, None), (0.72, 1200, 0.01)])
def test_out_of_range_protocol_names_the_train_command(tr, frames, lowpass):
    with pytest.raises(InputValidationError, match="hemocoupling-train"):
        load_surrogate("1p", tr, frames, lowpass=lowpass)


def test_lowpass_at_or_above_nyquist_means_none():
    surrogate = load_surrogate("1p", 2.0, 300, lowpass=0.3)
    assert surrogate.protocol(2.0, 300).lowpass is None


def test_summaries_track_theta_and_loglik_peaks_near_truth():
    surrogate = load_surrogate("1p", 0.72, 1200)
    rng = np.random.default_rng(5)
    theta_t, y = simulate_training_set("1p", 400, 0.72, 1200, HCP_1P,
                                       surrogate.preprocessing, rng)
    s = surrogate.summarize(y, 0.72)
    assert s.shape == (400, 1) and np.corrcoef(s[:, 0], theta_t[:, 0])[0, 1] > 0.5
    loglik = surrogate.loglik(s, 0.72, 1200)
    value, grad, hess = loglik(theta_t)
    assert value.shape == (400,) and grad.shape == (400, 1) and hess.shape == (400, 1, 1)
    grid = np.linspace(-3, 3, 61)
    best = grid[np.argmax([loglik(np.full((400, 1), g))[0] for g in grid], axis=0)]
    assert np.corrcoef(best, theta_t[:, 0])[0, 1] > 0.5


def test_two_parameter_loglik_contract():
    surrogate = load_surrogate("2p", 1.0, 300)
    rng = np.random.default_rng(6)
    y = rng.standard_normal((50, 300)).astype(np.float32)
    s = surrogate.summarize(surrogate_clean(y, surrogate), 1.0)
    value, grad, hess = surrogate.loglik(s, 1.0, 300)(rng.standard_normal((50, 2)))
    assert value.shape == (50,) and grad.shape == (50, 2) and hess.shape == (50, 2, 2)
    np.testing.assert_allclose(hess, np.swapaxes(hess, 1, 2), atol=1e-4)


def surrogate_clean(y, surrogate, tr=1.0):
    from bids_app.preprocess import clean

    return clean(y, tr, surrogate.preprocessing)


def test_calibration_flags_foreign_spectra():
    surrogate = load_surrogate("1p", 1.0, 400)
    rng = np.random.default_rng(7)
    _, y = simulate_training_set("1p", 300, 1.0, 400, HCP_1P, surrogate.preprocessing, rng)
    inside = surrogate.check_calibration(y, 1.0)
    assert inside["in_distribution"] and "inside" in inside["message"]
    # a strong 0.3 Hz oscillation is nothing the HRF simulator can make
    t = np.arange(400) * 1.0
    foreign = np.sin(2 * np.pi * 0.3 * t)[None] + 0.05 * rng.standard_normal((300, 400))
    outside = surrogate.check_calibration(surrogate_clean(foreign, surrogate), 1.0)
    assert not outside["in_distribution"] and "OUTSIDE" in outside["message"]
    assert 0.0 <= outside["fraction_as_far"] < inside["fraction_as_far"]


def test_longer_runs_than_trained_are_served_with_capped_duration():
    surrogate = load_surrogate("1p", 0.5, 3000)
    proto = surrogate.context_protocol(surrogate.protocol(0.5, 3000))
    assert proto.n_frames == surrogate.config.frames_range[1]


def test_band_passed_input_is_summarised_like_unfiltered_input():
    """Data the user already low-passed (here a brick-wall at 0.09 Hz) and cleaned with
    lowpass=0.07 give nearly the same summaries as unfiltered data cleaned the same way:
    the bands above the cut-off are masked, so the user's own filter shape hardly matters."""
    from bids_app.preprocess import clean
    from bids_app.simulate.bold import sample_nuisance, simulate_bold

    tr, n = 1.4, 400
    surrogate = load_surrogate("1p", tr, n, lowpass=0.07)
    rng = np.random.default_rng(8)
    theta = rng.uniform(0.6, 2.4, (300, 1))
    raw = simulate_bold("1p", theta, tr, n, sample_nuisance(HCP_1P, 300, rng), rng)
    spectrum = np.fft.rfft(raw, axis=1)
    spectrum[:, np.fft.rfftfreq(n, tr) > 0.09] = 0
    user_filtered = np.fft.irfft(spectrum, n, axis=1)
    s_raw = surrogate.summarize(clean(raw, tr, surrogate.preprocessing), tr)[:, 0]
    s_user = surrogate.summarize(clean(user_filtered, tr, surrogate.preprocessing), tr)[:, 0]
    assert np.corrcoef(s_raw, s_user)[0, 1] > 0.95
    assert np.abs(s_raw - s_user).mean() < 0.1 * s_raw.std() + 0.05


def test_confound_count_reaches_summary_and_likelihood():
    """The count of removed regressors is an input: it changes S and log q, and a
    surrogate told the right count recovers θ better than one told none."""
    from bids_app.simulate.confounds import simulated_regressors

    surrogate = load_surrogate("1p", 1.4, 300)
    rng = np.random.default_rng(8)
    regressors = simulated_regressors("24P", 300, 1.4, rng)
    theta_t, y = simulate_training_set("1p", 400, 1.4, 300, HCP_1P, surrogate.preprocessing,
                                       rng, confounds=regressors)
    told, untold = surrogate.summarize(y, 1.4, 24), surrogate.summarize(y, 1.4)
    assert not np.allclose(told, untold)
    theta0 = np.zeros((400, 1))
    assert not np.allclose(surrogate.loglik(told, 1.4, 300, 24)(theta0)[0],
                           surrogate.loglik(told, 1.4, 300)(theta0)[0])
    assert np.mean((told - theta_t) ** 2) < np.mean((untold - theta_t) ** 2)

