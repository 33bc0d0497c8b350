"""Confound regressors and frame selection from fMRIPrep's ``desc-confounds_timeseries.tsv``.

Frame selection is honest about time: the surrogate summarises a power spectrum, which
assumes equally spaced, contiguous frames. Splicing out high-motion frames would create
jumps the spectrum reads as signal, so with ``--fd-threshold`` we keep the **longest
contiguous run of low-motion frames** (after dropping non-steady-state frames) and
analyse that segment only; the workflow refuses it if it is shorter than the surrogate
allows (exit 16).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bids_app.errors import InputValidationError, MissingInputError

LOGGER = logging.getLogger(__name__)
MOTION = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
TISSUE = ("csf", "white_matter", "global_signal")
N_COMPCOR = 5  # components per tissue for aCompCor (WM and CSF), as in XCP-D


@dataclass(frozen=True)
class FrameSelection:
    """Which frames to analyse and which regressors to remove from them.

    Attributes
    ----------
    start, stop : int
        The analysed segment is frames ``start:stop`` of the original run.
    regressors : array (stop - start, k) or None
        Confounds restricted to the segment; None when the strategy is ``none``.
    names : tuple of str
        Regressor names (for sidecars and reports).
    n_dummy : int
        Initial non-steady-state frames dropped.
    n_high_motion : int
        Frames above the FD threshold in the run (after the dummy frames).
    interpolated : dict
        Column → how many of its ``n/a`` cells after the first row were filled by
        linear interpolation (see :func:`fill_gaps`).
    """

    start: int
    stop: int
    regressors: np.ndarray | None
    names: tuple[str, ...]
    n_dummy: int
    n_high_motion: int
    interpolated: dict[str, int] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return self.stop - self.start

    @property
    def n_regressors(self) -> int:
        """Confound columns removed; the surrogate is conditioned on this count."""
        return 0 if self.regressors is None else int(self.regressors.shape[1])

    def summary(self) -> dict:
        """JSON-ready description for sidecars and the report."""
        return {"FirstFrame": self.start, "NumberOfFrames": self.n_frames,
                "DummyScans": self.n_dummy, "HighMotionFrames": self.n_high_motion,
                "Confounds": list(self.names), "NumberOfRegressors": self.n_regressors,
                **({"InterpolatedConfounds": dict(self.interpolated)} if self.interpolated
                   else {})}


def select_frames(
    path: Path | None,
    n_frames: int,
    strategy: str = "24P",
    fd_threshold: float | None = None,
    dummy_scans: int | None = None,
    run: str = "this run",
) -> FrameSelection:
    """Read confounds, drop dummy frames, censor motion, and build the strategy's regressors.

    Parameters
    ----------
    path : Path or None
        The run's ``desc-confounds_timeseries.tsv``; may be None only with strategy
        ``none``, no FD threshold (then only ``dummy_scans`` frames are dropped).
    n_frames : int
        Frames in the BOLD series; the TSV must have as many rows.
    strategy : {'24P', '36P', 'acompcor', 'none'}
        24P: 6 motion + derivatives + squares of both; 36P: 24P + CSF, WM and global
        signal expanded the same way; acompcor: 6 motion + derivatives + 5 WM and
        5 CSF aCompCor components; none: no regression.
    fd_threshold : float, optional
        Framewise displacement in mm above which a frame counts as high-motion.
    dummy_scans : int, optional
        Initial frames to drop; default: the ``non_steady_state_outlier*`` columns.
    run : str
        The run's name (its BOLD file) for error messages.
    """
    if path is None:
        if strategy != "none" or fd_threshold is not None:
            raise MissingInputError(
                f"no desc-confounds_timeseries.tsv found for {run}; "
                "use --confounds none without --fd-threshold, or add the fMRIPrep confounds"
            )
        start = dummy_scans or 0
        return FrameSelection(start, n_frames, None, (), start, 0)

    table = read_confounds(path)
    if len(table) != n_frames:
        raise InputValidationError(
            f"{path} has {len(table)} rows but its BOLD run has {n_frames} frames; "
            "pass the confounds fMRIPrep wrote for this run"
        )
    dummy = dummy_scans if dummy_scans is not None else _non_steady_state(table)
    high = np.zeros(n_frames, dtype=bool)
    if fd_threshold is not None:
        fd = _columns(table, ("framewise_displacement",), path)[:, 0]
        high = np.nan_to_num(fd) > fd_threshold
    start, stop = longest_run(~high, dummy)
    if stop - start < n_frames - dummy:
        LOGGER.info("%s: analysing frames %d-%d, the longest low-motion segment",
                    path.name, start, stop - 1)
    names, regressors = strategy_regressors(table, strategy, path)
    read = [n for n in names if n in table and not n.endswith(_DERIVED)]
    return FrameSelection(
        start, stop, None if regressors is None else regressors[start:stop], names,
        dummy, int(high[dummy:].sum()),
        {n: count for n in read if (count := len(_gaps(table[n].to_numpy(float))))},
    )


_DERIVED = ("_derivative1", "_power2")  # computed here from the base columns, never read


def read_confounds(path: Path) -> pd.DataFrame:
    """The confounds TSV; a file pandas cannot parse is exit 16 naming it."""
    try:
        return pd.read_csv(path, sep="\t", na_values=["n/a"])
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputValidationError(
            f"{path} is not a tab-separated table ({str(err).splitlines()[0]}); "
            "re-export it from fMRIPrep"
        ) from err


def _gaps(values: np.ndarray) -> np.ndarray:
    """Indices of NaN after the first finite value (a leading n/a is fMRIPrep's convention
    for derivative-like columns and stays as it was)."""
    finite = np.flatnonzero(np.isfinite(values))
    if finite.size == 0:
        return np.flatnonzero(np.isnan(values))
    missing = np.flatnonzero(np.isnan(values))
    return missing[missing > finite[0]]


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN after the first finite value (the last value held
    after the last one); NaN in the leading rows are kept."""
    values = np.array(values, dtype=np.float64)
    gaps = _gaps(values)
    finite = np.flatnonzero(np.isfinite(values))
    if gaps.size and finite.size:
        values[gaps] = np.interp(gaps, finite, values[finite])
    return values


