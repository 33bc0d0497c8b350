"""The Newton system D + Q on a fixed sparsity pattern.

Variables are the P latent fields stacked field-major, x = [θ̃₁; …; θ̃_P] (length P·V).
The prior precision is block-diagonal (one field per parameter) and the likelihood
curvature D couples the P parameters of one vertex only (2×2 blocks for P = 2), so the
pattern of D + Q never changes: it is built once and every refactorisation (Newton
steps, grid points, bootstrap refits) reuses one symbolic analysis.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from bids_app.prior.pattern import positions, union_pattern, with_data


def block_prior(Q: sp.spmatrix, n_vertices: int, n_params: int) -> sp.csc_matrix:
    """The (P·V, P·V) prior precision: Q itself if already that size, else P copies of a
    (V, V) Q on the diagonal (shared hyperparameters)."""
    size = n_vertices * n_params
    if Q.shape == (size, size):
        return sp.csc_matrix(Q)
    if Q.shape == (n_vertices, n_vertices):
        return sp.csc_matrix(sp.block_diag([Q] * n_params, format="csc"))
    raise ValueError(f"precision has shape {Q.shape}; expected ({n_vertices}, {n_vertices}) "
                     f"or ({size}, {size}) for {n_vertices} vertices × {n_params} parameters")


class NewtonSystem:
    """Assembles D + Q for one prior-precision pattern and P parameters per vertex.

    Parameters
    ----------
    Q : sparse matrix (P·V, P·V)
        Block prior precision; only its pattern is used here.
    n_params : int
        P, the number of parameters per vertex.
    """

    def __init__(self, Q: sp.csc_matrix, n_params: int) -> None:
        self.n_params = n_params
        self.n_vertices = Q.shape[0] // n_params
        V, P = self.n_vertices, n_params
        # all P×P entries of every vertex block, field-major indices a·V + v
        a, b = np.meshgrid(np.arange(P), np.arange(P), indexing="ij")
        rows = (a.ravel()[:, None] * V + np.arange(V)).ravel()
        cols = (b.ravel()[:, None] * V + np.arange(V)).ravel()
        d_pattern = sp.csc_matrix((np.ones(rows.size), (rows, cols)), shape=Q.shape)
        self.pattern = union_pattern(Q, d_pattern)
        self._q_pattern = (Q.indptr.copy(), Q.indices.copy())
        self._q_index, _ = positions(self.pattern, Q)
        self._d_index, _ = positions(self.pattern, d_pattern)
        coo = sp.coo_matrix(d_pattern)  # the order positions() used
        self._d_vertex, self._d_row, self._d_col = coo.row % V, coo.row // V, coo.col // V

    def matches(self, Q: sp.csc_matrix) -> bool:
        """Whether ``Q`` has the pattern this system was built for."""
        return (Q.indptr.shape == self._q_pattern[0].shape
                and np.array_equal(Q.indptr, self._q_pattern[0])
                and np.array_equal(Q.indices, self._q_pattern[1]))

    def assemble(self, Q: sp.csc_matrix, blocks: np.ndarray) -> sp.csc_matrix:
        """D + Q with D given as per-vertex blocks of shape (V, P, P)."""
        data = np.zeros(self.pattern.nnz)
        data[self._q_index] = Q.data  # Q's entries are unique, so plain assignment
        data[self._d_index] += blocks[self._d_vertex, self._d_row, self._d_col]
        return with_data(self.pattern, data)


def stack(theta_t: np.ndarray) -> np.ndarray:
    """(V, P) → field-major vector of length P·V."""
    return np.ascontiguousarray(theta_t.T).ravel()


def unstack(x: np.ndarray, n_params: int) -> np.ndarray:
    """Field-major vector → (V, P)."""
    return x.reshape(n_params, -1).T.copy()


def symmetric_blocks(neg_hess: np.ndarray) -> np.ndarray:
    """Per-vertex P×P curvature blocks made exactly symmetric (autograd and the
    forward-mode derivatives leave rounding asymmetry)."""
    return 0.5 * (neg_hess + np.swapaxes(neg_hess, 1, 2))


def floor_blocks(neg_hess: np.ndarray, floor: float) -> tuple[np.ndarray, bool]:
    """Per-vertex P×P curvature blocks with eigenvalues raised to at least ``floor``.

    Returns the modified blocks and whether any eigenvalue was raised (the Newton
    matrix then differs from the exact Hessian).
    """
    if neg_hess.shape[1] == 1:
        clipped = np.maximum(neg_hess, floor)
        return clipped, bool(np.any(neg_hess < floor))
    sym = symmetric_blocks(neg_hess)
    eigval, eigvec = np.linalg.eigh(sym)
    raised = eigval < floor
    if not raised.any():
        return sym, False
    eigval = np.maximum(eigval, floor)
    return np.einsum("vij,vj,vkj->vik", eigvec, eigval, eigvec), True
