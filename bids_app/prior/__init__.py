"""Spatial prior: mesh FEM, Matérn SPDE precision, sparse Cholesky, GMRF sampling."""
