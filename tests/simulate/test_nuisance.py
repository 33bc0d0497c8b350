"""The beyond-AR(1) nuisance generators: spectra, aliasing, shares, streams."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bids_app.simulate import HCP_1P, sample_nuisance, simulate_bold
from bids_app.simulate.nuisance import physiological_noise, power_law_noise, rhythm


def log_log_slope(y: np.ndarray, tr: float, band: tuple[float, float]) -> float:
    freqs = np.fft.rfftfreq(y.shape[1], tr)
    power = (np.abs(np.fft.rfft(y, axis=1)) ** 2).mean(axis=0)
    keep = (freqs > band[0]) & (freqs < band[1])
    return float(np.polyfit(np.log(freqs[keep]), np.log(power[keep]), 1)[0])


@pytest.mark.parametrize("exponent", [0.5, 1.0, 2.0])
def test_power_law_noise_has_the_requested_exponent(exponent: float) -> None:
    y = power_law_noise(np.full(400, exponent), 600, 1.0, np.random.default_rng(0))
    assert y.shape == (400, 600)
    np.testing.assert_allclose(y.std(axis=1), 1.0, atol=1e-5)
    assert log_log_slope(y, 1.0, (0.01, 0.3)) == pytest.approx(-exponent, abs=0.15)


def test_a_heart_rhythm_aliases_where_the_scanner_folds_it() -> None:
    # 1.2 Hz sampled every 0.72 s (1.389 Hz sampling) folds to 1.389 - 1.2 = 0.189 Hz;
    # the rate's slow wander (5 %) spreads the peak by a few hundredths of a Hz.
    y = rhythm(np.full(50, 1.2), 1200, 0.72, np.random.default_rng(1))
    freqs = np.fft.rfftfreq(1200, 0.72)
    power = (np.abs(np.fft.rfft(y, axis=1)) ** 2).mean(axis=0)
    assert freqs[power.argmax()] == pytest.approx(1 / 0.72 - 1.2, abs=0.02)


def test_physiological_noise_is_unit_variance() -> None:
    rng = np.random.default_rng(2)
    y = physiological_noise(rng.random(30), np.full(30, 0.3), np.full(30, 1.1), 300, 0.72, rng)
    np.testing.assert_allclose(y.std(axis=1), 1.0, atol=1e-5)


def test_prior_without_components_keeps_its_random_stream() -> None:
    """Turning nothing on draws nothing more: old seeds give the old series."""
    plain = sample_nuisance(HCP_1P, 20, np.random.default_rng(3))
    assert set(plain) == {"noise_sd", "amp_low", "amp_high", "rate", "ar_coef"}


def test_noise_power_is_kept_when_components_are_mixed() -> None:
    """Shares split the noise variance: white noise and the full mix have one sd."""
    rng = np.random.default_rng(4)
    silent = dataclasses.replace(HCP_1P, amplitude=(0.0, 0.0), noise_sd=(0.5, 0.5))
    mixed = dataclasses.replace(silent, powerlaw=(0.3, 0.3), physio=(0.2, 0.2),
                                drift=(0.1, 0.1), shared=(0.2, 0.2))
    theta = np.ones((300, 1))
    for prior in (silent, mixed):
        y = simulate_bold("1p", theta, 1.0, 400, sample_nuisance(prior, 300, rng), rng)
        assert np.sqrt(np.mean(y.var(axis=1))) == pytest.approx(0.5, rel=0.08)


def test_shared_fluctuation_is_common_to_the_run() -> None:
    rng = np.random.default_rng(5)
    prior = dataclasses.replace(HCP_1P, amplitude=(0.0, 0.0), shared=(0.9, 0.9))
    y = simulate_bold("1p", np.ones((50, 1)), 1.0, 300, sample_nuisance(prior, 50, rng), rng)
    correlation = np.corrcoef(y)[np.triu_indices(50, 1)]
    assert correlation.mean() > 0.8


def test_clean_fraction_keeps_the_paper_model_for_that_share() -> None:
    prior = dataclasses.replace(HCP_1P, powerlaw=(0.5, 0.5), clean_fraction=0.4)
    draw = sample_nuisance(prior, 2000, np.random.default_rng(6))
    assert np.mean(draw["powerlaw"] == 0) == pytest.approx(0.4, abs=0.04)
