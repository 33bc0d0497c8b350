"""Single and double bootstrap of the latent MAP map (docs/method.md §5).

Outer level: B resamples of the run, each refitted, give θ̃*_b and the bootstrap SE.
Inner level (``mode='double'``): R resamples of each outer resample give sd*_b, from
which :mod:`bids_app.bootstrap.calibration` picks the nominal level α̂ that makes the
intervals cover. Every resample is seeded from (seed, b, r) alone, so the answer does
not depend on the number of workers, their order, or on resuming.

Two resampling schemes (``resampling``):

- ``'local'`` (default): the local periodogram bootstrap
  (:mod:`bids_app.bootstrap.periodogram`), refitted from the resampled periodogram
  (:class:`bids_app.bootstrap.periodogram_refit.PeriodogramRefit`); calibrated by
  :func:`bids_app.bootstrap.calibration.pooled_level` (centred on the outer mean,
  pooled over vertices).
- ``'block'``: the reference's stationary block bootstrap of the cleaned series, every
  block join cross-faded over ``fade_s`` seconds
  (:func:`bids_app.bootstrap.resample.crossfade_resample`), refitted from the series;
  calibrated as docs/method.md §5 (centred on the estimate, ξ-quantile of per-vertex levels).

Measured with surrogate 1p-v6 (benchmarks/bench_bootstrap.py --study fsaverage5, seed 0,
B = 100, R = 10, the workflow's simulated bias correction; benchmarks/RESULTS.md): with
the beyond-AR(1) nuisance (``--nuisance all``) local double coverage of θ 0.974 at 1.30×
the oracle width (α̂ 0.23, z 1.21), single 1.000 at 2.10×; with white noise the estimate
keeps a +0.11 latent offset after the correction (about 2 SE) and coverage is 0.27 local
double, 0.49 single, 1.000 block double (B = 40, R = 5, at 1.67×): the intervals' width
matches the estimate's random error (±1.96 SE covers truth plus the mean offset at 0.935),
the miss is the point estimate's bias. On fsLR 32k (white, B = 20) the bias is gone but
the pooled calibration gives z 1.25 and local double covers 0.85 at 0.78×, single 0.97
at 1.22×.

With ``bias_correct`` (off by
default) the bootstrap estimate of the estimator's bias is removed, per vertex and
parameter, at both levels (Efron's bias-corrected bootstrap):

    outer shift  s(v)    = mean_b θ̃*_b(v) − θ̃̂(v)
    inner shift  s_b(v)  = mean_r θ̃**_br(v) − θ̃*_b(v)
    calibration  π̂(v, a) = mean_b 1{θ̃̂(v) ∈ θ̃*_b(v) − s_b(v) ± z_{1−a/2}·sd*_b(v)}
    interval     θ̃̂(v) − s(v) ± z_{1−α̂/2}·se(v)

i.e. the Hall–Horowitz check of docs/method.md §5 is applied to the bias-corrected centres
and is otherwise unchanged. The reported estimate stays the MAP θ̃̂; only the interval
is centred on θ̃̂ − s.

Why it is off by default (benchmarks/bench_bootstrap.py, synthetic studies): the outer
shift is not the estimator's bias here. It is +0.22 (fsaverage5) and +0.07 (fsLR 32k)
latent units while the estimate's actual mean error is +0.11 and −0.11, and the inner
shift is only +0.04 on fsaverage5, uncorrelated with the outer one, so correcting made
the centre worse (RMSE 0.197 → 0.218, 0.115 → 0.184) and the fsLR coverage collapsed
(0.57 → 0.07 at B = 8, R = 3). Under the local scheme the outer shift is the spectrum
smoothing's (−0.10 on fsaverage5), and correcting worsens the RMSE too (0.139 → 0.155).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path

import numpy as np

from bids_app.bootstrap.cache import RefitCache, array_digest, cache_key
from bids_app.bootstrap.calibration import (
    ALPHA0,
    XI,
    calibrate_level,
    floor_fraction,
    normal_quantile,
    pooled_level,
)
from bids_app.bootstrap.periodogram import (
    HALF_WIDTH,
    LocalPeriodogramBootstrap,
    cleaning_gain,
)
from bids_app.bootstrap.resample import block_frames as to_block_frames
from bids_app.bootstrap.resample import crossfade_resample, stationary_indices
from bids_app.bootstrap.resample import fade_frames as to_fade_frames
from bids_app.config import default
from bids_app.errors import InputValidationError, UsageError
from bids_app.surrogate.features import N_BANDS, ordinate_bands

log = logging.getLogger(__name__)

Refit = Callable[[np.ndarray], np.ndarray]
Task = tuple[int, int]  # (b, r): r = 0 is outer resample b, r ≥ 1 its inner resamples
RESAMPLING = ("local", "block")
# Cross-fade at block joins of the block scheme, seconds.
FADE_S = 6.0


@dataclass
class BootstrapResult:
    """Bootstrap summary of a latent map; arrays are vertices first.

    Attributes
    ----------
    se : array (V, P)
        SD of the outer-resample latent estimates θ̃*_b (ddof = 1).
    alpha_hat : array (P,)
        Level used for the interval, per parameter: calibrated (double) or 0.05 (single).
    lower, upper : array (V, P)
        centre ∓/± z_{1−α̂/2}·se, latent space.
    draws : array (B, V, P), float32
        Outer-resample latent estimates, for SEs of mapped parameters.
    vertex_levels : array (V, P) or None
        Per-vertex calibrated levels β̂(v) (double mode only).
    B, R : int
        Outer and inner resample counts (R = 0 in single mode).
    block_frames : float
        Mean block length in frames (``block_s / tr``).
    block_s : float
        Mean block length in seconds.
    mode : str
        ``'single'`` or ``'double'``.
    seed : int
        Seed the resamples were derived from.
    n_refits : int
        Refits computed by this call (the rest came from the cache).
    seconds : float
        Wall time of this call.
    shift : array (V, P)
        Outer bootstrap bias estimate s = mean_b θ̃*_b − θ̃̂ (latent units).
    bias_correct : bool
        Whether the intervals are centred on θ̃̂ − s and calibrated on θ̃*_b − s_b.
    fade_s : float
        Cross-fade at block joins, seconds (0: plain stationary bootstrap).
    floor_fraction : array (P,) or None
        Fraction of vertices whose calibrated level β̂(v) sits on the smallest level
        offered (block double mode); above ξ, α̂ itself is clipped there.
    resampling : str
        ``'local'`` (periodogram) or ``'block'`` (stationary, time).
    half_width : int
        Local scheme: ordinates each side of the resampled one.
    """

    se: np.ndarray
    alpha_hat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    draws: np.ndarray
    vertex_levels: np.ndarray | None
    B: int
    R: int
    block_frames: float
    block_s: float
    mode: str
    seed: int
    n_refits: int
    seconds: float
    shift: np.ndarray | None = None
    bias_correct: bool = False
    fade_s: float = 0.0
    floor_fraction: np.ndarray | None = None
    resampling: str = "block"
    half_width: int = HALF_WIDTH

    def sidecar(self) -> dict:
        """The ``bootstrap`` record of :class:`bids_app.io.derivatives.FitMetadata`
        (the seed goes in its own ``random_seed`` field)."""
        alpha = [float(a) for a in self.alpha_hat]
        z = [float(v) for v in normal_quantile(self.alpha_hat)]
        record = {
            "Mode": self.mode,
            "B": self.B,
            "R": self.R,
            "Resampling": self.resampling,
            "CalibratedAlpha": alpha[0] if len(alpha) == 1 else alpha,
            "CalibratedZ": z[0] if len(z) == 1 else z,
            "Calibration": _CALIBRATION[self.mode, self.resampling],
        }
        if self.resampling == "local":
            record["LocalHalfWidthOrdinates"] = self.half_width
        else:
            record.update({
                "BlockLengthSeconds": self.block_s,
                "BlockLengthFrames": self.block_frames,
                "BlockJoinCrossfadeSeconds": self.fade_s,
                "CalibrationAtFloor": (None if self.floor_fraction is None else
                                       [float(f) for f in self.floor_fraction]),
            })
        return {
            **record,
            "BiasCorrection": (
                "interval centred on estimate - (mean of outer refits - estimate), per "
                "vertex; calibration checks the estimate against each outer refit minus "
                "(mean of its inner refits - outer refit)"
                if self.bias_correct else "none"),
        }


_CALIBRATION = {
    ("single", "local"): "none: estimate +/- z(0.975) SE",
    ("single", "block"): "none: estimate +/- z(0.975) SE",
    ("double", "local"): (
        "Hall-Horowitz, pooled over vertices and outer resamples: the 95th percentile c "
        "of |outer refit - mean of outer refits| / SD of its inner refits, read as a "
        "level on Student's t with R - 1 degrees of freedom; interval estimate +/- "
        "CalibratedZ SE"),
    ("double", "block"): (
        "Hall-Horowitz per vertex (estimate within outer refit +/- z SD of its inner "
        "refits for 95 % of outer refits), the 5th percentile of the per-vertex levels; "
        "interval estimate +/- CalibratedZ SE"),
}


def _draw(seed: int, b: int, key: int, n_frames: int, mean_block: float) -> np.ndarray:
    """The stationary draw of (seed, b, key); key 0 is the outer one."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(b, key)))
    return stationary_indices(n_frames, mean_block, 1, rng)[0]


