import sys

import cloudpickle
import numpy as np
import pytest

from bids_app.bootstrap import calibrate_level, double_bootstrap, natural_intervals
from bids_app.bootstrap.cache import RefitCache
from bids_app.bootstrap.calibration import normal_quantile, pooled_level
from bids_app.bootstrap.double import resample_indices
from bids_app.errors import UsageError
from bids_app.models import ONE_PARAM

from .refits import CountingRefit, lag1_latent, simulate_ar1

# Worker processes cannot import the test package by name: ship the refit by value.
cloudpickle.register_pickle_by_value(sys.modules[CountingRefit.__module__])

TR = 2.0


@pytest.fixture(scope="module")
def data():
    y = simulate_ar1(12, 150, seed=3)
    return y, lag1_latent(y)


def run(data, **kw):
    y, theta = data
    settings = dict(tr=TR, B=8, R=3, block_s=20.0, seed=11, progress=False)
    settings.update(kw)
    refit = settings.pop("refit", CountingRefit())
    return double_bootstrap(y, refit, theta, **settings)


@pytest.mark.parametrize("resampling", ["local", "block"])
def test_same_seed_same_intervals_and_seed_matters(data, resampling):
    a, b = run(data, resampling=resampling), run(data, resampling=resampling)
    np.testing.assert_array_equal(a.lower, b.lower)
    np.testing.assert_array_equal(a.upper, b.upper)
    np.testing.assert_array_equal(a.alpha_hat, b.alpha_hat)
    c = run(data, seed=12, resampling=resampling)
    assert not np.array_equal(a.se, c.se)
    assert a.n_refits == 8 * 4 and a.draws.shape == (8, 12, 1)
    assert a.block_frames == pytest.approx(10.0)
    assert a.sidecar()["Resampling"] == resampling


def test_inner_resamples_are_drawn_from_the_outer_one():
    outer = resample_indices(5, 2, 0, 100, 10.0)
    inner = resample_indices(5, 2, 1, 100, 10.0)
    assert set(inner) <= set(outer)


def test_parallel_workers_do_not_change_the_answer(data):
    serial = run(data)
    parallel = run(data, n_jobs=2)
    np.testing.assert_array_equal(serial.lower, parallel.lower)
    np.testing.assert_array_equal(serial.draws, parallel.draws)


def test_dask_client_gives_the_same_answer(data):
    distributed = pytest.importorskip("distributed")
    serial = run(data)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        on_dask = run(data, client=client)
    np.testing.assert_array_equal(serial.upper, on_dask.upper)


@pytest.mark.parametrize(("resampling", "changed"),
                         [("local", {"half_width": 4}), ("block", {"block_s": 30.0})])
def test_interrupted_run_resumes_without_recomputing(data, tmp_path, resampling, changed):
    total = 8 * (3 + 1)
    crashing = CountingRefit(fail_after=13)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(data, refit=crashing, cache_dir=tmp_path, resampling=resampling)
    assert crashing.calls == 13
    resumed_refit = CountingRefit()
    resumed = run(data, refit=resumed_refit, cache_dir=tmp_path, resampling=resampling)
    assert resumed_refit.calls == total - 13 and resumed.n_refits == total - 13
    again = CountingRefit()
    run(data, refit=again, cache_dir=tmp_path, resampling=resampling)
    assert again.calls == 0
    fresh = run(data, resampling=resampling)
    np.testing.assert_array_equal(resumed.lower, fresh.lower)
    # Other settings of the scheme, or the other scheme, must not reuse the cached refits.
    other = CountingRefit()
    run(data, refit=other, cache_dir=tmp_path, resampling=resampling, **changed)
    assert other.calls == total
    switched = CountingRefit()
    run(data, refit=switched, cache_dir=tmp_path,
        resampling="block" if resampling == "local" else "local")
    assert switched.calls == total


