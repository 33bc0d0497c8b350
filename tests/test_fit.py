"""The file-free API: a simulated hemisphere (arrays only, no BIDS) fitted by
:func:`bids_app.fit.fit_hemisphere`, and two runs combined by :func:`combine_runs`."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.bootstrap.intervals import BootstrapOptions
from bids_app.cli.train import main as train_main
from bids_app.fit import FitOptions, combine_runs, fit_hemisphere
from bids_app.models import ONE_PARAM
from bids_app.prior import SPDEPrior, fem_matrices, icosphere
from bids_app.simulate import HCP_1P, sample_nuisance, simulate_bold
from bids_app.surrogate import load_surrogate
from bids_app.surrogate.registry import read_surrogate

TR, N_FRAMES = 1.0, 400
OPTIONS = FitOptions(kappas=(0.05,), tau2s=(10.0, 100.0), bias_correction="none",
                     bootstrap=BootstrapOptions(mode="single", n_boot=4))


def simulated_run(mesh, truth_t: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    theta = ONE_PARAM.to_theta(truth_t[:, None])
    return simulate_bold(ONE_PARAM, theta, TR, N_FRAMES,
                         sample_nuisance(HCP_1P, len(theta), rng), rng)


@pytest.fixture(scope="module")
def hemisphere():
    mesh = icosphere(3, 60.0)
    truth_t = SPDEPrior(fem_matrices(*mesh)).sample(0.05, 100.0, np.random.default_rng(1))[:, 0]
    truth_t -= truth_t.mean()
    series = simulated_run(mesh, truth_t, 2)
    series[:5] = np.nan  # a "medial wall": rows the fit must leave out
    surrogate = load_surrogate("1p", TR, N_FRAMES)
    return mesh, truth_t, series, surrogate


def test_a_simulated_hemisphere_is_fitted_from_arrays(hemisphere):
    mesh, truth_t, series, surrogate = hemisphere
    result = fit_hemisphere(series, mesh, TR, surrogate, OPTIONS)
    n = len(mesh[0])
    assert result.n_vertices == n and np.array_equal(result.fitted, np.arange(5, n))
    assert result.extra["ExcludedVertices"]["NonFinite"] == 5
    maps = result.maps()
    assert set(maps) == {"theta", "timetopeak"}
    assert np.isnan(maps["theta"][:5]).all() and np.isfinite(maps["theta"][5:]).all()
    truth = ONE_PARAM.to_theta(truth_t[5:, None])[:, 0]
    assert np.corrcoef(maps["theta"][5:], truth)[0, 1] > 0.5
    assert result.kappa == 0.05 and result.tau2 in (10.0, 100.0)
    assert result.bias_correction["Method"] == "none"
    assert not np.any(result.bias_shift)
    interval = result.intervals["theta"]
    assert np.all(interval.lower <= interval.estimate)
    assert np.all(interval.estimate <= interval.upper)
    assert result.bootstrap["Mode"] == "single"


def test_two_runs_combine_on_the_vertices_both_fitted(hemisphere):
    mesh, truth_t, series, surrogate = hemisphere
    options = FitOptions(kappas=(0.05,), tau2s=(100.0,), bias_correction="none",
                         bootstrap=BootstrapOptions(mode="none"))
    other = simulated_run(mesh, truth_t, 3)
    other[3:8] = np.nan
    runs = [fit_hemisphere(y, mesh, TR, surrogate, options) for y in (series, other)]
    combined = combine_runs(runs, options)
    assert np.array_equal(combined.fitted, np.arange(8, len(mesh[0])))
    assert combined.intervals is None and combined.likelihood is None
    single_error = np.abs(runs[0].theta_t[3:, 0] - truth_t[8:]).mean()
    assert np.abs(combined.theta_t[:, 0] - truth_t[8:]).mean() < single_error


def test_two_runs_combined_map_has_intervals_narrower_than_one_run(hemisphere, tmp_path):
    """Each run resampled on its own, the summed likelihood refitted: the combined map's
    intervals bracket it, are reproducible from the cache, and are narrower than one
    run's (two runs carry more information)."""
    mesh, truth_t, series, surrogate = hemisphere
    options = FitOptions(kappas=(0.05,), tau2s=(100.0,), bias_correction="none",
                         bootstrap=BootstrapOptions(mode="double", n_boot=6, n_inner=2))
    runs = [fit_hemisphere(y, mesh, TR, surrogate, options)
            for y in (series, simulated_run(mesh, truth_t, 3))]
    combined = combine_runs(runs, options, cache_dir=tmp_path)
    again = combine_runs(runs, options, cache_dir=tmp_path)
    interval = combined.intervals["theta"]
    assert np.all(interval.lower <= interval.estimate)
    assert np.all(interval.estimate <= interval.upper)
    np.testing.assert_array_equal(interval.upper, again.intervals["theta"].upper)
    assert combined.bootstrap["Mode"] == "double" and combined.bootstrap["R"] == 2
    assert combined.bootstrap["Resampling"] == "local"
    assert np.median(interval.se) < np.median(runs[0].intervals["theta"].se)
    block = FitOptions(kappas=(0.05,), tau2s=(100.0,), bias_correction="none",
                       bootstrap=BootstrapOptions(mode="single", n_boot=4, resampling="block"))
    blocked = combine_runs([fit_hemisphere(y, mesh, TR, surrogate, block)
                            for y in (series, simulated_run(mesh, truth_t, 3))], block)
    assert blocked.intervals is None and "local only" in blocked.bootstrap["Note"]


def test_a_surrogate_with_a_slow_end_output_fits_through_the_workflow(hemisphere, tmp_path):
    """A 1p card whose summary has an extra output (S 2-D, θ̃ 1-D): the MAP starts from
    the first output and the gate scores the 2-D likelihood."""
    mesh, _, series, _ = hemisphere
    assert train_main(["--model", "1p", "--out", str(tmp_path), "--n-train", "256",
                       "--n-val", "64", "--epochs", "1", "--frames-range", "150", "170",
                       "--id", "tiny-2s", "--summary-extra", "slow_logit"]) == 0
    surrogate = read_surrogate(tmp_path / "tiny-2s.json")
    options = FitOptions(kappas=(0.05,), tau2s=(100.0,), bias_correction="none",
                         bootstrap=BootstrapOptions(mode="none"))
    result = fit_hemisphere(series, mesh, TR, surrogate, options)
    assert np.isfinite(result.maps()["theta"][5:]).all()
    assert "EstimateFollowsTruth" in result.quality_control["Checks"]