def resample_indices(seed: int, b: int, r: int, n_frames: int, mean_block: float) -> np.ndarray:
    """Frame indices of outer resample ``b`` (r = 0) or of its inner resample ``r``.

    Inner resamples are drawn from the outer resample y*_b, so their indices are the
    outer indices re-indexed by a fresh stationary draw (ignoring cross-fades).
    """
    outer = _draw(seed, b, 0, n_frames, mean_block)
    return outer if r == 0 else outer[_draw(seed, b, r, n_frames, mean_block)]


def resample_series(
    y: np.ndarray, seed: int, b: int, r: int, mean_block: float, fade: int
) -> np.ndarray:
    """Outer resample ``b`` of (V, T) ``y`` (r = 0), or inner resample ``r`` of it, with
    every block join cross-faded over ``fade`` frames at each level."""
    n_frames = y.shape[1]
    out = crossfade_resample(y, _draw(seed, b, 0, n_frames, mean_block), fade)
    if r:
        out = crossfade_resample(out, _draw(seed, b, r, n_frames, mean_block), fade)
    return np.ascontiguousarray(out)


def double_bootstrap(
    y_clean: np.ndarray,
    refit: Refit,
    theta_t_hat: np.ndarray,
    tr: float,
    mode: str = default("bootstrap"),
    B: int = default("n_boot"),
    R: int = default("n_inner"),
    block_s: float = default("block_length"),
    seed: int = default("random_seed"),
    fade_s: float = FADE_S,
    bias_correct: bool = False,
    resampling: str = default("resampling"),
    half_width: int = HALF_WIDTH,
    n_jobs: int = 1,
    cache_dir: str | PathLike | None = None,
    client: object | None = None,
    progress: bool = True,
) -> BootstrapResult:
    """Bootstrap SE and (calibrated) interval bounds of a latent MAP map.

    Parameters
    ----------
    y_clean : array (V, T)
        Cleaned series of the vertices that were fitted.
    refit : callable
        Picklable ``refit(y (V, T)) -> theta_t (V, P)``: the same cleaning, summary
        and warm-started MAP (κ, τ² fixed) that produced ``theta_t_hat``. An optional
        ``cache_token`` attribute identifies its settings in the cache key. The local
        scheme calls ``refit.fit_periodogram(power (V, ⌊T/2⌋))`` instead, or wraps a
        MapRefit (:func:`periodogram_refit`); its surrogate's cleaning recipe sets
        which ordinates are resampled.
    theta_t_hat : array (V, P)
        Latent MAP estimate on the original data.
    tr : float
        Repetition time in seconds.
    mode : {'double', 'single'}
        'single' runs the outer level only and reports θ̃̂ ± 1.96·se (uncalibrated).
    B, R : int
        Outer and inner resample counts.
    block_s : float
        Mean block length of the stationary bootstrap, seconds (block scheme).
    seed : int
        Every resample's randomness is derived from (seed, b, r).
    fade_s : float
        Cross-fade at every block join, seconds (rounded to frames; 0 disables it;
        block scheme).
    bias_correct : bool
        Remove the bootstrap bias estimate before calibration and from the interval
        centre (module docstring); single mode uses the outer shift only.
    resampling : {'local', 'block'}
        Local periodogram bootstrap or stationary block bootstrap (module docstring).
    half_width : int
        Local scheme: ordinates each side of the resampled one.
    n_jobs : int
        Local worker processes (joblib/loky); -1 uses every core.
    cache_dir : path, optional
        Work directory where finished refits are kept and reused.
    client : distributed.Client, optional
        Run the refits on this Dask cluster instead of local processes.
    progress : bool
        Show a progress bar on a terminal, log lines otherwise.

    Returns
    -------
    BootstrapResult
    """
    start = time.perf_counter()
    if resampling not in RESAMPLING:
        raise UsageError(f"bootstrap resampling must be 'local' or 'block', got {resampling!r}")
    y_clean = np.asarray(y_clean)
    theta_t_hat = np.asarray(theta_t_hat, dtype=float)
    if y_clean.ndim != 2 or theta_t_hat.ndim != 2 or theta_t_hat.shape[0] != y_clean.shape[0]:
        raise InputValidationError(
            f"bootstrap needs y (V, T) and theta_t (V, P) with the same V, got "
            f"{y_clean.shape} and {theta_t_hat.shape}"
        )
    mean_block = to_block_frames(block_s, tr)
    plan, refit = resampling_plan(refit, y_clean.shape[1], tr, resampling, block_s, fade_s,
                                  half_width)
    result = run_plan(plan, refit, y_clean, theta_t_hat, key=[y_clean, tr], mode=mode, B=B,
                      R=R, seed=seed, bias_correct=bias_correct, n_jobs=n_jobs,
                      cache_dir=cache_dir, client=client, progress=progress)
    return replace(result, block_frames=mean_block, block_s=float(block_s),
                   fade_s=float(fade_s), seconds=time.perf_counter() - start)


