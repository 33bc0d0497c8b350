"""Report figures, drawn once as files and embedded in the self-contained HTML.

Plots, colour bars and text are SVG (vector: readable at any zoom); surface panels and
carpets are rasterised inside the SVG at :data:`RASTER_DPI` so an fsLR 32k hemisphere
stays a few hundred kB (benchmarks/bench_reports.py). Sizes are set for a 1100 px report
column: a full-width figure is :data:`FULL_WIDTH` inches wide, so 10 pt text reads as
about 14 px. Everything renders headless with matplotlib's Agg backend (nilearn's
matplotlib engine for surfaces).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless before pyplot: reports run on clusters without a display

import matplotlib.pyplot as plt
import numpy as np
from nilearn import plotting

Mesh = tuple[np.ndarray, np.ndarray]

_HEMI_NAME = {"L": "left", "R": "right"}
RASTER_DPI = 150
FULL_WIDTH = 11.0
HALF_WIDTH = 5.4
_TEXT = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "legend.fontsize": 9, "svg.fonttype": "none"}
plt.rcParams.update(_TEXT)
# Background darkness (nilearn draws 0 white, 1 black): cortex from light gyri to darker
# sulci; the medial wall (no value) one flat grey, so it never reads as cortex.
GYRUS, SULCUS, MEDIAL_WALL = 0.15, 0.55, 0.35


@dataclass(frozen=True)
class Figure:
    """An SVG figure, its caption and whether it spans the report's width (maps,
    carpets) or half (small plots); ``uri`` embeds it in an ``<img>`` (one file per
    report: no links to break, no SVG ids shared between figures)."""

    svg: bytes
    caption: str
    wide: bool = True

    @property
    def uri(self) -> str:
        return "data:image/svg+xml;base64," + base64.b64encode(self.svg).decode("ascii")


def svg_bytes(fig: plt.Figure, tight: bool = True) -> bytes:
    """The figure as SVG (rasterised artists at :data:`RASTER_DPI`); closes it. A tight
    bounding box costs a second draw: surfaces (most of the drawing time) lay themselves
    out instead (benchmarks/bench_outputs.py)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", dpi=RASTER_DPI, bbox_inches="tight" if tight else None,
                metadata={"Date": None})  # same figure, same bytes
    plt.close(fig)
    return buffer.getvalue()


def _limits(arrays: Sequence[np.ndarray], symmetric: bool) -> tuple[float, float]:
    """Robust colour limits (2nd–98th percentile) over all finite values."""
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays] or [np.zeros(0)])
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [2, 98])
    if symmetric:
        bound = max(abs(lo), abs(hi)) or 1.0
        return -bound, bound
    if hi - lo <= 1e-6 * max(abs(hi), 1.0):  # (nearly) constant map: a readable band
        pad = 0.05 * max(abs(lo), 1.0)
        lo, hi = lo - pad, hi + pad
    return float(lo), float(hi)


def _background(shading: np.ndarray | None, values: np.ndarray) -> np.ndarray:
    """Grey levels: sulci dark, gyri light on cortex; flat grey where ``values`` is NaN."""
    n = len(values)
    cortex = np.isfinite(values)
    if shading is None or len(shading) != n:
        bg = np.full(n, GYRUS)
    else:
        s = np.asarray(shading, dtype=float)
        scale = np.nanpercentile(np.abs(s[cortex]), 95) if cortex.any() else 1.0
        depth = np.clip(s / (scale or 1.0), -1, 1)  # positive sulc/curv = in a sulcus
        bg = GYRUS + (SULCUS - GYRUS) * (depth + 1) / 2
    bg[~cortex] = MEDIAL_WALL
    return bg


def surface_figure(
    meshes: Mapping[str, Mesh],
    values: Mapping[str, np.ndarray],
    title: str,
    units: str = "",
    cmap: str = "viridis",
    symmetric: bool = False,
    limits: tuple[float, float] | None = None,
    shading: Mapping[str, np.ndarray] | None = None,
) -> bytes:
    """Lateral and medial views of each hemisphere's map on its mesh, one colour bar.

    ``meshes``, ``values`` and ``shading`` (sulcal depth or curvature, positive in
    sulci) are keyed by hemisphere; values are full length per mesh with NaN where
    nothing was estimated (the medial wall: drawn flat grey, unshaded). Colour limits
    default to the 2nd–98th percentile (symmetric about 0 if asked).
    """
    hemis = [h for h in ("L", "R") if h in values and h in meshes]
    arrays = [np.asarray(values[h], dtype=float) for h in hemis]
    vmin, vmax = limits if limits is not None else _limits(arrays, symmetric)
    fig, axes = plt.subplots(1, 2 * len(hemis), figsize=(FULL_WIDTH, 2.9),
                             subplot_kw={"projection": "3d"}, squeeze=False)
    for i, hemi in enumerate(hemis):
        data = np.asarray(values[hemi], dtype=float)
        vertices, faces = meshes[hemi]
        bg = _background((shading or {}).get(hemi), data)
        for j, view in enumerate(("lateral", "medial")):
            ax = axes[0, 2 * i + j]
            mesh = (np.array(vertices, dtype=float), np.asarray(faces))  # nilearn edits it
            plotting.plot_surf_stat_map(
                mesh, data, hemi=_HEMI_NAME[hemi], view=view, axes=ax, figure=fig,
                bg_map=bg, bg_on_data=True, colorbar=False, cmap=cmap,
                vmin=vmin, vmax=vmax, symmetric_cbar=False, engine="matplotlib")
            ax.set_title(f"{hemi} {view}")
            ax.set_rasterized(True)
    fig.subplots_adjust(left=0.0, right=0.99, bottom=0.0, top=0.86, wspace=-0.05)
    mappable = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(vmin, vmax))
    bar = fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.7, pad=0.01)
    bar.set_label(units)
    fig.suptitle(title, fontsize=12, y=0.99)
    return svg_bytes(fig, tight=False)


