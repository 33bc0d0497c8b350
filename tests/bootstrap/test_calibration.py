import numpy as np
import pytest
from scipy.special import ndtr

from bids_app.bootstrap.calibration import (
    DEFAULT_LEVELS,
    LEVEL_FLOOR,
    calibrate_level,
    coverage_curve,
    floor_fraction,
    normal_quantile,
    pooled_level,
    vertex_levels,
    without_common_shift,
)

LEVELS = np.round(np.arange(0.01, 0.21, 0.01), 2)


def constructed(max_inner_distance: float, n_outer: int = 100) -> np.ndarray:
    """Outer draws at distances 0..max (95 of them) plus 5 far misses, with sd* = 1."""
    near = np.linspace(0.0, max_inner_distance, 95)
    return np.concatenate([near, np.full(n_outer - 95, 50.0)])


def test_level_is_where_coverage_crosses_95_percent():
    # 95 of 100 intervals cover iff z_{1-a/2} >= 2, i.e. a <= 2(1 - Phi(2)) = 0.0455.
    outer = constructed(2.0)[:, None]
    cov = coverage_curve(np.zeros(1), outer, np.ones_like(outer), LEVELS)
    assert cov[0, 0] == pytest.approx(0.95) and cov[0, -1] < 0.95
    beta = vertex_levels(np.zeros(1), outer, np.ones_like(outer), LEVELS)
    assert 2 * (1 - ndtr(2.0)) == pytest.approx(0.0455, abs=1e-4)
    assert beta[0] == pytest.approx(0.04)


def test_fast_levels_match_the_coverage_definition():
    rng = np.random.default_rng(4)
    outer = rng.standard_normal((60, 40)) * rng.uniform(0.5, 2.0, 40)
    sd = rng.uniform(0.5, 2.0, (60, 40))
    sd[:, 0] = 0.0  # degenerate spread: covers only where the draw equals the estimate
    outer[:, 0] = 0.0
    cov = coverage_curve(np.zeros(40), outer, sd, LEVELS)
    n_ok = (cov >= 0.95 - 1e-12).sum(axis=1)
    definition = LEVELS[np.clip(n_ok - 1, 0, LEVELS.size - 1)]
    np.testing.assert_array_equal(vertex_levels(np.zeros(40), outer, sd, LEVELS), definition)


def test_global_level_is_the_xi_quantile_over_vertices():
    # Vertex k crosses at z = 1.7 + 0.05 k: beta = largest grid a <= 2(1 - Phi(z)).
    zs = 1.7 + 0.05 * np.arange(10)
    outer = np.stack([constructed(z) for z in zs], axis=1)  # (B, V)
    alpha, beta = calibrate_level(np.zeros(10), outer, np.ones_like(outer), LEVELS, xi=0.0)
    expected = np.array([LEVELS[LEVELS <= 2 * (1 - ndtr(z)) + 1e-12].max() for z in zs])
    np.testing.assert_allclose(beta, expected)
    assert alpha == pytest.approx(expected.min())
    alpha_med, _ = calibrate_level(np.zeros(10), outer, np.ones_like(outer), LEVELS, xi=0.5)
    assert alpha_med == pytest.approx(np.quantile(expected, 0.5))


def test_edge_cases_every_level_none_and_masked():
    theta_hat = np.zeros(3)
    outer = np.zeros((20, 3))
    outer[:, 1] = 5.0  # far from the estimate with a tiny spread: nothing covers
    outer[:, 2] = np.nan  # a masked vertex
    sd = np.ones((20, 3))
    sd[:, 1] = 1e-3
    alpha, beta = calibrate_level(theta_hat, outer, sd, LEVELS, xi=0.0)
    assert beta[0] == LEVELS[-1]  # every level covers
    assert beta[1] == LEVELS[0]  # none covers: widest interval offered
    assert np.isnan(beta[2])
    assert alpha == LEVELS[0]
    all_nan, _ = calibrate_level(np.full(2, np.nan), np.zeros((5, 2)), np.ones((5, 2)))
    assert all_nan == 0.05


