"""Population modes: functional PCA of participant maps on the mesh, mass-weighted.

Maps are functions on the cortex, so their inner product is ⟨f, g⟩ = fᵀMg with M the
lumped FEM mass (mm² per vertex, ``bids_app.prior.mesh``). PCA in that inner product is
ordinary PCA of Y·M^½; scikit-learn's IncrementalPCA fits it from batches of participants,
so memory does not grow with their number. Modes are returned as φ·√A (unit mean square
over the surface, A the area) and scores as ⟨y − ȳ, φ⟩_M / √A, in the map's units: a
participant's map ≈ mean + Σ score · mode. Only vertices every participant has enter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import IncrementalPCA

Batches = Callable[[], Iterator[np.ndarray]]
"""Returns a fresh iterator over (participants, vertices) batches, in a fixed order."""


@dataclass
class Modes:
    """Mean map, modes (components, vertices), variance explained, scores (n, components)."""

    mean: np.ndarray
    modes: np.ndarray
    explained_ratio: np.ndarray
    explained_variance: np.ndarray
    scores: np.ndarray


def population_modes(batches: Batches, mass: np.ndarray, n_components: int) -> Modes | None:
    """Fit the weighted PCA over two passes of ``batches``; None when it cannot be fitted.

    ``mass`` is per vertex (NaN or 0 where the vertex is not on the modelled cortex). Each
    batch must hold at least ``n_components`` participants (IncrementalPCA's rule).
    """
    mass = np.asarray(mass, float)
    common = np.isfinite(mass) & (mass > 0)
    for batch in batches():
        common &= np.isfinite(batch).all(axis=0)
    if common.sum() <= n_components:
        return None
    root = np.sqrt(mass[common])
    area = float(mass[common].sum())
    pca = IncrementalPCA(n_components=n_components)
    for batch in batches():
        pca.partial_fit(batch[:, common] * root)
    scores = np.concatenate([pca.transform(b[:, common] * root) for b in batches()])
    full = np.full((n_components, mass.shape[0]), np.nan)
    full[:, common] = pca.components_ / root * np.sqrt(area)
    mean = np.full(mass.shape[0], np.nan)
    mean[common] = pca.mean_ / root
    return Modes(
        mean=mean,
        modes=full,
        explained_ratio=pca.explained_variance_ratio_,
        explained_variance=pca.explained_variance_ / area,
        scores=scores / np.sqrt(area),
    )
