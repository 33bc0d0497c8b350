"""Intervals of the map combined over runs: each run resampled, the summed likelihood
refitted (the real surrogate and MAP on a small icosphere)."""

import numpy as np
import pytest

from bids_app.bootstrap.combined import CombinedRefit, combined_bootstrap
from bids_app.inference.hemisphere import RunLikelihood
from bids_app.models import ONE_PARAM
from bids_app.preprocess import clean
from bids_app.prior import SPDEPrior, fem_matrices, icosphere
from bids_app.simulate import HCP_1P, sample_nuisance, simulate_bold
from bids_app.surrogate import load_surrogate

TR, N_FRAMES, KAPPA, TAU2 = 2.0, 200, 0.05, 10.0


@pytest.fixture(scope="module")
def two_runs():
    rng = np.random.default_rng(0)
    vertices, faces = icosphere(2, radius_mm=30.0)
    prior = SPDEPrior(fem_matrices(vertices, faces))
    theta = ONE_PARAM.to_theta(prior.sample(KAPPA, TAU2, rng))
    nuisance = sample_nuisance(HCP_1P, theta.shape[0], rng)
    surrogate = load_surrogate("1p", TR, N_FRAMES)
    y_cleans = [clean(simulate_bold(ONE_PARAM, theta, TR, N_FRAMES, nuisance, rng), TR,
                      surrogate.preprocessing) for _ in range(2)]
    runs = [RunLikelihood(surrogate, surrogate.summarize(y, TR), TR, N_FRAMES, 0, None,
                          power_of(y).astype(np.float32)) for y in y_cleans]
    precision = prior.precision(KAPPA, TAU2)
    refit = CombinedRefit(runs, precision, np.mean([run.summaries for run in runs], axis=0))
    theta_t = refit.fit_periodogram(np.concatenate([run.power for run in runs], axis=1))
    return y_cleans, runs, precision, theta_t, surrogate


def test_combined_intervals_are_reproducible_and_resumable(two_runs, tmp_path):
    y_cleans, runs, precision, theta_t, _ = two_runs
    options = dict(B=6, R=2, seed=3, progress=False)
    refit = CombinedRefit(runs, precision, theta_t)
    first = combined_bootstrap(refit, cache_dir=tmp_path, **options)
    again = combined_bootstrap(refit, cache_dir=tmp_path, **options)
    assert first.n_refits == 6 * 3 and again.n_refits == 0
    np.testing.assert_array_equal(first.lower, again.lower)
    fresh = combined_bootstrap(refit, **options)
    np.testing.assert_array_equal(first.upper, fresh.upper)
    assert first.sidecar()["Resampling"] == "local" and first.draws.shape == (6, 162, 1)
    # Runs are resampled independently: the same periodogram twice gets different draws.
    plan_power = np.concatenate([power_of(y_cleans[0])] * 2, axis=1)
    from bids_app.bootstrap.combined import MultiRunPlan
    from bids_app.bootstrap.double import local_bootstrap

    single_plan = local_bootstrap(refit.runs[0], N_FRAMES, TR)
    resample = MultiRunPlan((single_plan, single_plan)).resample(plan_power, 3, 0, 0)
    half = N_FRAMES // 2
    assert not np.allclose(resample[:, :half], resample[:, half:])


def test_combined_refit_of_the_original_runs_is_the_combined_map(two_runs):
    _, runs, precision, theta_t, _ = two_runs
    refit = CombinedRefit(runs, precision, theta_t)
    power = np.concatenate([run.power for run in runs], axis=1)
    np.testing.assert_allclose(refit.fit_periodogram(power), theta_t, atol=1e-4)


def power_of(y: np.ndarray) -> np.ndarray:
    from bids_app.surrogate.features import periodogram

    return periodogram(y)
