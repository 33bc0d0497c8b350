"""Spatial prior: mesh FEM, Matérn SPDE precision, sparse Cholesky, GMRF sampling."""

from bids_app.prior.cholesky import SparseCholesky, available_backends
from bids_app.prior.mesh import FEM, fem_matrices, icosphere, mesh_prior_support
from bids_app.prior.spde import SPDEPrior

__all__ = ["FEM", "SPDEPrior", "SparseCholesky", "available_backends", "fem_matrices",
           "icosphere", "mesh_prior_support"]