def run_plan(
    plan: ResamplingPlan, refit, source, theta_t_hat: np.ndarray, key: list,
    mode: str = default("bootstrap"), B: int = default("n_boot"), R: int = default("n_inner"),
    seed: int = default("random_seed"), bias_correct: bool = False, n_jobs: int = 1,
    cache_dir: str | PathLike | None = None, client: object | None = None,
    progress: bool = True,
) -> BootstrapResult:
    """The bootstrap of any resampling plan: refits (cached, in parallel), SE, calibrated
    level and intervals. ``source`` is what ``plan.prepare`` turns into the resampled
    data (only called when a refit is missing); ``key`` lists what, besides the estimate,
    seed, refit and plan, identifies the problem in the cache (arrays and scalars).
    Arguments otherwise as in :func:`double_bootstrap`."""
    start = time.perf_counter()
    if mode not in ("single", "double"):
        raise UsageError(f"bootstrap mode must be 'single' or 'double', got {mode!r}")
    if B < 2 or (mode == "double" and R < 2):
        raise UsageError(f"bootstrap needs B >= 2 and R >= 2, got B={B}, R={R}")
    resampling = "block" if isinstance(plan, BlockPlan) else "local"
    theta_t_hat = np.asarray(theta_t_hat, dtype=float)
    n_inner = R if mode == "double" else 0
    tasks = [(b, r) for b in range(B) for r in range(n_inner + 1)]

    cache = None
    if cache_dir is not None:
        cache = RefitCache(cache_dir, cache_key(key, theta_t_hat, seed, refit, plan.token))
    fits: dict[Task, np.ndarray] = {}
    if cache is not None:
        for task in tasks:
            stored = cache.load(*task)
            if stored is not None and stored.shape == theta_t_hat.shape \
                    and stored.dtype == np.float32:
                fits[task] = stored
    missing = [task for task in tasks if task not in fits]
    if fits:
        log.info("bootstrap: reusing %d of %d refits from %s", len(fits), len(tasks), cache.folder)

    data = plan.prepare(source) if missing else None
    results = _run(missing, plan, refit, data, seed, n_jobs, client)
    for b, r, theta_t in _report(results, len(missing), progress):
        if theta_t.shape != theta_t_hat.shape:
            raise InputValidationError(
                f"refit returned shape {theta_t.shape}, expected {theta_t_hat.shape}"
            )
        # float32 in memory and on disk alike, so a resumed run equals a fresh one.
        theta_t = theta_t.astype(np.float32)
        fits[(b, r)] = theta_t
        if cache is not None:
            cache.save(b, r, theta_t)

    draws = np.stack([fits[(b, 0)] for b in range(B)]).astype(float)  # (B, V, P)
    se = draws.std(axis=0, ddof=1)
    shift = draws.mean(axis=0) - theta_t_hat  # (V, P)
    centre = theta_t_hat - shift if bias_correct else theta_t_hat
    n_params = theta_t_hat.shape[1]
    if mode == "double":
        inner = np.stack([[fits[(b, r)] for r in range(1, R + 1)] for b in range(B)])
        inner = inner.astype(float)  # (B, R, V, P)
        inner_sd = inner.std(axis=1, ddof=1)  # (B, V, P)
        outer_centre = 2.0 * draws - inner.mean(axis=1) if bias_correct else draws
        if resampling == "local":
            alpha_hat = np.array([pooled_level(outer_centre[:, :, p], inner[:, :, :, p])
                                  for p in range(n_params)])
            levels = at_floor = None
        else:
            calibrated = [calibrate_level(theta_t_hat[:, p], outer_centre[:, :, p],
                                          inner_sd[:, :, p])
                          for p in range(n_params)]
            alpha_hat = np.array([a for a, _ in calibrated])
            levels = np.stack([beta for _, beta in calibrated], axis=1)
            at_floor = np.array([floor_fraction(levels[:, p]) for p in range(n_params)])
        if at_floor is not None and np.any(at_floor > XI):
            log.warning("bootstrap calibration: %s of the vertices wanted intervals wider "
                        "than the smallest level offered; the calibrated intervals are a "
                        "lower bound", ", ".join(f"{f:.0%}" for f in at_floor))
    else:
        alpha_hat = np.full(n_params, ALPHA0)
        levels = at_floor = None
    z = normal_quantile(alpha_hat)
    return BootstrapResult(
        se=se,
        alpha_hat=alpha_hat,
        lower=centre - z * se,
        upper=centre + z * se,
        draws=draws.astype(np.float32),
        vertex_levels=levels,
        B=B,
        R=n_inner,
        block_frames=float("nan"),
        block_s=float("nan"),
        mode=mode,
        seed=int(seed),
        n_refits=len(missing),
        seconds=time.perf_counter() - start,
        shift=shift,
        bias_correct=bool(bias_correct),
        floor_fraction=at_floor,
        resampling=resampling,
        half_width=getattr(plan, "half_width", HALF_WIDTH),
    )


