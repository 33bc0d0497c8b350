"""Local periodogram bootstrap (Paparoditis & Politis 1999), jointly for all vertices.

The surrogate reads log band powers of the cleaned series' periodogram, so the resamples
are drawn in the frequency domain, where a time-domain block bootstrap would move power
across frequencies at every block join. For each vertex the periodogram I(f_j) is
computed once, with a local spectrum estimate Ŝ(f_j) (a Daniell window of ±h ordinates)
and the ratios ε_j = I(f_j)/Ŝ(f_j); a resample is

    I*(f_j) = Ŝ(f_j) · ε_k,   k drawn uniformly from j − h … j + h (mirrored at the edges)

with the SAME draws k for every vertex, so whatever the vertices share at one frequency
(spatially smooth signal, common noise) stays shared: the refits keep the spatial
dependence that the MAP's prior acts on. The resample is then rescaled to unit variance,
as :func:`bids_app.preprocess.clean` z-scores every series: the features are read from
a z-scored series, so their bootstrap variation must not include the run's total power.

Four details make the finite-sample variance and mean right (tests/bootstrap: a known AR(1)
spectrum's band log-power variance against Monte Carlo; benchmarks/bench_bootstrap.py):

- The cleaning's power gain H(f_j) is known (:func:`cleaning_gain`: the drift and
  high-pass projection, the low-pass), so the window smooths I/H, the spectrum before
  cleaning, and Ŝ = H · smooth(I/H). Smoothing I itself across the high-pass edge
  (H rises from 0.001 to 0.9 over four ordinates at TR 2 s, 300 frames) gave ratios
  biased the same way at every vertex (0.45 at the edge ordinate, 1.26 next to it), and
  the shared draws then moved every vertex's low bands together: spatially coherent
  noise that the prior cannot average away (bootstrap SE 2.5× the error's SD).
- Only ordinates the cleaning kept (H ≥ ``GAIN_FLOOR``) are resampled; the few it
  removed stay as they are (rescaled with the rest).
- The ratio's own ordinate gets the weight w₀ in Ŝ that makes ratios of χ²₂ ordinates
  unit-variance (:func:`centre_weight`): with the plain Daniell weight 1/(2h + 1) a
  ratio shrinks towards 1 (its variance is (2h)/(2h + 2)), and the bootstrap would
  under-state the variance of every band by that factor; leaving the ordinate out
  (w₀ = 0) over-states it by 2h/(2h − 2).
- Drawing with replacement repeats ordinates, and a band whose sum repeats terms has
  the same mean but a larger variance, so a lower mean log (Jensen), by an amount set by
  the draws alone: the same at every vertex. Each band's ordinates are scaled back
  (:func:`correct_multiplicity`), using exactly the features' bands
  (:func:`bids_app.surrogate.features.ordinate_bands`). On the AR(1) test the median
  shift of the resampled log band powers from the original's goes from −0.080 to
  −0.044 (the widest bands −0.03 → −0.003; what is left is in bands of one to three
  ordinates, the log-bias of Ŝ itself), and on the fsaverage5 white study the shift of
  the surrogate's summaries from −0.044 to −0.003. The per-vertex variance stays right
  (the AR(1) test).

Inner resamples (double bootstrap) draw, with fresh draws, the ORIGINAL ratios around
the outer resample's own Ŝ* (:meth:`LocalPeriodogramBootstrap.inner_spectrum`): both
levels then draw from the same distinct ratios, and the inner level measures how the
spread changes with the spectrum, as the double bootstrap needs. Drawing from the outer
resample's ratios repeated its repeats: on the fsaverage5 study with real-like nuisance
the inner resamples' common shifts were 2.5× the outer ones (0.18 against 0.073 latent,
B = 30) and their spread without them 1.9×; from the original ratios 1.6× both.

What the shared draws still cost (fsaverage5 white study, vertices independent): per
vertex the resampled summaries have the right spread, but a resample moves all vertices
together more than new noise does: SD over resamples of the vertices' mean summary 0.019
against 0.0035 over noise realisations (0.0023 with independent draws per vertex). The
correction above does not change it, nor does pinning every band's mean over vertices to
the original's (0.016): it is the summary network's nonlinear response to the same
pattern of draws at every vertex, not a shift of the features' means. A drawn term
Ŝ_j·ε_k also holds I_k in Ŝ_j when k ≠ j (mean 1.12–1.17 for |k − j| = 1 … 3, 1 for
k = j, on χ²₂ ordinates); that is part of what gives the ratios their right per-vertex
variance, so it stays. The common part passes the spatial prior unattenuated and is
larger at the inner level, which draws from an outer resample that already repeats
ordinates; the calibration compares the two levels without it
(:func:`bids_app.bootstrap.calibration.pooled_level`). Under run-level nuisance (shared
signal, one breathing and heart rate per run) the noise itself moves all vertices
together far more (0.17), and the resamples' common part (0.022) is smaller than the
truth's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.ndimage import convolve1d
from scipy.optimize import brentq
from scipy.special import digamma, roots_genlaguerre, roots_laguerre

from bids_app.errors import UsageError
from bids_app.preprocess import Preprocessing, nuisance_basis
from bids_app.surrogate.features import periodogram

# Ordinates each side of the one resampled (the window of the local spectrum and of the
# draws). Checked on the AR(1) variance test and benchmarks/bench_bootstrap.py.
HALF_WIDTH = 3
# Ordinates whose power the cleaning kept less of than this are not resampled.
GAIN_FLOOR = 0.1
# Vertices resampled per block: the block's temporaries stay in cache, where whole
# (V, J) temporaries streamed through memory at fsLR 32k (a resample took ~3x the CPU;
# benchmarks/RESULTS.md, "fsLR 32k intervals under 10 minutes").
ROWS = 512


@lru_cache(maxsize=32)
def centre_weight(half_width: int, nodes: int = 80) -> float:
    """Weight w₀ of the ordinate itself in Ŝ (the 2h others share 1 − w₀ equally) at which
    ε = X / (w₀X + (1 − w₀)M), X ~ Exp(1), M the mean of 2h more, has Var ε = (E ε)²,
    as the ratio of a χ²₂ ordinate to its spectrum has. Gauss–Laguerre quadrature in X
    and M (deterministic; e.g. h = 3 gives 0.0653)."""
    if half_width < 1:
        raise UsageError(f"local bootstrap half-width must be >= 1 ordinate, got {half_width}")
    m = 2 * half_width
    x, wx = roots_laguerre(nodes)
    g, wg = roots_genlaguerre(nodes, m - 1)
    mean_rest = g / m
    weights = wx[:, None] * (wg / wg.sum())[None, :]

    def excess(w0: float) -> float:
        ratio = x[:, None] / (w0 * x[:, None] + (1.0 - w0) * mean_rest[None, :])
        m1, m2 = (weights * ratio).sum(), (weights * ratio ** 2).sum()
        return m2 / m1 ** 2 - 2.0

    return float(brentq(excess, 0.0, 1.0 / (m + 1)))


def cleaning_gain(n_frames: int, tr: float, spec: Preprocessing | None) -> np.ndarray:
    """Power gain (⌊T/2⌋,) of :func:`bids_app.preprocess.clean`'s linear part at each
    ordinate: the share of a sinusoid's energy left by the drift and high-pass
    projection, times the zero-phase low-pass |H|⁴; ones without a recipe."""
    n_ord = n_frames // 2
    if spec is None:
        return np.ones(n_ord)
    basis = nuisance_basis(n_frames, tr, spec)
    phase = 2.0 * np.pi * np.outer(np.arange(1, n_ord + 1), np.arange(n_frames)) / n_frames
    cos, sin = np.cos(phase), np.sin(phase)
    removed = ((cos @ basis) ** 2).sum(1) + ((sin @ basis) ** 2).sum(1)
    gain = 1.0 - removed / ((cos ** 2).sum(1) + (sin ** 2).sum(1))
    if spec.lowpass and spec.lowpass < 0.5 / tr:
        from scipy.signal import butter, sosfreqz

        sos = butter(4, spec.lowpass / (0.5 / tr), btype="low", output="sos")
        _, response = sosfreqz(sos, worN=np.arange(1, n_ord + 1) / n_frames, fs=1.0)
        gain = gain * np.abs(response) ** 4
    return np.clip(gain, 0.0, 1.0)


def passband(gain: np.ndarray) -> slice:
    """The ordinates resampled: from the first to the last with gain ≥ ``GAIN_FLOOR``."""
    idx = np.flatnonzero(np.asarray(gain) >= GAIN_FLOOR)
    if idx.size < 2 * HALF_WIDTH + 1:
        raise UsageError(f"the cleaning keeps {idx.size} periodogram ordinates of this run, "
                         "too few to resample; use --resampling block")
    return slice(int(idx[0]), int(idx[-1]) + 1)


def variance(power: np.ndarray, n_frames: int) -> np.ndarray:
    """Variance (V,) of the series behind periodograms (V, ⌊T/2⌋), 1 where it is 0
    (Parseval: Σ over all T − 1 non-zero ordinates / T; ordinates j and T − j are
    equal, the Nyquist one of an even T counts once)."""
    counts = np.full(power.shape[-1], 2.0)
    if n_frames % 2 == 0:
        counts[-1] = 1.0
    var = power @ counts / n_frames
    return np.where(var > 0, var, 1.0)


def unit_variance(power: np.ndarray, n_frames: int) -> np.ndarray:
    """Scale periodograms (V, ⌊T/2⌋) to those of unit-variance series."""
    return power / variance(power, n_frames)[:, None]


def local_spectrum(power: np.ndarray, half_width: int) -> tuple[np.ndarray, np.ndarray]:
    """Ŝ and ratios ε = I/Ŝ of periodograms (V, J) along their last axis (ε = 0 where
    Ŝ = 0: a series with no power keeps none)."""
    w0 = centre_weight(half_width)
    window = np.full(2 * half_width + 1, (1.0 - w0) / (2 * half_width))
    window[half_width] = w0
    smooth = convolve1d(power, window, axis=-1, mode="mirror")
    ratio = np.divide(power, smooth, out=np.zeros_like(power), where=smooth > 0)
    return smooth, ratio


def local_draws(n_ordinates: int, half_width: int, rng: np.random.Generator) -> np.ndarray:
    """Ordinate k drawn for each j (J,): uniform on j ± h, mirrored into 0 … J − 1."""
    k = np.arange(n_ordinates) + rng.integers(-half_width, half_width + 1, n_ordinates)
    k = np.abs(k)
    return np.where(k > n_ordinates - 1, 2 * (n_ordinates - 1) - k, k)


@dataclass(frozen=True)
class BandRepeats:
    """Where one resample's draws repeat an ordinate within a feature band; it depends on
    the draws alone, so a resample finds it once for all its rows (:func:`band_repeats`).

    Attributes
    ----------
    segments : array (S,) int
        First column of each run of equal band labels (bands and the gaps between them),
        for ``np.add.reduceat``.
    segment : array (n,) int
        The segment of each band that repeats a draw.
    first, second : array (m,) int
        Columns j < j' of the same band drawn from the same ordinate, grouped by band.
    pair_starts : array (n,) int
        Where each band's pairs start in ``first``/``second``.
    column : array (J,) int
        The repeating band of each column (its index in ``segment``), n for the others.
    """

    segments: np.ndarray
    segment: np.ndarray
    first: np.ndarray
    second: np.ndarray
    pair_starts: np.ndarray
    column: np.ndarray


def band_repeats(bands: np.ndarray, draws: np.ndarray) -> BandRepeats:
    """The bands whose draws repeat an ordinate, and their pairs j < j' of columns drawn
    from the same ordinate.

    Parameters
    ----------
    bands : array (J,) int
        Feature band of each ordinate (:func:`bids_app.surrogate.features.ordinate_bands`),
        −1 outside every band; a band is a run of consecutive ordinates.
    draws : array (J,) int
        Ordinate k(j) each one's ratio is drawn from.
    """
    bands = np.asarray(bands)
    segments = np.flatnonzero(np.r_[True, bands[1:] != bands[:-1]])
    ends = np.r_[segments[1:], bands.size]
    segment, pair_starts = [], []
    first, second = [np.zeros(0, dtype=np.intp)], [np.zeros(0, dtype=np.intp)]
    column = np.full(bands.size, -1, dtype=np.intp)
    n_pairs = 0
    for i, (lo, hi) in enumerate(zip(segments, ends, strict=True)):
        # Pairs of the band's ordinates drawn from the same ordinate (a few per band).
        same = np.triu(draws[lo:hi, None] == draws[None, lo:hi], 1)
        if bands[lo] < 0 or not same.any():
            continue
        j, j2 = np.nonzero(same)
        column[lo:hi] = len(segment)
        segment.append(i)
        pair_starts.append(n_pairs)
        first.append(lo + j)
        second.append(lo + j2)
        n_pairs += j.size
    column[column < 0] = len(segment)
    return BandRepeats(segments, np.asarray(segment, dtype=np.intp), np.concatenate(first),
                       np.concatenate(second), np.asarray(pair_starts, dtype=np.intp), column)


def correct_multiplicity(power: np.ndarray, weights: np.ndarray, repeats: BandRepeats
                         ) -> None:
    """Scale, in place, each band of a resample by exp(δ), undoing what repeated draws do
    to the band's mean log power.

    A band's resampled power Σ_j w_j ε_k(j) (w_j the ordinate's expected power, ε unit-mean
    and unit-variance ratios) has the original's mean but the variance Σ_i c_i²,
    c_i = Σ_{j: k(j) = i} w_j, of a sum with repeated terms instead of Σ_j w_j², so its
    log is lower on average (Jensen), and lower by the same amount at every vertex that
    shares the draws. Read as a gamma variable of the same mean and variance (exact for
    χ²₂ ordinates of equal power), the log of a band sum of shape ν = (Σ w)² / Σ w² has
    mean log(Σ w) + ψ(ν) − log ν, so the band's ordinates are scaled by

        exp(δ),  δ = g(ν_w) − g(ν_c),  g(ν) = ψ(ν) − log ν,

    with ν_w from Σ w_j² (the original's distinct ordinates) and ν_c from
    Σ c_i² = Σ w_j² + 2 Σ w_j w_j' over the pairs j < j' drawn from the same ordinate.
    All bands are corrected at once (``np.add.reduceat`` sums, one digamma call per
    block of rows): a loop over bands cost over half of a resample at fsLR 32k
    (benchmarks/RESULTS.md, "refit tolerances and the vectorised multiplicity correction").

    Parameters
    ----------
    power : array (V, J)
        The resample, scaled in place (bands without a repeated draw are left as they are).
    weights : array (V, J)
        Expected power of each resampled ordinate (gain · Ŝ).
    repeats : BandRepeats
        :func:`band_repeats` of the resample's bands and draws.
    """
    if repeats.segment.size == 0:
        return
    total = np.add.reduceat(weights, repeats.segments, axis=1)[:, repeats.segment]
    distinct = np.add.reduceat(weights * weights, repeats.segments, axis=1)[:, repeats.segment]
    pairs = np.add.reduceat(weights[:, repeats.first] * weights[:, repeats.second],
                            repeats.pair_starts, axis=1)
    repeated = distinct + 2.0 * pairs
    ok = (total > 0) & (distinct > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu_w = np.where(ok, total ** 2 / distinct, 1.0)
        nu_c = np.where(ok, total ** 2 / repeated, 1.0)
    delta = (digamma(nu_w) - np.log(nu_w)) - (digamma(nu_c) - np.log(nu_c))
    scale = np.concatenate([np.exp(delta), np.ones((len(power), 1))], axis=1)
    power *= np.take(scale, repeats.column, axis=1)


@dataclass(frozen=True)
class LocalPeriodogramBootstrap:
    """Resampling plan of one run: T, the passband and the half-width.

    Attributes
    ----------
    n_frames : int
        Frames T of the run (the periodogram has ⌊T/2⌋ ordinates).
    gain : array (⌊T/2⌋,)
        The cleaning's power gain (:func:`cleaning_gain`).
    bands : array (⌊T/2⌋,) int
        The features' band of each ordinate
        (:func:`bids_app.surrogate.features.ordinate_bands`), −1 outside them; the
        multiplicity correction works band by band.
    half_width : int
        h, ordinates each side.
    """

    n_frames: int
    gain: np.ndarray
    bands: np.ndarray
    half_width: int = HALF_WIDTH

    @property
    def band(self) -> slice:
        """Ordinates resampled (:func:`passband`)."""
        return passband(self.gain)

    def spectrum(self, power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ŝ and ratios ε over the passband of periodograms (V, J) (what every resample of
        the same periodograms starts from: a double bootstrap's R inner resamples of one
        outer resample share it)."""
        power = np.asarray(power, dtype=np.float64)
        band = self.band
        gain = self.gain[band]
        smooth = np.empty((len(power), gain.size))
        ratio = np.empty_like(smooth)
        for start in range(0, len(power), ROWS):
            rows = slice(start, start + ROWS)
            smooth[rows], ratio[rows] = local_spectrum(power[rows, band] / gain, self.half_width)
        return smooth, ratio

    def inner_spectrum(self, outer: np.ndarray, original: tuple[np.ndarray, np.ndarray]
                       ) -> tuple[np.ndarray, np.ndarray]:
        """What an outer resample's inner resamples start from: its own Ŝ*, and the
        ratios of ``original``, the :meth:`spectrum` of the periodograms the outer one was
        drawn from. Ratios of the outer resample would repeat whatever it drew twice, and
        the inner level would then see more of the shared draws' artefacts than the outer
        one (module docstring)."""
        return self.spectrum(outer)[0], original[1]

    def resample(self, power: np.ndarray, rng: np.random.Generator,
                 spectrum: tuple[np.ndarray, np.ndarray] | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
        """One resample (V, J) of periodograms (V, J), unit-variance; ``spectrum`` is
        :meth:`spectrum` of ``power`` when the caller kept it; ``out`` (V, J) float64, if
        given, receives the resample (a reused buffer: at fsLR 32k the first touch of a
        fresh (V, J) array cost more than the resample's arithmetic)."""
        power = np.asarray(power, dtype=np.float64)
        band = self.band
        smooth, ratio = spectrum if spectrum is not None else self.spectrum(power)
        k = local_draws(band.stop - band.start, self.half_width, rng)
        repeats = band_repeats(self.bands[band], k)
        out = np.empty_like(power) if out is None else out
        for start in range(0, len(out), ROWS):
            rows = slice(start, start + ROWS)
            self._resample_rows(power[rows], smooth[rows], ratio[rows], k, band, repeats,
                                out[rows])
        return out

    def _resample_rows(self, power: np.ndarray, smooth: np.ndarray, ratio: np.ndarray,
                       k: np.ndarray, band: slice, repeats: BandRepeats, out: np.ndarray
                       ) -> None:
        """:meth:`resample` of a block of rows into ``out``: I*(f_j) = H(f_j)·Ŝ(f_j)·ε_k
        over the passband, the rest kept, every row scaled to unit variance, then each
        band's multiplicity corrected (after the scaling, a sum over every ordinate that
        repeats do not bias: the correction is of a band's log power relative to the
        total; ν is scale-free)."""
        out[:, :band.start] = power[:, :band.start]
        out[:, band.stop:] = power[:, band.stop:]
        weights = smooth * self.gain[band]
        resampled = out[:, band]
        np.multiply(np.take(ratio, k, axis=1), weights, out=resampled)  # take: 6x [:, k]
        out /= variance(out, self.n_frames)[:, None]
        correct_multiplicity(resampled, weights, repeats)

    def periodogram(self, y_clean: np.ndarray) -> np.ndarray:
        """The periodogram (V, J) resamples start from, float64."""
        if np.shape(y_clean)[-1] != self.n_frames:
            raise UsageError(f"series have {np.shape(y_clean)[-1]} frames, the plan "
                             f"{self.n_frames}")
        return periodogram(y_clean)
