"""Learned marginal likelihood: spectral summary network + nflows conditional flow."""

from bids_app.surrogate.registry import Surrogate, load_surrogate, read_surrogate

__all__ = ["Surrogate", "load_surrogate", "read_surrogate"]
