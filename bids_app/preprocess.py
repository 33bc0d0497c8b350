"""The one denoising function, applied identically to real and simulated series.

The surrogate learns p(summary | θ) from simulations; that density is only valid for
real data if both went through exactly the same cleaning. So the simulator and the
participant workflow both call :func:`clean` with the same :class:`Preprocessing`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import butter, sosfiltfilt


@dataclass(frozen=True)
class Preprocessing:
    """Cleaning recipe; stored in model cards and sidecars via :meth:`to_dict`.

    Attributes
    ----------
    detrend_order : int
        Order of the Legendre polynomial drift removed (0 = mean only).
    highpass : float or None
        Cut-off in Hz of a discrete-cosine high-pass basis regressed out with the
        drift and confounds (fMRIPrep's cosine regressors use 1/128 Hz).
    lowpass : float or None
        Cut-off in Hz of a zero-phase Butterworth low-pass applied to data and
        confounds before regression; None keeps every frequency.
    """

    detrend_order: int = 2
    highpass: float | None = 1.0 / 128.0
    lowpass: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def nuisance_basis(n_frames: int, tr: float, spec: Preprocessing) -> np.ndarray:
    """Drift and high-pass regressors (n_frames × k), orthonormal columns."""
    t = np.linspace(-1.0, 1.0, n_frames)
    columns = [np.polynomial.legendre.legval(t, np.eye(spec.detrend_order + 1)[k])
               for k in range(spec.detrend_order + 1)]
    if spec.highpass:
        # DCT-II regressors with period longer than 1/highpass (SPM's spm_filter).
        n_cos = int(np.floor(2 * n_frames * tr * spec.highpass))
        n = np.arange(n_frames)
        columns += [np.cos(np.pi * k * (2 * n + 1) / (2 * n_frames)) for k in range(1, n_cos + 1)]
    return orthonormal_basis(np.column_stack(columns))


def orthonormal_basis(x: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the column space of ``x``, dropping collinear columns."""
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    return u[:, s > s[0] * 1e-10]


def lowpass_filter(x: np.ndarray, tr: float, cutoff: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth low-pass along the last axis; no-op at or above Nyquist."""
    nyquist = 0.5 / tr
    if cutoff >= nyquist:
        return x
    sos = butter(order, cutoff / nyquist, btype="low", output="sos")
    return sosfiltfilt(sos, x, axis=-1)


def clean(
    y: np.ndarray,
    tr: float,
    spec: Preprocessing = Preprocessing(),
    confounds: np.ndarray | None = None,
) -> np.ndarray:
    """Denoise and z-score time series.

    Parameters
    ----------
    y : array (..., n_frames)
        Series along the last axis (vertices first).
    tr : float
        Repetition time in seconds.
    spec : Preprocessing
        The recipe; must equal the surrogate's training recipe.
    confounds : array (n_frames, n_confounds), optional
        Nuisance regressors, removed together with drift and high-pass terms.

    Returns
    -------
    array (..., n_frames), float32
        Residuals scaled to unit variance over time; series with no variance left
        are returned as zeros (callers mask them).
    """
    y = np.asarray(y, dtype=np.float64)
    resid = residualise(y, tr, spec, confounds)
    sd = resid.std(axis=-1, keepdims=True)
    tiny = sd <= 1e-8 * (np.abs(y).max(axis=-1, keepdims=True) + 1e-30)
    out = np.where(tiny, 0.0, resid / np.where(tiny, 1.0, sd))
    return out.astype(np.float32)


def residualise(y: np.ndarray, tr: float, spec: Preprocessing = Preprocessing(),
                confounds: np.ndarray | None = None) -> np.ndarray:
    """:func:`clean` before the z-scoring: the recipe is linear up to there, which
    lets a spectrum model add cleaned signal and noise (float64 residuals)."""
    y = np.asarray(y, dtype=np.float64)
    n_frames = y.shape[-1]
    if spec.lowpass:
        y = lowpass_filter(y, tr, spec.lowpass)
    regressors = nuisance_basis(n_frames, tr, spec)
    if confounds is not None and confounds.size:
        conf = np.asarray(confounds, dtype=np.float64)
        if spec.lowpass:
            conf = lowpass_filter(conf.T, tr, spec.lowpass).T
        regressors = orthonormal_basis(np.column_stack([regressors, conf]))
    return y - (y @ regressors) @ regressors.T


def usable_rows(y: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Rows with finite, non-constant series (not the medial wall), and counts of each
    exclusion reason."""
    finite = np.isfinite(y).all(axis=1)
    constant = np.zeros(len(y), dtype=bool)
    constant[finite] = np.ptp(y[finite], axis=1) <= 1e-6 * (np.abs(y[finite]).max(axis=1) + 1e-12)
    return finite & ~constant, {"NonFinite": int((~finite).sum()),
                                "Constant": int(constant.sum())}
