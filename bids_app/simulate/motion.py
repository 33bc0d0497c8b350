"""Head-motion and tissue confounds in fMRIPrep's ``desc-confounds_timeseries`` layout.

Simulated motion is added to the simulated BOLD (each vertex gets its own random mix
of the six parameters), so confound regression in the app has real work to do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
TISSUE_COLUMNS = ("global_signal", "csf", "white_matter")
# Power et al. (2012) framewise displacement: rotations as arc length on a 50 mm sphere.
HEAD_RADIUS_MM = 50.0
N_COMPCOR = 5


def simulate_motion(n_frames: int, tr: float, rng: np.random.Generator) -> np.ndarray:
    """Realignment parameters (n_frames, 6): translations in mm, rotations in rad.

    A slow random-walk drift (0.02 mm per √s), AR(1) jitter (sd 0.04 mm) and a few
    abrupt jumps (about one per 2 min, sd 0.3 mm); rotations are the same process
    divided by the 50 mm head radius. The first frame is the reference (all zero).
    """
    drift = np.cumsum(rng.normal(0.0, 0.02 * np.sqrt(tr), (n_frames, 6)), axis=0)
    jitter = np.zeros((n_frames, 6))
    innovations = rng.normal(0.0, 0.04 * np.sqrt(1 - 0.8**2), (n_frames, 6))
    for t in range(1, n_frames):  # a loop over frames for six series
        jitter[t] = 0.8 * jitter[t - 1] + innovations[t]
    jump_frames = rng.random(n_frames) < tr / 120.0
    jumps = np.cumsum(jump_frames[:, None] * rng.normal(0.0, 0.3, (n_frames, 6)), axis=0)
    motion = drift + jitter + jumps
    motion -= motion[0]
    motion[:, 3:] /= HEAD_RADIUS_MM
    return motion


def framewise_displacement(motion: np.ndarray) -> np.ndarray:
    """Power FD in mm per frame (first frame NaN): Σ|Δtrans| + 50 mm·Σ|Δrot|."""
    step = np.abs(np.diff(motion, axis=0))
    fd = step[:, :3].sum(axis=1) + HEAD_RADIUS_MM * step[:, 3:].sum(axis=1)
    return np.concatenate([[np.nan], fd])


def standardized(x: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit sd (constant columns left at zero)."""
    centred = x - x.mean(axis=0)
    sd = centred.std(axis=0)
    return centred / np.where(sd > 0, sd, 1.0)


def contaminate(y: np.ndarray, motion: np.ndarray, strength: float,
                rng: np.random.Generator) -> np.ndarray:
    """Add a random per-vertex mix of the standardised motion traces to series (V, T).

    Each vertex gets weights N(0, strength²·sd_v²/6) on the six traces, so motion
    carries about ``strength``² of the series' own variance.
    """
    weights = rng.standard_normal((y.shape[0], 6)) * (strength / np.sqrt(6.0))
    weights *= y.std(axis=1, keepdims=True)
    return y + weights @ standardized(motion).T


def confounds_table(motion: np.ndarray, global_signal: np.ndarray,
                    rng: np.random.Generator) -> pd.DataFrame:
    """fMRIPrep-style confounds: tissue signals, aCompCor, FD and motion expansions.

    CSF and white-matter signals are a baseline plus motion and smooth noise; the
    aCompCor columns are orthonormal mixtures of the same sources.
    """
    n_frames = motion.shape[0]
    z_motion = standardized(motion)
    smooth = np.cumsum(rng.standard_normal((n_frames, 4)), axis=0)
    smooth = standardized(smooth - np.linspace(0, 1, n_frames)[:, None] * smooth[-1])
    csf = 800.0 + 8.0 * (z_motion @ rng.normal(size=6) / 6 + smooth[:, 0])
    wm = 600.0 + 4.0 * (z_motion @ rng.normal(size=6) / 6 + smooth[:, 1])
    base = {"global_signal": global_signal, "csf": csf, "white_matter": wm}
    base.update({name: motion[:, k] for k, name in enumerate(MOTION_COLUMNS)})
    columns: dict[str, np.ndarray] = {}
    for name, values in base.items():
        derivative = np.concatenate([[np.nan], np.diff(values)])
        columns[name] = values
        columns[f"{name}_derivative1"] = derivative
        columns[f"{name}_power2"] = values**2
        columns[f"{name}_derivative1_power2"] = derivative**2
    sources = np.column_stack([z_motion, smooth, rng.standard_normal((n_frames, 2))])
    mixed = sources @ rng.standard_normal((sources.shape[1], N_COMPCOR))
    compcor, _ = np.linalg.qr(mixed - mixed.mean(axis=0))
    for k in range(N_COMPCOR):
        columns[f"a_comp_cor_{k:02d}"] = compcor[:, k]
    columns["framewise_displacement"] = framewise_displacement(motion)
    return pd.DataFrame(columns)