def evidence_figure(grid: Mapping[str, Any], title: str = "Laplace log evidence") -> bytes | None:
    """Heat map of how far each (κ, τ²) falls below the best log evidence, best marked.

    Differences span orders of magnitude on real data, so colour is log-scaled and each
    cell is labelled with its gap in nats. ``grid`` is ``{"Kappa": [nk], "Tau2": [nt],
    "LogEvidence": [[nt] * nk]}`` (sidecar ``EvidenceGrid``); returns None when it is
    absent or holds fewer than two finite values.
    """
    try:
        kappas = np.asarray(grid["Kappa"], dtype=float)
        tau2s = np.asarray(grid["Tau2"], dtype=float)
        evidence = np.array(grid["LogEvidence"], dtype=float)
    except (KeyError, TypeError, ValueError):
        return None
    if evidence.shape != (kappas.size, tau2s.size) or np.isfinite(evidence).sum() < 2:
        return None  # no grid searched (κ, τ² fixed): nothing to compare
    gap = np.nanmax(evidence) - evidence
    fig, ax = plt.subplots(figsize=(min(HALF_WIDTH, 0.75 * tau2s.size + 2.4),
                                    0.45 * kappas.size + 1.6))
    image = ax.imshow(
        gap + 1.0, origin="lower", aspect="auto", cmap="cividis_r", norm=matplotlib.colors.LogNorm()
    )
    for (i, j), value in np.ndenumerate(gap):
        label = "–" if not np.isfinite(value) else "best" if value == 0 else f"{value:.3g}"
        ax.text(j, i, label, ha="center", va="center", fontsize=8,
                color="black" if np.isfinite(value) and value < np.nanmax(gap) ** 0.5 else "white")
    ax.set_xticks(range(tau2s.size), [f"{t:.0e}" for t in tau2s], rotation=45)
    ax.set_yticks(range(kappas.size), [f"{k:.0e}" for k in kappas])
    ax.set_xlabel("τ²")
    ax.set_ylabel("κ (1/mm)")
    bar = fig.colorbar(image, ax=ax)
    bar.set_label("nats below best + 1")
    ax.set_title(title)
    return svg_bytes(fig)


