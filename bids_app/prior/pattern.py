"""Fixed sparsity patterns, so matrices that change values but not structure can be
refactorised with one symbolic analysis (SciPy drops entries that cancel to zero, which
would otherwise change the pattern from one (κ, τ²) or Newton step to the next)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def union_pattern(*matrices: sp.spmatrix) -> sp.csc_matrix:
    """CSC matrix of ones on the union of the nonzero patterns, indices sorted."""
    total = None
    for m in matrices:
        ones = sp.csc_matrix(m, copy=True)
        ones.data = np.ones_like(ones.data, dtype=float)
        total = ones if total is None else total + ones
    total = sp.csc_matrix(total)
    total.sum_duplicates()
    total.sort_indices()
    total.data[:] = 1.0
    return total


def positions(pattern: sp.csc_matrix, matrix: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """Where each stored entry of ``matrix`` sits in ``pattern.data``.

    Returns
    -------
    index : ndarray of int
        Position in ``pattern.data`` of every stored entry of ``matrix`` (COO order).
    values : ndarray
        Those entries' values, so ``np.add.at(data, index, values)`` scatters them.
    """
    coo = sp.coo_matrix(matrix)
    n = pattern.shape[0]
    col_of = np.repeat(np.arange(pattern.shape[1]), np.diff(pattern.indptr))
    keys = col_of.astype(np.int64) * n + pattern.indices
    wanted = coo.col.astype(np.int64) * n + coo.row
    index = np.searchsorted(keys, wanted)
    if np.any(index >= keys.size) or np.any(keys[np.minimum(index, keys.size - 1)] != wanted):
        raise ValueError("matrix has entries outside the pattern")
    return index, coo.data


def on_pattern(pattern: sp.csc_matrix, matrix: sp.spmatrix) -> np.ndarray:
    """The entries of ``matrix`` laid out as a data vector of ``pattern``."""
    data = np.zeros(pattern.nnz)
    index, values = positions(pattern, matrix)
    np.add.at(data, index, values)
    return data


def with_data(pattern: sp.csc_matrix, data: np.ndarray) -> sp.csc_matrix:
    """A CSC matrix with the structure of ``pattern`` and the given data vector."""
    return sp.csc_matrix((data, pattern.indices, pattern.indptr), shape=pattern.shape)
