"""The probit link and derived maps shared by every stage."""

import numpy as np
import pytest

from bids_app.models import MODELS, ONE_PARAM, TWO_PARAM, time_to_peak


@pytest.mark.parametrize("model", [ONE_PARAM, TWO_PARAM])
def test_link_round_trip(model):
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(500, model.n_params))
    np.testing.assert_allclose(model.to_latent(model.to_theta(latent)), latent, atol=1e-8)


@pytest.mark.parametrize("model", [ONE_PARAM, TWO_PARAM])
def test_standard_normal_latent_maps_to_uniform_on_padded_box(model):
    """θ̃ ~ N(0, 1) must give θ uniform on [lo, hi] with the docs/method.md §2 margin."""
    lo, hi = model.link_bounds()
    width = np.asarray(model.upper) - np.asarray(model.lower)
    np.testing.assert_allclose(np.asarray(model.lower) - lo, 0.01 / 0.98 * width)
    theta = model.to_theta(np.random.default_rng(1).normal(size=(200_000, model.n_params)))
    u = (theta - lo) / (hi - lo)
    np.testing.assert_allclose(np.quantile(u, [0.1, 0.5, 0.9], axis=0).T,
                               np.tile([0.1, 0.5, 0.9], (model.n_params, 1)), atol=0.01)


def test_time_to_peak_is_five_over_theta():
    assert time_to_peak(1.0) == 5.0
    derived = ONE_PARAM.derived(np.array([[0.5], [2.5]]))
    np.testing.assert_allclose(derived["timetopeak"], [10.0, 2.0])
    assert set(MODELS) == {"1p", "2p"}
    assert set(TWO_PARAM.derived(np.zeros((3, 2)))) == {"amplitude", "latency"}
