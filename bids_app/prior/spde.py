"""Matérn SPDE prior (α = 2, ν = 1) on a mesh: θ̃ ~ N(0, Q(κ, τ²)⁻¹).

Q(κ, τ²) = τ² (κ²C + G) C⁻¹ (κ²C + G) = τ² (κ⁴ C + 2κ² G + G C⁻¹ G), with C the
lumped mass and G the cotangent stiffness (docs/method.md §4). κ is in 1/mm (range
√8/κ mm), τ² scales the precision; the marginal variance on an unbounded surface is
1/(4π κ² τ²). All Q share one sparsity pattern, so one symbolic analysis serves every
(κ, τ²) and every Newton system built on Q.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from bids_app.prior.cholesky import SparseCholesky
from bids_app.prior.mesh import FEM
from bids_app.prior.pattern import on_pattern, union_pattern, with_data


class SPDEPrior:
    """The SPDE precision family of one mesh.

    Parameters
    ----------
    fem : FEM
        Mass and stiffness of the kept vertices (see :func:`fem_matrices`).
    backend : str, optional
        Sparse Cholesky backend passed to :class:`SparseCholesky`.
    """

    def __init__(self, fem: FEM, backend: str | None = None) -> None:
        self.fem = fem
        self.backend = backend
        C = sp.diags(fem.C, format="csc")
        H = sp.csc_matrix(fem.G @ sp.diags(1.0 / fem.C) @ fem.G)
        self.pattern = union_pattern(C, fem.G, H)
        self._c = on_pattern(self.pattern, C)
        self._g = on_pattern(self.pattern, fem.G)
        self._h = on_pattern(self.pattern, H)
        self._operator = union_pattern(C, fem.G)  # pattern of κ²C + G
        self._op_c = on_pattern(self._operator, C)
        self._op_g = on_pattern(self._operator, fem.G)
        self._chol_q = SparseCholesky(backend)
        self._chol_k = SparseCholesky(backend)

    @property
    def n_vertices(self) -> int:
        """Size of the field (kept vertices)."""
        return self.fem.n_vertices

    def precision(self, kappa: float, tau2: float) -> sp.csc_matrix:
        """Q(κ, τ²), CSC on the fixed pattern :attr:`pattern` (κ in 1/mm)."""
        _check(kappa, tau2)
        k2 = kappa * kappa
        return with_data(self.pattern, tau2 * (k2 * k2 * self._c + 2.0 * k2 * self._g + self._h))

    def logdet_precision(self, kappa: float, tau2: float) -> float:
        """log det Q(κ, τ²) = n log τ² + 2 log det(κ²C + G) − Σ log C.

        The operator κ²C + G is sparser than Q, so this factorises the cheaper matrix.
        """
        _check(kappa, tau2)
        op = with_data(self._operator, kappa * kappa * self._op_c + self._op_g)
        logdet_k = self._chol_k.factorize(op).logdet()
        return self.n_vertices * np.log(tau2) + 2.0 * logdet_k - np.log(self.fem.C).sum()

    @staticmethod
    def marginal_variance(kappa: float, tau2: float) -> float:
        """1/(4π κ² τ²): the stationary variance on an unbounded surface.

        On a closed or bounded surface smaller than the range √8/κ the GMRF variance
        is larger (the near-constant modes are weakly penalised); use
        :meth:`variance` for the exact value of the discretised field.
        """
        _check(kappa, tau2)
        return 1.0 / (4.0 * np.pi * kappa * kappa * tau2)

    def variance(self, kappa: float, tau2: float) -> np.ndarray:
        """Exact marginal variances diag(Q⁻¹) by dense inversion (small meshes only)."""
        if self.n_vertices > 5000:
            raise ValueError("variance() is dense; use it on meshes of ≤ 5000 vertices")
        return np.diag(np.linalg.inv(self.precision(kappa, tau2).toarray()))

    def sample(self, kappa: float, tau2: float, rng: np.random.Generator | int | None,
               n: int = 1) -> np.ndarray:
        """``n`` exact draws θ̃ ~ N(0, Q(κ, τ²)⁻¹), shape (n_vertices, n).

        Uses the sparse Cholesky factor of Q with its fill-reducing permutation undone.
        The same seed gives the same draws for the same Cholesky backend and ordering
        (a different factor maps the same normal deviates to another, equally exact,
        draw).
        """
        self._chol_q.factorize(self.precision(kappa, tau2))
        return self._chol_q.sample(rng, n)


def _check(kappa: float, tau2: float) -> None:
    if not (np.isfinite(kappa) and kappa > 0 and np.isfinite(tau2) and tau2 > 0):
        raise ValueError(f"need κ > 0 and τ² > 0, got κ={kappa}, τ²={tau2}")