def test_correct_spread_calibrates_to_the_nominal_level():
    # Outer draws ~ N(theta_hat, 1) and sd* = 1: intervals are exact, so beta ~ 0.05.
    rng = np.random.default_rng(0)
    outer = rng.standard_normal((2000, 50))
    _, beta = calibrate_level(np.zeros(50), outer, np.ones_like(outer))
    assert np.median(beta) == pytest.approx(0.05, abs=0.01)
    # Inner spread half the truth: intervals too narrow, the level must shrink a lot.
    alpha, _ = calibrate_level(np.zeros(50), outer, 0.5 * np.ones_like(outer))
    assert alpha < 0.001


def test_default_grid_does_not_clip_a_level_beyond_the_old_floor():
    # 95 of 100 outer draws within 5 inner SDs: beta = 2(1 - Phi(5)) = 5.7e-7, far below
    # the earlier floor of 1e-4; the default grid must resolve it (to its 2.8 % spacing).
    outer = constructed(5.0)[:, None]
    alpha, beta = calibrate_level(np.zeros(1), outer, np.ones_like(outer))
    exact = 2 * ndtr(-5.0)
    assert exact / 1.03 <= alpha <= exact
    assert floor_fraction(beta) == 0.0


def test_floor_fraction_counts_vertices_that_wanted_wider_intervals():
    # Vertex 0 misses by 20 inner SDs (beyond the floor's z = 8.03), vertex 1 is fine.
    outer = np.stack([constructed(20.0), constructed(1.0)], axis=1)
    _, beta = calibrate_level(np.zeros(2), outer, np.ones_like(outer))
    assert beta[0] == DEFAULT_LEVELS[0] == LEVEL_FLOOR
    assert floor_fraction(beta) == 0.5
    assert normal_quantile(LEVEL_FLOOR) == pytest.approx(8.03, abs=0.01)


def consistent_levels(rng: np.random.Generator, n_outer: int = 100, n_inner: int = 10,
                      n_vertices: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Outer draws N(0, 1) per vertex and inner draws N(outer, 1): both levels spread alike."""
    outer = rng.standard_normal((n_outer, n_vertices))
    inner = outer[:, None, :] + rng.standard_normal((n_outer, n_inner, n_vertices))
    return outer, inner


def test_pooled_level_of_consistent_levels_is_nominal():
    alpha = pooled_level(*consistent_levels(np.random.default_rng(0)))
    assert 0.04 < alpha < 0.06


def test_pooled_level_ignores_hemisphere_wide_shifts_of_either_level():
    """Shifts of whole resamples (larger at the inner level, as the shared draws give)
    leave the level as it was; an inner spread that is really wider does not."""
    rng = np.random.default_rng(1)
    outer, inner = consistent_levels(rng)
    alpha = pooled_level(outer, inner)
    shifted = pooled_level(outer + 0.5 * rng.standard_normal((100, 1)),
                           inner + 1.0 * rng.standard_normal((100, 10, 1)))
    assert shifted == pytest.approx(alpha, rel=1e-9)
    wider = pooled_level(outer, outer[:, None, :] + 2.0 * (inner - outer[:, None, :]))
    assert wider > 0.2  # c about halves: 0.29 here


def test_without_common_shift_keeps_each_vertex_spread_around_its_own_mean():
    rng = np.random.default_rng(2)
    draws = rng.standard_normal((50, 30)) + rng.standard_normal((50, 1))
    draws[:, 3] = np.nan
    out = without_common_shift(draws)
    finite = np.delete(out, 3, axis=1)
    np.testing.assert_allclose(finite.mean(axis=1), finite.mean(), atol=1e-12)
    np.testing.assert_allclose(out.mean(axis=0), draws.mean(axis=0), equal_nan=True, atol=1e-12)