def longest_run(good: np.ndarray, first: int = 0) -> tuple[int, int]:
    """Bounds ``(start, stop)`` of the longest run of True in ``good[first:]``."""
    padded = np.concatenate([[False], good[first:], [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    if edges.size == 0:
        return first, first
    starts, stops = edges[0::2], edges[1::2]
    best = int(np.argmax(stops - starts))
    return first + int(starts[best]), first + int(stops[best])


def _non_steady_state(table: pd.DataFrame) -> int:
    """Leading frames flagged by fMRIPrep's ``non_steady_state_outlier*`` columns."""
    flags = table.filter(like="non_steady_state_outlier")
    if flags.empty:
        return 0
    flagged = flags.fillna(0).to_numpy().any(axis=1)
    return int(np.argmin(flagged)) if not flagged.all() else len(flagged)


# n/a filled by interpolation, already reported: (file, column, count); the workflow
# reads each table twice (validation, then the fit) and should say it once.
_REPORTED: set[tuple[str, str, int]] = set()


def _columns(table: pd.DataFrame, names: tuple[str, ...], path: Path) -> np.ndarray:
    """The named columns as floats; a non-numeric cell is exit 16 naming it, and an ``n/a``
    after the first row is interpolated (:func:`fill_gaps`) with a warning."""
    missing = [n for n in names if n not in table]
    if missing:
        raise MissingInputError(
            f"{path} lacks column(s) {', '.join(missing)}; choose another --confounds strategy"
        )
    columns = []
    for name in names:
        raw = table[name]
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = numbers.isna() & raw.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputValidationError(
                f"{path}: column {name} holds {raw.iloc[row]!r} on line {row + 2}, not a "
                "number; fix the cell (write n/a for a missing value)"
            )
        values = numbers.to_numpy(dtype=np.float64)
        gaps = _gaps(values)
        if gaps.size:
            if (str(path), name, gaps.size) not in _REPORTED:
                _REPORTED.add((str(path), name, gaps.size))
                LOGGER.warning("%s: %d n/a in column %s after the first row (line %d); filled "
                               "by linear interpolation", path, gaps.size, name, gaps[0] + 2)
            values = fill_gaps(values)
        columns.append(values)
    return np.column_stack(columns) if columns else np.empty((len(table), 0))


def expand(base: np.ndarray) -> np.ndarray:
    """Base regressors, their backward differences, and squares of both (Friston 24P)."""
    base = np.nan_to_num(base)
    deriv = np.vstack([np.zeros((1, base.shape[1])), np.diff(base, axis=0)])
    return np.hstack([base, deriv, base**2, deriv**2])


def strategy_regressors(table: pd.DataFrame, strategy: str, path: Path | str = "confounds"
                        ) -> tuple[tuple[str, ...], np.ndarray | None]:
    """Names and regressors (n_frames, k) of a strategy from a confounds table.

    The one implementation of the strategies: the participant workflow applies it to
    fMRIPrep's TSV and the surrogate's training to simulated tables, so both remove
    the same kind of regressors. ``path`` names the source in error messages.
    """
    path = Path(path)
    if strategy == "none":
        return (), None
    motion = _columns(table, MOTION, path)
    if strategy == "24P":
        return _expanded_names(MOTION), expand(motion)
    if strategy == "36P":
        base = np.hstack([motion, _columns(table, TISSUE, path)])
        return _expanded_names(MOTION + TISSUE), expand(base)
    if strategy == "acompcor":
        motion12 = expand(motion)[:, :12]
        comps = _compcor_columns(table, path)
        names = _expanded_names(MOTION)[:12] + comps
        return names, np.hstack([motion12, _columns(table, comps, path)])
    raise ValueError(f"unknown confound strategy {strategy}")


def _expanded_names(base: tuple[str, ...]) -> tuple[str, ...]:
    return (base + tuple(f"{n}_derivative1" for n in base) + tuple(f"{n}_power2" for n in base)
            + tuple(f"{n}_derivative1_power2" for n in base))


def _compcor_columns(table: pd.DataFrame, path: Path) -> tuple[str, ...]:
    """First aCompCor components of WM and CSF (fMRIPrep ≥20: ``w_``/``c_comp_cor``)."""
    split = [c for prefix in ("w_comp_cor_", "c_comp_cor_")
             for c in sorted(table.columns[table.columns.str.startswith(prefix)])[:N_COMPCOR]]
    if split:
        return tuple(split)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():  # older fMRIPrep: a_comp_cor_XX with the mask in the JSON
        meta = json.loads(sidecar.read_text())
        chosen = []
        for mask in ("WM", "CSF"):
            names = sorted(k for k, v in meta.items()
                           if k.startswith("a_comp_cor_") and v.get("Mask") == mask)
            chosen += names[:N_COMPCOR]
        if chosen:
            return tuple(chosen)
    combined = sorted(table.columns[table.columns.str.startswith("a_comp_cor_")])
    if not combined:
        raise MissingInputError(f"{path} has no aCompCor columns; choose --confounds 24P or 36P")
    return tuple(combined[: 2 * N_COMPCOR])