class ResamplingPlan:
    """How the resamples of one bootstrap are drawn. :meth:`resamples` yields those of
    one outer resample ``b`` together, so its outer resample (and, local scheme, the
    local spectrum its inner resamples start from) is drawn once per ``b``; every
    resample is still a function of (seed, b, r) alone. ``token`` identifies the
    resamples in the cache key."""

    def prepare(self, source):
        """The data the resamples are drawn from (sent to the workers once)."""
        raise NotImplementedError

    def resamples(self, data: np.ndarray, seed: int, b: int, rs: list[int]
                  ) -> Iterator[tuple[int, np.ndarray]]:
        """(r, resample) for each r in ``rs``, in any order: outer resample ``b`` (r = 0)
        or its inner resample r ≥ 1. A resample may be overwritten by the next one:
        refit it before drawing on."""
        raise NotImplementedError

    def fit(self, refit, sample: np.ndarray) -> np.ndarray:
        """The refit of one resample."""
        raise NotImplementedError

    def resample(self, data: np.ndarray, seed: int, b: int, r: int) -> np.ndarray:
        """One resample, as :meth:`resamples` draws it."""
        return next(iter(self.resamples(data, seed, b, [r])))[1]


@dataclass(frozen=True)
class BlockPlan(ResamplingPlan):
    """Stationary block bootstrap of the cleaned series; the refit takes series."""

    mean_block: float
    fade: int

    @property
    def token(self) -> str:
        """Identifies the resamples in the cache key."""
        return (f"stationary-v1|{self.mean_block!r}"
                + (f"|crossfade-{self.fade}" if self.fade else ""))

    def prepare(self, y_clean: np.ndarray) -> np.ndarray:
        return y_clean

    def resamples(self, data: np.ndarray, seed: int, b: int, rs: list[int]
                  ) -> Iterator[tuple[int, np.ndarray]]:
        outer = resample_series(data, seed, b, 0, self.mean_block, self.fade)
        for r in (r for r in rs if r):
            yield r, np.ascontiguousarray(crossfade_resample(
                outer, _draw(seed, b, r, data.shape[1], self.mean_block), self.fade))
        if 0 in rs:
            yield 0, outer  # last, so a refit that writes into its input harms nothing

    def fit(self, refit: Refit, sample: np.ndarray) -> np.ndarray:
        return refit(sample)


