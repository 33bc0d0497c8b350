"""Sparse Cholesky of SPD precision matrices, with the symbolic analysis reused.

Newton iterations, evidence grid points and bootstrap refits all factorise matrices
with one sparsity pattern, so the fill-reducing ordering (and, with CHOLMOD, the whole
symbolic factorisation) is computed once per pattern and reused.

Backends: CHOLMOD through scikit-sparse when importable, else SciPy's SuperLU used as
an LDLᵀ factorisation (symmetric ordering, no pivoting: ``diag_pivot_thresh=0``).
``backend="superlu"`` or the environment variable ``HEMOCOUPLING_CHOLESKY=superlu``
forces the fallback (tests cover both).

Sampling: with the ordering p, A[p][:, p] = L Lᵀ, so x_p = L⁻ᵀ z has covariance
(A[p][:, p])⁻¹ and x[p] = x_p has covariance A⁻¹ — the permutation must be undone,
which the research scripts forgot (docs/method.md §6).
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from threadpoolctl import ThreadpoolController

try:
    from sksparse import cholmod as _cholmod
except ImportError:  # optional dependency (needs SuiteSparse headers to build)
    _cholmod = None

BACKEND_ENV = "HEMOCOUPLING_CHOLESKY"
# Triangular solves with a held factor run on one BLAS thread whatever --omp-nthreads
# says: on fsLR 32k a second OpenBLAS thread made each solve ~6× slower (seed 1 of the
# issue 7 study, quiet 2-core machine: 51.5 s with two threads, 29.7 s with solves on
# one, 28.1 s all on one), and the MAP does ~10 solves per factorisation.
_BLAS = ThreadpoolController()


def available_backends() -> tuple[str, ...]:
    """Backends usable in this environment, fastest first."""
    return ("cholmod", "superlu") if _cholmod is not None else ("superlu",)


class SparseCholesky:
    """Factorisation of a symmetric positive-definite sparse matrix A.

    Parameters
    ----------
    backend : {"cholmod", "superlu"}, optional
        Default: ``$HEMOCOUPLING_CHOLESKY`` if set, else CHOLMOD when installed.
    ordering : str
        CHOLMOD fill-reducing ordering; METIS nested dissection gives the smallest
        factors on cortical meshes (≈ 2× faster refactorisation than AMD on fsLR 32k).
        Falls back to CHOLMOD's default when METIS is not compiled in.
    """

    def __init__(self, backend: str | None = None, ordering: str = "metis") -> None:
        backend = backend or os.environ.get(BACKEND_ENV) or available_backends()[0]
        if backend not in ("cholmod", "superlu"):
            raise ValueError(f"unknown Cholesky backend {backend!r}: use cholmod or superlu")
        if backend == "cholmod" and _cholmod is None:
            raise ImportError("backend 'cholmod' needs scikit-sparse "
                              "(pip install 'hemocoupling[cholmod]')")
        self.backend = backend
        self.ordering = ordering
        self.n_analyses = 0
        self.n_factorizations = 0
        self._pattern: tuple[np.ndarray, np.ndarray] | None = None
        self._valid = False  # whether the last factorisation succeeded
        self._factor = None  # CHOLMOD Factor
        self._perm: np.ndarray | None = None  # SuperLU symmetric ordering p
        self._lu = None
        self._upper: sp.csr_matrix | None = None

    # -- factorisation -------------------------------------------------------------
    def factorize(self, A: sp.spmatrix) -> SparseCholesky:
        """Factorise A (symmetric positive definite), reusing the analysis of its pattern.

        Raises
        ------
        numpy.linalg.LinAlgError
            If A is not numerically positive definite.
        """
        A = sp.csc_matrix(A)
        A.sort_indices()
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"matrix must be square, got shape {A.shape}")
        same = (self._pattern is not None and self._pattern[0].shape == A.indptr.shape
                and np.array_equal(self._pattern[0], A.indptr)
                and np.array_equal(self._pattern[1], A.indices))
        if not same:
            self._pattern = (A.indptr.copy(), A.indices.copy())
            self._analyze(A)
            self.n_analyses += 1
        self._valid = False
        if self.backend == "cholmod":
            self._factor_cholmod(A)
        else:
            self._factor_superlu(A)
        self._valid = True
        self.n_factorizations += 1
        return self

    def holds(self, pattern: sp.csc_matrix) -> bool:
        """Whether a valid factor of some SPD matrix with this (sorted CSC) pattern is held,
        e.g. to precondition a nearby system without refactorising."""
        return (self._valid and self._pattern is not None
                and self._pattern[0].shape == pattern.indptr.shape
                and np.array_equal(self._pattern[0], pattern.indptr)
                and np.array_equal(self._pattern[1], pattern.indices))

    def _analyze(self, A: sp.csc_matrix) -> None:
        if self.backend == "cholmod":
            try:
                self._factor = _cholmod.analyze(A, mode="supernodal",
                                                ordering_method=self.ordering)
            except _cholmod.CholmodError:
                self._factor = _cholmod.analyze(A, mode="supernodal")
            return
        # Let SuperLU pick a symmetric minimum-degree ordering once; p is such that
        # Pr A Pc = A[p][:, p] when perm_r == perm_c.
        lu = spla.splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                       options={"SymmetricMode": True})
        self._perm = np.argsort(lu.perm_c)

    def _factor_cholmod(self, A: sp.csc_matrix) -> None:
        try:
            self._factor.cholesky_inplace(A)
        except _cholmod.CholmodNotPositiveDefiniteError as err:
            raise np.linalg.LinAlgError(f"matrix is not positive definite: {err}") from err

    def _factor_superlu(self, A: sp.csc_matrix) -> None:
        p = self._perm
        Ap = sp.csc_matrix(A[p][:, p])
        try:
            lu = spla.splu(Ap, permc_spec="NATURAL", diag_pivot_thresh=0.0,
                           options={"SymmetricMode": True})
        except RuntimeError as err:  # exactly singular
            raise np.linalg.LinAlgError(f"matrix is singular: {err}") from err
        n = A.shape[0]
        if not (np.array_equal(lu.perm_r, np.arange(n))
                and np.array_equal(lu.perm_c, np.arange(n))):
            raise np.linalg.LinAlgError("SuperLU pivoted: matrix is not positive definite")
        diag = lu.U.diagonal()
        if not np.all(diag > 0):
            raise np.linalg.LinAlgError("matrix is not positive definite")
        self._lu = lu
        self._upper = None  # built lazily, only sampling needs it

    # -- use ----------------------------------------------------------------------
    def solve(self, b: np.ndarray) -> np.ndarray:
        """A⁻¹ b for b of shape (n,) or (n, k)."""
        self._require()
        b = np.asarray(b, dtype=float)
        if self.backend == "cholmod":
            with _BLAS.limit(limits=1, user_api="blas"):
                return self._factor.solve_A(b)
        x = np.empty_like(b)
        x[self._perm] = self._lu.solve(b[self._perm])
        return x

    def logdet(self) -> float:
        """log det A (natural log)."""
        self._require()
        if self.backend == "cholmod":
            return float(self._factor.logdet())
        return float(np.log(self._lu.U.diagonal()).sum())

    def sample(self, rng: np.random.Generator | int | None, n: int = 1) -> np.ndarray:
        """``n`` exact draws of x ~ N(0, A⁻¹), shape (n_rows, n)."""
        self._require()
        rng = np.random.default_rng(rng)
        size = self._pattern[0].shape[0] - 1
        z = rng.standard_normal((size, n))
        x = np.empty_like(z)
        if self.backend == "cholmod":
            # A[P][:, P] = L Lᵀ; x_P = L⁻ᵀ z, then undo the permutation.
            xp = self._factor.solve_Lt(z, use_LDLt_decomposition=False)
            return self._factor.apply_Pt(xp)
        # A[p][:, p] = L U with U = D Lᵀ, so L⁻ᵀ D^{-1/2} z = U⁻¹ D^{1/2} z.
        if self._upper is None:
            self._upper = sp.csr_matrix(self._lu.U)
        d = self._lu.U.diagonal()
        x[self._perm] = spla.spsolve_triangular(self._upper, np.sqrt(d)[:, None] * z,
                                                lower=False)
        return x

    def _require(self) -> None:
        if self._pattern is None or not self._valid:
            raise RuntimeError("no valid factorisation: call factorize(A) with an SPD matrix")
