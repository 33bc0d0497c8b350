"""Spectral moment matching finds a run's noise colour from its cleaned series."""

import numpy as np
import pytest

from bids_app.bias.noise_match import (
    NoiseMatch,
    match_nuisance,
    passband,
    unit_ar1,
    vertex_rates,
)
from bids_app.models import ONE_PARAM
from bids_app.preprocess import Preprocessing, clean
from bids_app.simulate import NuisancePrior, sample_nuisance, simulate_bold

TR, N_FRAMES = 0.72, 600


def test_unit_ar1_has_unit_variance_and_the_coefficient():
    eps = np.random.default_rng(0).standard_normal((200, 2000))
    x = unit_ar1(eps, 0.6)
    assert x.var() == pytest.approx(1.0, abs=0.03)
    r1 = (x[:, 1:] * x[:, :-1]).mean() / x.var()
    assert r1 == pytest.approx(0.6, abs=0.02)


def test_passband_drops_filtered_frequencies():
    spec = Preprocessing(highpass=0.01, lowpass=0.1)
    freqs = np.fft.rfftfreq(N_FRAMES, TR)[1:]
    keep = passband(N_FRAMES, TR, spec)
    assert keep.any() and not keep.all()
    assert freqs[keep].min() >= 0.01 and freqs[keep].max() <= 0.1


@pytest.mark.parametrize("phi", [0.0, 0.3])
def test_match_recovers_the_noise_colour(phi):
    rng = np.random.default_rng(1)
    theta = rng.uniform(0.6, 2.0, (800, 1))
    regime = NuisancePrior(noise_sd=(0.15, 0.15), amplitude=(0.74, 0.84), rate=(0.004, 0.2),
                           ar_coef=(phi, phi))
    y = simulate_bold(ONE_PARAM, theta, TR, N_FRAMES, sample_nuisance(regime, 800, rng), rng)
    spec = Preprocessing()
    match = match_nuisance(clean(y, TR, spec), theta, ONE_PARAM, TR, spec,
                           amplitude=(0.5, 1.0), noise_sd=0.158, seed=0)
    assert match.prior.ar_coef[0] == pytest.approx(phi, abs=0.04)
    assert match.distance < 0.1
    # Same inputs and seed, same fit.
    again = match_nuisance(clean(y, TR, spec), theta, ONE_PARAM, TR, spec,
                           amplitude=(0.5, 1.0), noise_sd=0.158, seed=0)
    assert again == match


def test_a_fit_off_the_spectrum_or_on_a_bound_is_a_misfit():
    good = NuisancePrior(noise_sd=(0.16, 0.16), amplitude=(0.5, 1.0), rate=(0.1, 0.2),
                         ar_coef=(0.02, 0.02))
    assert NoiseMatch(good, 0.04, 100).misfit() is None
    assert "spectrum" in NoiseMatch(good, 0.3, 100).misfit()
    edge = NuisancePrior(noise_sd=(0.16, 0.16), amplitude=(0.5, 1.0), rate=(0.1, 10.0),
                         ar_coef=(0.02, 0.02))
    assert "edge" in NoiseMatch(edge, 0.04, 100).misfit()


def test_vertex_rates_follow_each_vertex_signal_to_noise_ratio():
    """Two halves of a run at event rates 20x apart: each vertex's fitted rate lands near
    its own half's, not at a run-level compromise."""
    rng = np.random.default_rng(2)
    n = 400
    theta = rng.uniform(0.6, 2.0, (n, 1))
    rates = np.where(np.arange(n) < n // 2, 0.01, 0.2)
    nuisance = sample_nuisance(NuisancePrior(noise_sd=(0.15, 0.15), amplitude=(0.74, 0.84),
                                             rate=(0.01, 0.01)), n, rng)
    nuisance["rate"] = rates
    y = simulate_bold(ONE_PARAM, theta, TR, N_FRAMES, nuisance, rng)
    spec = Preprocessing()
    match = NoiseMatch(NuisancePrior(noise_sd=(0.15, 0.15), amplitude=(0.74, 0.84),
                                     rate=(0.05, 0.05)), 0.03, 1)
    fitted = vertex_rates(clean(y, TR, spec), theta, ONE_PARAM, TR, spec, match)
    low, high = np.median(fitted[: n // 2]), np.median(fitted[n // 2:])
    assert 0.5 * 0.01 < low < 2 * 0.01 and 0.5 * 0.2 < high < 2 * 0.2