@dataclass(frozen=True)
class LocalPlan(ResamplingPlan):
    """Local periodogram bootstrap; the refit takes periodograms (``fit_periodogram``)."""

    plan: LocalPeriodogramBootstrap

    @property
    def half_width(self) -> int:
        return self.plan.half_width

    @property
    def token(self) -> str:
        gain = array_digest(np.asarray(self.plan.gain))
        bands = array_digest(np.asarray(self.plan.bands))
        return f"local-periodogram-v4|{gain}|{bands}|h{self.plan.half_width}"

    def prepare(self, y_clean: np.ndarray) -> np.ndarray:
        return self.plan.periodogram(y_clean)

    def resamples(self, data: np.ndarray, seed: int, b: int, rs: list[int]
                  ) -> Iterator[tuple[int, np.ndarray]]:
        """The R inner resamples share their local spectrum (the outer resample's Ŝ* with
        the original ratios, :meth:`LocalPeriodogramBootstrap.inner_spectrum`; at fsLR 32k
        the spectrum was a third of an inner refit's CPU) and one output buffer: each is
        valid until the next is drawn. The outer resample comes last, so it needs no
        copy to survive its refit."""
        original = self.plan.spectrum(data)
        outer = self.plan.resample(data, resample_rng(seed, b, 0), original)
        inner = [r for r in rs if r]
        if inner:
            spectrum = self.plan.inner_spectrum(outer, original)
            buffer = np.empty_like(outer)
            for r in inner:
                yield r, self.plan.resample(outer, resample_rng(seed, b, r), spectrum, buffer)
        if 0 in rs:
            yield 0, outer

    def fit(self, refit, sample: np.ndarray) -> np.ndarray:
        return refit.fit_periodogram(sample)


