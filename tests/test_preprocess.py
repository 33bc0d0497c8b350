"""The single cleaning function shared by the simulator and the workflow."""

import numpy as np

from bids_app.preprocess import Preprocessing, clean, nuisance_basis


def test_clean_removes_drift_and_confounds_and_standardises():
    rng = np.random.default_rng(0)
    n, tr = 400, 0.8
    t = np.arange(n) * tr
    signal = rng.normal(size=(50, n))
    confound = rng.normal(size=(n, 2)).cumsum(axis=0)
    y = signal + 0.01 * t**2 + (confound @ rng.normal(size=(2, 50))).T * 3.0
    out = clean(y, tr, Preprocessing(), confounds=confound)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=1), 1.0, atol=1e-4)
    # residuals are orthogonal to the confounds and the drift basis
    assert np.abs(out @ confound).max() < 1e-2 * np.sqrt(n) * np.abs(confound).max()
    basis = nuisance_basis(n, tr, Preprocessing())
    assert np.abs(out @ basis).max() < 1e-3
    # the cleaned series keep most of the white signal
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(out, signal, strict=True)]
    assert np.mean(corr) > 0.9


def test_lowpass_removes_high_frequencies():
    rng = np.random.default_rng(1)
    tr, n = 0.5, 1024
    y = rng.normal(size=(8, n))
    out = clean(y, tr, Preprocessing(highpass=None, lowpass=0.1))
    freqs = np.fft.rfftfreq(n, tr)
    # Hann taper: an untapered periodogram leaks edge discontinuities to all frequencies
    power = np.abs(np.fft.rfft(out * np.hanning(n), axis=1)) ** 2
    assert power[:, freqs > 0.2].mean() < 1e-3 * power[:, freqs < 0.08].mean()


def test_constant_series_become_zero():
    y = np.ones((3, 100))
    y[1] = np.arange(100.0)  # pure drift: nothing left after detrending
    assert np.all(clean(y, 2.0) == 0.0)


def test_highpass_basis_size_follows_cutoff():
    n, tr = 600, 1.0
    k0 = nuisance_basis(n, tr, Preprocessing(highpass=None)).shape[1]
    k1 = nuisance_basis(n, tr, Preprocessing(highpass=1 / 128)).shape[1]
    assert k0 == 3
    assert k1 - k0 == int(2 * n * tr / 128)
