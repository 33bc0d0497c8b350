import numpy as np
import pytest

from bids_app.bootstrap.periodogram import (
    LocalPeriodogramBootstrap,
    band_repeats,
    centre_weight,
    cleaning_gain,
    correct_multiplicity,
    local_spectrum,
    unit_variance,
    variance,
)
from bids_app.preprocess import Preprocessing, clean
from bids_app.surrogate.features import (
    Protocol,
    band_log_power_from_periodogram,
    feature_matrix,
    feature_matrix_from_periodogram,
    ordinate_bands,
    periodogram,
)

TR, T = 2.0, 300


def ar1(n: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    e = rng.standard_normal((n, T + 100))
    y = np.empty_like(e)
    y[:, 0] = e[:, 0]
    for t in range(1, T + 100):
        y[:, t] = phi * y[:, t - 1] + e[:, t]
    return clean(y[:, 100:], TR, Preprocessing())


def default_plan() -> LocalPeriodogramBootstrap:
    """The plan of a run cleaned with the default recipe, 48 feature bands."""
    return LocalPeriodogramBootstrap(T, cleaning_gain(T, TR, Preprocessing()),
                                     ordinate_bands(T, TR))


def band_powers(power: np.ndarray) -> np.ndarray:
    log_power, mask = band_log_power_from_periodogram(power, Protocol(TR, T))
    return log_power[:, mask]


def test_resampled_band_log_power_has_the_ar1_sampling_variance():
    """A known AR(1) spectrum (φ = 0.6, T = 300, TR 2 s, the default cleaning): the
    bootstrap variance of every band's log power, averaged over 60 runs, against the
    Monte Carlo variance over 3,000 runs. The plain Daniell ratio (w₀ = 1/7) gave 0.80
    on average, a window across the high-pass edge 1.4–9 in the lowest bands."""
    rng = np.random.default_rng(0)
    truth = band_powers(periodogram(ar1(3000, 0.6, rng))).var(axis=0)
    plan = default_plan()
    power = periodogram(ar1(60, 0.6, rng))
    boot = np.stack([band_powers(plan.resample(power, np.random.default_rng(b)))
                     for b in range(60)]).var(axis=0).mean(axis=0)
    ratio = boot / truth
    # Seeds 0-2 give means 1.06 / 1.05 / 1.02; single-ordinate bands scatter ±30 %.
    assert 0.95 < ratio.mean() < 1.10
    assert np.all((ratio > 0.6) & (ratio < 1.5))


def test_the_same_draws_serve_every_vertex():
    """Two vertices with the same ratios at every ordinate get the same resampled
    ratios: the frequency draws are shared, so cross-vertex dependence survives."""
    rng = np.random.default_rng(1)
    y = ar1(1, 0.3, rng)
    y = y.astype(np.float64)
    power = periodogram(np.vstack([y, 3.0 * y]))
    plan = default_plan()
    out = plan.resample(power, np.random.default_rng(5))
    np.testing.assert_allclose(out[0], out[1], rtol=1e-10)
    again = plan.resample(power, np.random.default_rng(5))
    np.testing.assert_array_equal(out, again)


def test_resamples_are_unit_variance_and_keep_the_stopband():
    """Scaled to unit variance, then each band by its multiplicity correction (a few %
    up), so the variance is near 1, not exactly."""
    rng = np.random.default_rng(2)
    power = periodogram(ar1(5, 0.5, rng))
    plan = default_plan()
    band = plan.band
    assert band.start == 4  # ordinates 1-4 (≤ 1/150 Hz) are below the 1/128 Hz high-pass
    out = plan.resample(power, rng)
    assert np.all(np.abs(variance(out, T) - 1.0) < 0.1)
    # Parseval: the unit-variance scaling of a z-scored series' periodogram is 1.
    np.testing.assert_allclose(unit_variance(power, T), power, rtol=1e-5)
    # The ordinates the high-pass removed are kept, only rescaled with the rest.
    kept = out[:, :band.start] / power[:, :band.start]
    np.testing.assert_allclose(kept, kept[:, :1] * np.ones_like(kept), rtol=1e-10)


def test_cleaning_gain_is_the_spectrum_the_cleaning_leaves_of_white_noise():
    rng = np.random.default_rng(6)
    spec = Preprocessing(lowpass=0.1)
    mean_power = periodogram(clean(rng.standard_normal((4000, T)), TR, spec)).mean(axis=0)
    gain = cleaning_gain(T, TR, spec)
    kept = gain > 0.5  # where the gain falls steeply, leakage from next door adds power
    ratio = mean_power[kept] / gain[kept]
    np.testing.assert_allclose(ratio / ratio.mean(), 1.0, atol=0.08)
    assert gain[:4].max() < 0.01 and gain[20:40].min() > 0.9 and gain[-1] < 1e-3


def test_centre_weight_makes_chi2_ratios_unit_variance():
    rng = np.random.default_rng(3)
    h = 3
    x = rng.exponential(size=(400, 4000))
    _, ratio = local_spectrum(x, h)
    inner = ratio[:, h:-h]
    assert centre_weight(h) == pytest.approx(0.0653, abs=1e-4)
    assert inner.var() / inner.mean() ** 2 == pytest.approx(1.0, abs=0.03)


def test_features_from_the_periodogram_equal_the_time_domain_features():
    rng = np.random.default_rng(4)
    y = ar1(7, 0.4, rng)
    proto = Protocol(TR, T, None, 24)
    np.testing.assert_array_equal(feature_matrix(y, proto),
                                  feature_matrix_from_periodogram(periodogram(y), proto))


@pytest.mark.parametrize("scheme", ["local", "block"])
def test_resamples_drawn_together_equal_those_drawn_alone(scheme):
    """One worker task draws an outer resample and its inner ones together (the outer
    resample, its local spectrum and the inner resamples' buffer once); any grouping
    gives the same resamples, also when a refit writes into the one it is given."""
    from bids_app.bootstrap.double import BlockPlan, LocalPlan

    rng = np.random.default_rng(7)
    y = ar1(4, 0.5, rng)
    plan = (LocalPlan(default_plan())
            if scheme == "local" else BlockPlan(10.0, 3))
    data = plan.prepare(y)
    together = {}
    for r, sample in plan.resamples(data, 3, 1, [0, 1, 2, 3]):
        together[r] = sample.copy()
        sample[:] = 0.0
    for r in (2, 0, 3, 1):
        np.testing.assert_array_equal(plan.resample(data, 3, 1, r), together[r])
    assert dict(plan.resamples(data, 3, 1, [3, 1])).keys() == {1, 3}
    assert not np.array_equal(together[1], together[2])
    assert not np.array_equal(together[0], plan.resample(data, 3, 2, 0))


def test_multiplicity_correction_restores_a_band_sums_mean_log():
    """Sums of exponential terms: a band whose draws repeat ordinates, corrected, has
    about the mean log of one with distinct ordinates (the gamma reading is exact when
    every term is repeated alike; for this 2 + 1 pattern it removes 89 % of the shift);
    a band without repeats and the ordinates in no band are left alone."""
    rng = np.random.default_rng(8)
    eps = rng.exponential(size=(200_000, 5))
    weights = np.ones((1, 5))
    bands = np.array([0, 0, 0, 1, -1])
    draws = np.array([0, 0, 1, 3, 4])  # band 0 draws ordinate 0 twice
    resampled = eps[:, draws].copy()
    correct_multiplicity(resampled, np.broadcast_to(weights, eps.shape),
                         band_repeats(bands, draws))
    factor = resampled / eps[:, draws]
    np.testing.assert_allclose(factor[:, 3:], 1.0)
    distinct = np.log(eps[:, :3].sum(axis=1)).mean()
    repeated = np.log(eps[:, draws[:3]].sum(axis=1)).mean()
    corrected = np.log(resampled[:, :3].sum(axis=1)).mean()
    assert distinct - repeated > 0.1  # what the repeat costs
    assert abs(corrected - distinct) < 0.15 * (distinct - repeated)