def resample_rng(seed: int, *key: int) -> np.random.Generator:
    """The generator of (seed, b, r[, run]): one stream per resample, whatever runs it."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def periodogram_refit(refit: Refit, n_frames: int):
    """The refit as a fit of periodograms: itself when it has ``fit_periodogram``, else
    (a MapRefit) wrapped in :class:`bids_app.bootstrap.periodogram_refit.PeriodogramRefit`."""
    if hasattr(refit, "fit_periodogram"):
        return refit
    from bids_app.bootstrap.periodogram_refit import PeriodogramRefit

    return PeriodogramRefit(refit, n_frames)


def cleaning_recipe(refit: Refit):
    """The cleaning behind the series: the refit's surrogate recipe when it has one
    (``refit.surrogate.preprocessing``), else None (no filter)."""
    return getattr(getattr(refit, "surrogate", None), "preprocessing", None)


def local_bootstrap(source, n_frames: int, tr: float, half_width: int = HALF_WIDTH
                    ) -> LocalPeriodogramBootstrap:
    """The local scheme of a run whose series ``source`` (a refit, or a run of a combined
    map) cleans and summarises: its surrogate's cleaning sets the gain, its feature bands
    the bands of the multiplicity correction (the default bands without a surrogate)."""
    config = getattr(getattr(source, "surrogate", None), "config", None)
    bands = ordinate_bands(n_frames, tr, getattr(config, "n_bands", N_BANDS))
    gain = cleaning_gain(n_frames, tr, cleaning_recipe(source))
    return LocalPeriodogramBootstrap(n_frames, gain, bands, int(half_width))


def resampling_plan(refit: Refit, n_frames: int, tr: float,
                    resampling: str = default("resampling"),
                    block_s: float = default("block_length"), fade_s: float = FADE_S,
                    half_width: int = HALF_WIDTH):
    """(plan, refit) of a scheme: how resamples are drawn and the refit that takes them
    (:func:`double_bootstrap`'s arguments; the key of its cache is built from both)."""
    if resampling == "local":
        return (LocalPlan(local_bootstrap(refit, n_frames, tr, half_width)),
                periodogram_refit(refit, n_frames))
    return BlockPlan(to_block_frames(block_s, tr), to_fade_frames(fade_s, tr)), refit


def _refit_batch(plan: ResamplingPlan, refit, data: np.ndarray, seed: int, b: int,
                 rs: list[int]) -> Iterator[tuple[int, int, np.ndarray]]:
    """Refit the resamples ``rs`` of outer resample ``b``, one by one as they are drawn."""
    for r, sample in plan.resamples(data, seed, b, rs):
        yield b, r, np.asarray(plan.fit(refit, sample))


def _refit_task(plan: ResamplingPlan, refit, data: np.ndarray, seed: int, b: int,
                rs: list[int]) -> list[tuple[int, int, np.ndarray]]:
    """:func:`_refit_batch` in a worker (module-level so it pickles)."""
    return list(_refit_batch(plan, refit, data, seed, b, rs))


def _batches(tasks: list[Task]) -> list[tuple[int, list[int]]]:
    """Tasks grouped by outer resample: one worker task per ``b`` sends the refit and
    draws the outer resample once for its R + 1 refits (benchmarks/RESULTS.md,
    "fsLR 32k intervals under 10 minutes")."""
    grouped: dict[int, list[int]] = {}
    for b, r in tasks:
        grouped.setdefault(b, []).append(r)
    return list(grouped.items())


def _run(
    tasks: list[Task], plan: ResamplingPlan, refit, data: np.ndarray, seed: int, n_jobs: int,
    client: object | None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (b, r, θ̃*) as refits finish, in any order (in-process: each as it is done,
    so an interrupted run keeps every finished refit)."""
    batches = _batches(tasks)
    if not batches:
        return iter(())
    if client is not None:
        return _run_dask(batches, plan, refit, data, seed, client)
    if n_jobs == 1:
        return (fit for b, rs in batches for fit in _refit_batch(plan, refit, data, seed, b, rs))
    return _run_joblib(batches, plan, refit, data, seed, n_jobs)


def _run_joblib(
    batches: list[tuple[int, list[int]]], plan: ResamplingPlan, refit, data: np.ndarray,
    seed: int, n_jobs: int,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Local worker processes (loky). The data go to the workers as one memory map
    written once; joblib would otherwise hash and copy them for every task."""
    from joblib import Parallel, delayed

    with tempfile.TemporaryDirectory(prefix="hemocoupling-bootstrap-") as tmp:
        path = Path(tmp) / "data.npy"
        np.save(path, data)
        shared = np.load(path, mmap_mode="r")
        parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered")
        for fits in parallel(delayed(_refit_task)(plan, refit, shared, seed, b, rs)
                             for b, rs in batches):
            yield from fits


def _run_dask(
    batches: list[tuple[int, list[int]]], plan: ResamplingPlan, refit, data: np.ndarray,
    seed: int, client,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Submit one task per outer resample to a Dask ``Client``; data and refit are
    broadcast once."""
    from distributed import as_completed

    data_future, refit_future = client.scatter([data, refit], broadcast=True, hash=False)
    futures = [client.submit(_refit_task, plan, refit_future, data_future, seed, b, rs,
                             pure=False)
               for b, rs in batches]
    for future in as_completed(futures):
        yield from future.result()
        future.release()


def _report(results: Iterable, total: int, progress: bool) -> Iterator:
    """Pass results through, with tqdm on a terminal or a log line every ~10 %."""
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(results, total=total, desc="bootstrap refits", unit="fit")
        return
    step = max(1, total // 10)
    for done, item in enumerate(results, start=1):
        if progress and (done % step == 0 or done == total):
            log.info("bootstrap: %d/%d refits done", done, total)
        yield item
