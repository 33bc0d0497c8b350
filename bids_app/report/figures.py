"""Report figures as base64 PNG strings, so one HTML file carries all its images.

Everything renders headless with matplotlib's Agg backend (nilearn's matplotlib
engine for surfaces). Figures are small and low-dpi: a report is read on screen, and
rendering must stay a few seconds per participant.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless before pyplot: reports run on clusters without a display

import matplotlib.pyplot as plt
import numpy as np
from nilearn import plotting

Mesh = tuple[np.ndarray, np.ndarray]

_HEMI_NAME = {"L": "left", "R": "right"}
DPI = 72


def png_base64(fig: plt.Figure) -> str:
    """Encode a figure as base64 PNG text (for ``<img src="data:image/png;base64,...">``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


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


def surface_figure(
    meshes: Mapping[str, Mesh],
    values: Mapping[str, np.ndarray],
    title: str,
    units: str = "",
    cmap: str = "viridis",
    symmetric: bool = False,
    limits: tuple[float, float] | None = None,
) -> str:
    """Lateral and medial views of each hemisphere's map on its mesh, one colour bar.

    ``meshes`` and ``values`` are keyed by hemisphere ("L", "R"); values are full
    length per mesh with NaN where nothing was estimated (drawn uncoloured). Colour
    limits default to the 2nd–98th percentile (symmetric about 0 if asked).
    """
    hemis = [h for h in ("L", "R") if h in values and h in meshes]
    arrays = [np.asarray(values[h], dtype=float) for h in hemis]
    vmin, vmax = limits if limits is not None else _limits(arrays, symmetric)
    fig, axes = plt.subplots(
        1,
        2 * len(hemis),
        figsize=(2.6 * 2 * len(hemis), 2.4),
        subplot_kw={"projection": "3d"},
        squeeze=False,
    )
    for i, hemi in enumerate(hemis):
        data = np.asarray(values[hemi], dtype=float)
        vertices, faces = meshes[hemi]
        for j, view in enumerate(("lateral", "medial")):
            mesh = (np.array(vertices, dtype=float), np.asarray(faces))  # nilearn edits it
            plotting.plot_surf_stat_map(
                mesh,
                data,
                hemi=_HEMI_NAME[hemi],
                view=view,
                axes=axes[0, 2 * i + j],
                figure=fig,
                colorbar=False,
                cmap=cmap,
                vmin=vmin,
                vmax=vmax,
                symmetric_cbar=False,
                engine="matplotlib",
            )
            axes[0, 2 * i + j].set_title(f"{hemi} {view}", fontsize=8)
    fig.subplots_adjust(left=0.0, right=0.9, wspace=-0.05)
    mappable = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(vmin, vmax))
    bar = fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.6, pad=0.01)
    bar.set_label(units, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9, y=1.04)
    return png_base64(fig)


def evidence_figure(grid: Mapping[str, Any], title: str = "Laplace log evidence") -> str | None:
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
    fig, ax = plt.subplots(figsize=(0.6 * tau2s.size + 2.2, 0.45 * kappas.size + 1.6))
    image = ax.imshow(
        gap + 1.0, origin="lower", aspect="auto", cmap="cividis_r", norm=matplotlib.colors.LogNorm()
    )
    for (i, j), value in np.ndenumerate(gap):
        label = "–" if not np.isfinite(value) else "best" if value == 0 else f"{value:.3g}"
        ax.text(
            j,
            i,
            label,
            ha="center",
            va="center",
            fontsize=6,
            color="black" if np.isfinite(value) and value < np.nanmax(gap) ** 0.5 else "white",
        )
    ax.set_xticks(range(tau2s.size), [f"{t:.0e}" for t in tau2s], fontsize=7, rotation=45)
    ax.set_yticks(range(kappas.size), [f"{k:.0e}" for k in kappas], fontsize=7)
    ax.set_xlabel("τ²", fontsize=8)
    ax.set_ylabel("κ (1/mm)", fontsize=8)
    bar = fig.colorbar(image, ax=ax)
    bar.set_label("nats below best + 1", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    return png_base64(fig)


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
) -> str | None:
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
        fig, ax = plt.subplots(figsize=(3.6, 2.4))
        for key, values in series.items():
            ax.plot(x, values, lw=1, label=key)
        _log_if_wide(ax, np.concatenate(list(series.values())))
        ax.set_xlabel(x_key, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
        return png_base64(fig)
    fig, axes = plt.subplots(1, len(series), figsize=(2.6 * len(series), 2.2), squeeze=False)
    for ax, (key, values) in zip(axes[0], series.items(), strict=True):
        ax.plot(np.arange(values.size), values, marker="." if values.size < 50 else None, lw=1)
        _log_if_wide(ax, values)
        ax.set_title(key, fontsize=8)
        ax.set_xlabel(xlabel, fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return png_base64(fig)


def _log_if_wide(ax: plt.Axes, values: np.ndarray) -> None:
    """Log y axis for positive values spanning more than two decades (gradient norms)."""
    finite = values[np.isfinite(values)]
    if finite.size and (finite > 0).all() and finite.max() / finite.min() > 100:
        ax.set_yscale("log")


def histogram_figure(values: Mapping[str, np.ndarray], title: str, units: str = "") -> str:
    """Overlaid histograms of finite values (e.g. one per hemisphere)."""
    fig, ax = plt.subplots(figsize=(3.4, 2.4))
    for label, arr in values.items():
        finite = np.asarray(arr, dtype=float)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            ax.hist(finite, bins=40, alpha=0.6, label=label)
    ax.set_xlabel(units, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return png_base64(fig)
