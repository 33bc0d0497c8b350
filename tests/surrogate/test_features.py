"""Spectral features: band placement, masking by protocol, and scale."""

from __future__ import annotations

import numpy as np

from bids_app.preprocess import Preprocessing, clean
from bids_app.surrogate.features import (
    N_BANDS,
    N_PROTOCOL,
    Protocol,
    band_edges,
    band_log_power,
    band_mask,
    feature_matrix,
    protocol_vector,
)


def test_bands_above_nyquist_or_lowpass_are_masked():
    edges = band_edges()
    slow = band_mask(Protocol(tr=2.0, n_frames=600))
    assert not slow[edges[1:] > 0.25].any()
    assert slow[(edges[1:] <= 0.25) & (edges[:-1] > 0.01)].all()
    lowpassed = band_mask(Protocol(tr=0.72, n_frames=1200, lowpass=0.07))
    assert not lowpassed[edges[1:] > 0.07].any()
    assert lowpassed[edges[1:] <= 0.07].all()


def test_short_runs_lose_low_bands_without_ordinates():
    short = band_mask(Protocol(tr=1.0, n_frames=150))  # ordinates every 1/150 Hz
    long = band_mask(Protocol(tr=1.0, n_frames=1200))
    assert short.sum() < long.sum()
    assert not short[0] and long[0]


def test_white_noise_has_flat_unit_band_power():
    rng = np.random.default_rng(0)
    proto = Protocol(tr=0.8, n_frames=1000)
    y = clean(rng.standard_normal((400, 1000)), 0.8, Preprocessing(highpass=None,
                                                                  detrend_order=0))
    log_power, mask = band_log_power(y, proto)
    mean = log_power[:, mask].mean(0)
    # E log of an average of exponentials is ≤ 0 and near 0 when a band holds many ordinates
    assert np.all(np.abs(mean[-5:]) < 0.05)
    assert np.all(log_power[:, ~mask] == 0)


def test_sinusoid_power_lands_in_its_band():
    tr, n = 1.0, 1000
    t = np.arange(n) * tr
    y = clean(np.sin(2 * np.pi * 0.1 * t)[None], tr, Preprocessing(highpass=None))
    log_power, mask = band_log_power(y, Protocol(tr, n))
    edges = band_edges()
    band = np.flatnonzero((edges[:-1] <= 0.1) & (edges[1:] > 0.1))[0]
    assert np.argmax(np.where(mask, log_power[0], -np.inf)) == band


def test_feature_matrix_layout_and_context_override():
    rng = np.random.default_rng(1)
    y = rng.standard_normal((3, 300)).astype(np.float32)
    proto = Protocol(1.0, 300)
    x = feature_matrix(y, proto)
    assert x.shape == (3, 2 * N_BANDS + N_PROTOCOL)
    capped = feature_matrix(y, proto, context=Protocol(1.0, 200))
    np.testing.assert_array_equal(x[:, :-N_PROTOCOL], capped[:, :-N_PROTOCOL])
    assert x[0, -3] > capped[0, -3]  # longer duration input


def test_regressors_enter_as_a_share_of_the_frames():
    none, p24 = protocol_vector(Protocol(1.0, 300)), protocol_vector(Protocol(1.0, 300, None, 24))
    np.testing.assert_array_equal(none[:3], p24[:3])
    assert none[3] == -1.0 and p24[3] > none[3]
    np.testing.assert_allclose(protocol_vector(Protocol(1.0, 600, None, 48))[3], p24[3])
