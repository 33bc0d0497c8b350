"""MAP estimation of the θ field and Laplace-evidence hyperparameter selection."""

from bids_app.inference.evidence import (
    DEFAULT_KAPPAS,
    DEFAULT_TAU2S,
    EvidenceResult,
    log_evidence,
    select_hyperparameters,
)
from bids_app.inference.map import MapResult, fit_map, objective

__all__ = ["DEFAULT_KAPPAS", "DEFAULT_TAU2S", "EvidenceResult", "MapResult", "fit_map",
           "log_evidence", "objective", "select_hyperparameters"]
