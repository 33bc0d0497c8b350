"""Simulated confound regressors for the surrogate's training simulations.

The app regresses fMRIPrep confounds out of every run before summarising; with a few
hundred frames that removes low-frequency power the summary would otherwise read as
HRF shape. So training series go through the same removal: each protocol draw gets a
simulated fMRIPrep-style confounds table (simulated head motion, smooth tissue
signals, WM and CSF aCompCor components) and the regressors of a confound strategy are
taken from it by :func:`bids_app.io.confounds.strategy_regressors`, the function the
workflow applies to real TSVs, so the two cannot drift apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bids_app.io.confounds import strategy_regressors
from bids_app.simulate.motion import (
    N_COMPCOR,
    confounds_table,
    simulate_motion,
    standardized,
)

STRATEGIES = ("none", "24P", "36P", "acompcor")
# Columns each strategy removes (fMRIPrep ≥ 20 tables; checked against the tables in tests).
STRATEGY_WIDTHS = {"none": 0, "24P": 24, "36P": 36, "acompcor": 22}


def simulated_confounds(n_frames: int, tr: float, rng: np.random.Generator,
                        shared: np.ndarray | None = None) -> pd.DataFrame:
    """A confounds table like fMRIPrep's for one simulated run.

    ``shared``, the run's common fluctuation (unit variance), when given, is the global
    signal's slow part (so global signal regression removes it, as on real data).

    Adds fMRIPrep ≥ 20's split ``w_comp_cor_XX``/``c_comp_cor_XX`` columns (five each,
    orthonormal mixtures of motion and smooth noise) to
    :func:`bids_app.simulate.motion.confounds_table`, so ``acompcor`` has its real
    width (6 motion + derivatives + 10 components).
    """
    motion = simulate_motion(n_frames, tr, rng)
    smooth = standardized(np.cumsum(rng.standard_normal(n_frames)) if shared is None
                          else np.asarray(shared, dtype=float))[:, None]
    global_signal = 1000.0 + 5.0 * (smooth[:, 0] + standardized(motion) @ rng.normal(size=6) / 6)
    table = confounds_table(motion, global_signal, rng)
    sources = np.column_stack([standardized(motion), smooth,
                               standardized(np.cumsum(rng.standard_normal((n_frames, 2)),
                                                      axis=0))])
    for prefix in ("w_comp_cor_", "c_comp_cor_"):
        mixed = sources @ rng.standard_normal((sources.shape[1], N_COMPCOR))
        components, _ = np.linalg.qr(mixed - mixed.mean(axis=0))
        for k in range(N_COMPCOR):
            table[f"{prefix}{k:02d}"] = components[:, k]
    return table


def simulated_regressors(strategy: str, n_frames: int, tr: float, rng: np.random.Generator
                         ) -> np.ndarray | None:
    """Regressors (n_frames, k) of ``strategy`` from a fresh simulated table (None: none)."""
    if strategy == "none":
        return None
    table = simulated_confounds(n_frames, tr, rng)
    return strategy_regressors(table, strategy, "simulated confounds")[1]


def regressors_of_count(n_regressors: int, n_frames: int, tr: float,
                        rng: np.random.Generator, shared: np.ndarray | None = None
                        ) -> np.ndarray | None:
    """A simulated regressor set with ``n_regressors`` columns.

    The strategy of that width when there is one (24P: 24, 36P: 36, acompcor: 22);
    otherwise the first columns of the 36P and acompcor sets side by side (other
    aCompCor layouts), so a run's count alone reproduces what was removed. ``shared``
    as in :func:`simulated_confounds`.
    """
    if n_regressors <= 0:
        return None
    table = simulated_confounds(n_frames, tr, rng, shared)
    sets = {s: strategy_regressors(table, s, "simulated confounds")[1] for s in STRATEGIES[1:]}
    for regressors in sets.values():
        if regressors.shape[1] == n_regressors:
            return regressors
    pool = np.hstack([sets["36P"], sets["acompcor"]])
    return pool[:, :n_regressors]