def numeric_series(record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The entries of a JSON record that are numeric lists of length ≥ 2 (traces)."""
    out = {}
    for key, value in record.items():
        if isinstance(value, list) and len(value) >= 2:
            try:
                arr = np.asarray(value, dtype=float)
            except (TypeError, ValueError):
                continue
            if arr.ndim == 1 and np.isfinite(arr).any():
                out[key] = arr
    return out


def traces_figure(
    record: Mapping[str, Any], title: str, x_key: str | None = None, xlabel: str = "iteration"
) -> bytes | None:
    """One small panel per numeric trace of ``record`` (e.g. Newton objective and
    gradient norm per iteration); positive traces spanning decades get a log axis.

    With ``x_key`` naming one trace (e.g. frequencies), the others are overlaid against it.
    """
    series = numeric_series(record)
    x = series.pop(x_key, None) if x_key else None
    if x is not None:
        series = {k: v for k, v in series.items() if v.size == x.size}
    if not series:
        return None
    if x is not None:  # spectra on one frequency grid: overlay them to compare
        fig, ax = plt.subplots(figsize=(HALF_WIDTH, 3.0))
        for key, values in series.items():
            ax.plot(x, values, lw=1.2, label=key)
        _log_if_wide(ax, np.concatenate(list(series.values())))
        ax.set_xlabel(x_key)
        ax.legend()
        ax.set_title(title)
        return svg_bytes(fig)
    fig, axes = plt.subplots(1, len(series), figsize=(HALF_WIDTH, 2.6), squeeze=False)
    for ax, (key, values) in zip(axes[0], series.items(), strict=True):
        ax.plot(np.arange(values.size), values, marker="." if values.size < 50 else None, lw=1)
        _log_if_wide(ax, values)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel(xlabel)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return svg_bytes(fig)


def _log_if_wide(ax: plt.Axes, values: np.ndarray) -> None:
    """Log y axis for positive values spanning more than two decades (gradient norms)."""
    finite = values[np.isfinite(values)]
    if finite.size and (finite > 0).all() and finite.max() / finite.min() > 100:
        ax.set_yscale("log")


def histogram_figure(values: Mapping[str, np.ndarray], title: str, units: str = "") -> bytes:
    """Overlaid histograms of finite values (e.g. one per hemisphere)."""
    fig, ax = plt.subplots(figsize=(HALF_WIDTH, 3.0))
    for label, arr in values.items():
        finite = np.asarray(arr, dtype=float)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            ax.hist(finite, bins=40, alpha=0.6, label=label)
    ax.set_xlabel(units)
    ax.legend()
    ax.set_title(title)
    return svg_bytes(fig)


def spectrum_figure(envelope: Mapping[str, Any], title: str) -> bytes | None:
    """The data's log band spectra against the spectra the surrogate simulates at the
    estimates under its nuisance prior (the quality gate's ``SpectrumEnvelope``): where
    the data's median leaves the simulated 5–95 % band, the model does not fit."""
    try:
        freq = np.asarray(envelope["FrequencyHz"], dtype=float)
        data = {k: np.asarray(v, dtype=float) for k, v in envelope["Data"].items()}
        sims = {k: np.asarray(v, dtype=float) for k, v in envelope["Simulated"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    fig, ax = plt.subplots(figsize=(HALF_WIDTH, 3.2))
    ax.fill_between(freq, sims["P05"], sims["P95"], color="tab:blue", alpha=0.25,
                    label="model, 5–95 % of simulated")
    ax.plot(freq, sims["P50"], color="tab:blue", lw=1.2, label="model median")
    ax.fill_between(freq, data["P05"], data["P95"], color="tab:red", alpha=0.15,
                    label="data, 5–95 % of vertices")
    ax.plot(freq, data["P50"], color="tab:red", lw=1.8, label="data median")
    ax.set_xscale("log")  # the bands are log-spaced
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("log band power")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return svg_bytes(fig)


def carpet_figure(carpet: np.ndarray, tr: float, first_frame: int, title: str) -> bytes:
    """Carpet plot (fMRIPrep style) of z-scored cleaned series, one row per sampled
    vertex, on the run's time axis (s), rasterised."""
    carpet = np.asarray(carpet, dtype=float)
    n_rows, n_frames = carpet.shape
    start = first_frame * tr
    fig, ax = plt.subplots(figsize=(FULL_WIDTH, 2.6))
    ax.imshow(carpet, aspect="auto", cmap="gray", vmin=-2, vmax=2, interpolation="nearest",
              extent=(start, start + n_frames * tr, n_rows, 0), rasterized=True)
    ax.set_ylabel(f"{n_rows} vertices")
    ax.set_yticks([])
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    return svg_bytes(fig)


def confounds_figure(fd: np.ndarray | None, regressors: np.ndarray | None,
                     names: Sequence[str], tr: float, kept: tuple[int, int],
                     fd_threshold: float | None, title: str) -> bytes | None:
    """Framewise displacement and the regressors removed (z-scored, one row each) on the
    run's time axis; frames outside the analysed ``kept`` range are shaded."""
    panels = [p for p in ("fd", "reg") if (fd if p == "fd" else regressors) is not None]
    if not panels:
        return None
    heights = [1.0 if p == "fd" else max(1.0, 0.12 * len(names)) for p in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(FULL_WIDTH, 1.2 + 1.4 * sum(heights)),
                             sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        if panel == "fd":
            time = np.arange(len(fd)) * tr
            ax.plot(time, fd, lw=1, color="tab:red")
            ax.set_ylabel("FD (mm)")
            if fd_threshold is not None:
                ax.axhline(fd_threshold, color="k", lw=0.8, ls="--")
            total = len(fd)
        else:
            z = (regressors - regressors.mean(0)) / (regressors.std(0) + 1e-12)
            start = kept[0] * tr
            ax.imshow(z.T, aspect="auto", cmap="RdBu_r", vmin=-3, vmax=3,
                      interpolation="nearest", rasterized=True,
                      extent=(start, start + len(z) * tr, len(names), 0))
            ax.set_yticks(np.arange(len(names)) + 0.5, names, fontsize=6 if len(names) > 12
                          else 8)
            ax.set_ylabel("regressors")
            total = None
        if total is not None:
            for lo, hi in ((0, kept[0]), (kept[1], total)):
                if hi > lo:
                    ax.axvspan(lo * tr, hi * tr, color="0.85", zorder=0)
    axes[-1, 0].set_xlabel("time (s)")
    axes[0, 0].set_title(title)
    return svg_bytes(fig)