def test_single_is_the_outer_level_with_a_nominal_interval(data):
    double = run(data, resampling="block")
    single = run(data, mode="single", resampling="block")
    assert single.R == 0 and single.n_refits == 8 and single.vertex_levels is None
    np.testing.assert_array_equal(single.se, double.se)
    np.testing.assert_allclose(single.upper - single.lower, 2 * 1.959964 * single.se, rtol=1e-6)
    assert double.vertex_levels.shape == (12, 1)
    assert single.sidecar()["CalibratedAlpha"] == 0.05 and single.sidecar()["Mode"] == "single"
    assert double.sidecar()["CalibratedAlpha"] == double.alpha_hat[0]
    assert 0.0 <= double.sidecar()["CalibrationAtFloor"][0] <= 1.0
    assert single.sidecar()["CalibrationAtFloor"] is None
    width = (double.upper - double.lower) / double.se
    np.testing.assert_allclose(width, 2 * _z(double.alpha_hat[0]), rtol=1e-9)


def test_bias_correction_follows_the_documented_formulas(data, tmp_path):
    _, theta = data
    result = run(data, cache_dir=tmp_path, bias_correct=True, resampling="block")
    cache = RefitCache(tmp_path, next(tmp_path.iterdir()).name.removeprefix("bootstrap-"))
    fits = np.array([[cache.load(b, r) for r in range(4)] for b in range(8)], dtype=float)
    outer, inner = fits[:, 0], fits[:, 1:]  # (B, V, P), (B, R, V, P)
    shift = outer.mean(axis=0) - theta
    np.testing.assert_allclose(result.shift, shift, atol=1e-12)
    np.testing.assert_allclose((result.lower + result.upper) / 2, theta - shift, atol=1e-12)
    corrected = outer - (inner.mean(axis=1) - outer)
    alpha, _ = calibrate_level(theta[:, 0], corrected[:, :, 0], inner.std(axis=1, ddof=1)[:, :, 0])
    assert result.alpha_hat[0] == alpha
    raw = run(data, cache_dir=tmp_path, resampling="block")  # off by default
    alpha_raw, _ = calibrate_level(theta[:, 0], outer[:, :, 0],
                                   inner.std(axis=1, ddof=1)[:, :, 0])
    assert raw.alpha_hat[0] == alpha_raw and raw.n_refits == 0
    np.testing.assert_allclose((raw.lower + raw.upper) / 2, theta, atol=1e-12)
    assert result.sidecar()["BiasCorrection"] != "none"
    assert raw.sidecar()["BiasCorrection"] == "none"
    assert result.sidecar()["BlockJoinCrossfadeSeconds"] == 6.0


def test_cross_fade_changes_the_resamples_and_the_cache_key(data, tmp_path):
    plain = run(data, fade_s=0.0, cache_dir=tmp_path, resampling="block")
    faded = run(data, cache_dir=tmp_path, resampling="block")
    assert faded.n_refits == plain.n_refits == 8 * 4
    assert not np.array_equal(plain.draws, faded.draws)


def test_local_scheme_calibrates_pooled_around_the_outer_mean(data, tmp_path):
    result = run(data, cache_dir=tmp_path)
    cache = RefitCache(tmp_path, next(tmp_path.iterdir()).name.removeprefix("bootstrap-"))
    fits = np.array([[cache.load(b, r) for r in range(4)] for b in range(8)], dtype=float)
    outer, inner = fits[:, 0, :, 0], fits[:, 1:, :, 0]
    alpha = pooled_level(outer, inner)
    assert result.alpha_hat[0] == alpha and result.vertex_levels is None
    record = result.sidecar()
    assert record["Resampling"] == "local" and record["CalibratedAlpha"] == alpha
    assert record["CalibratedZ"] == pytest.approx(_z(alpha))
    assert record["LocalHalfWidthOrdinates"] == 3 and "BlockLengthSeconds" not in record
    np.testing.assert_allclose((result.upper - result.lower) / result.se, 2 * _z(alpha))
    with pytest.raises(UsageError, match="resampling"):
        run(data, resampling="phase")


def test_natural_bounds_follow_the_monotone_maps(data):
    _, theta = data
    result = run(data)
    maps = natural_intervals(result, theta, ONE_PARAM)
    for name in ("theta", "timetopeak"):
        m = maps[name]
        assert np.all(m.lower <= m.estimate) and np.all(m.estimate <= m.upper)
        assert np.all(m.se > 0)
    # time-to-peak = 5/theta is decreasing: its lower bound comes from theta's upper one.
    np.testing.assert_allclose(maps["timetopeak"].lower, 5.0 / maps["theta"].upper)


def _z(alpha: float) -> float:
    return float(normal_quantile(alpha))
