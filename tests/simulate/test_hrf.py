"""HRF shapes and kernels (docs/method.md §2)."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.models import ONE_PARAM, TWO_PARAM
from bids_app.simulate.hrf import (
    default_kernel_duration,
    double_gamma,
    hrf_kernels,
    spm_canonical,
    spm_derivative,
)


@pytest.mark.parametrize("tr", [0.1, 0.72, 2.0])
def test_double_gamma_peaks_at_five_over_theta(tr):
    theta = np.linspace(0.5, 2.5, 21)[:, None]
    kernels = hrf_kernels("1p", theta, tr)
    peak_s = kernels.argmax(axis=1) * tr
    assert np.all(np.abs(peak_s - 5.0 / theta[:, 0]) <= tr)


def test_double_gamma_is_time_dilation_of_canonical_shape():
    t = np.linspace(0, 40, 401)
    assert np.allclose(double_gamma(t, 2.0), 2.0 * double_gamma(2.0 * t, 1.0))


def test_spm_canonical_has_unit_integral_and_derivative_zero_integral():
    t = np.linspace(0.0, 80.0, 80001)
    assert np.trapezoid(spm_canonical(t), t) == pytest.approx(1.0, abs=1e-6)
    assert np.trapezoid(spm_derivative(t), t) == pytest.approx(0.0, abs=1e-6)


def test_two_param_latency_shifts_peak_earlier():
    kernels = hrf_kernels(TWO_PARAM, np.array([[1.0, -0.5], [1.0, 0.0], [1.0, 0.5]]), 0.05)
    peaks = kernels.argmax(axis=1) * 0.05
    assert peaks[0] > peaks[1] > peaks[2]
    assert abs((peaks[0] - peaks[2]) - 1.0) < 0.3


@pytest.mark.parametrize("model", [ONE_PARAM, TWO_PARAM])
def test_default_kernel_keeps_slowest_hrf_tail(model):
    duration = default_kernel_duration(model)
    assert duration >= 32.0
    lo, hi = model.link_bounds()
    slowest = np.array([[lo[0]]]) if model.n_params == 1 else np.array([[hi[0], lo[1]]])
    step = 0.01
    kernel = hrf_kernels(model, slowest, step, duration_s=400)[0]
    t = np.arange(kernel.size) * step
    inside = t < duration
    tail = np.abs(kernel[~inside]).sum() / np.abs(kernel).sum()
    assert tail < 1e-4


def test_kernel_length_is_in_seconds_not_taps():
    short = hrf_kernels("1p", np.ones((1, 1)), 0.5)
    long = hrf_kernels("1p", np.ones((1, 1)), 2.0)
    assert short.shape[1] * 0.5 == pytest.approx(long.shape[1] * 2.0, abs=2.0)
