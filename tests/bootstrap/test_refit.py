"""The real refit chain (clean → surrogate summary → warm-started MAP) under the bootstrap."""

import pickle

import cloudpickle
import numpy as np
import pytest

from bids_app.bootstrap import double_bootstrap
from bids_app.inference import refit as refit_module
from bids_app.inference.refit import MapRefit, clean_by_rows
from bids_app.preprocess import Preprocessing, clean

from .refits import surrogate_study

TR, N_FRAMES = 2.0, 200


@pytest.fixture(scope="module")
def study():
    _, y_clean, refit, theta_t = surrogate_study(TR, N_FRAMES, 2, 30.0, tau2=10.0)
    return y_clean, refit, theta_t


def test_refit_of_the_original_data_reproduces_the_map(study):
    y_clean, refit, theta_t_hat = study
    np.testing.assert_allclose(refit(y_clean), theta_t_hat, atol=1e-4)


def test_refit_cache_key_includes_the_noise_colour(study):
    _, refit, theta_t_hat = study
    other = MapRefit(refit.surrogate, refit.precision, theta_t_hat, TR, noise_ar=0.1)
    assert other.cache_token != refit.cache_token


def test_refit_cache_key_includes_the_refit_tolerances(study, monkeypatch):
    # A release that changes how refits stop must not reuse refits cached before it.
    _, refit, _ = study
    before = refit.cache_token
    monkeypatch.setitem(refit_module.REFIT_OPTIONS, "ftol", 1e-4)
    assert refit.cache_token != before


def test_refit_survives_the_trip_to_a_worker(study):
    # Workers (loky, Dask) receive the refit pickled; it must compute the same thing.
    y_clean, refit, _ = study
    shipped = pickle.loads(cloudpickle.dumps(refit))
    y_resampled = y_clean[:, ::-1].copy()
    np.testing.assert_array_equal(shipped(y_resampled), refit(y_resampled))
    assert shipped.cache_token == refit.cache_token


def test_bootstrap_with_the_real_refit(study, tmp_path):
    y_clean, refit, theta_t_hat = study
    options = dict(tr=TR, B=4, R=2, block_s=40.0, seed=1, progress=False, cache_dir=tmp_path)
    result = double_bootstrap(y_clean, refit, theta_t_hat, **options)
    assert result.n_refits == 12
    assert np.all(result.se > 0) and np.all(np.isfinite(result.lower))
    assert np.all((result.lower < theta_t_hat) & (theta_t_hat < result.upper))
    corrected = double_bootstrap(y_clean, refit, theta_t_hat, bias_correct=True, **options)
    assert corrected.n_refits == 0  # the correction changes no refit: all from the cache
    centre = theta_t_hat - corrected.shift
    assert np.all((corrected.lower < centre) & (centre < corrected.upper))


def test_cleaning_by_rows_is_bit_identical_to_one_call():
    # The refit cleans in row blocks for speed; it must not change a single bit.
    y = np.random.default_rng(4).standard_normal((37, 160)).astype(np.float32)
    y[5] = 1.0  # a constant series (zeros out) inside a block
    spec = Preprocessing()
    np.testing.assert_array_equal(clean_by_rows(y, TR, spec, rows=8), clean(y, TR, spec))
