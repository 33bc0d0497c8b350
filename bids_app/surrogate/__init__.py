"""Learned marginal likelihood: spectral summary network + nflows conditional flow."""
