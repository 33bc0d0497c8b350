"""Stage 1 input: synthetic resting-state BOLD (HRFs, neural events, datasets)."""

from bids_app.simulate.bold import (
    HCP_1P,
    HCP_2P,
    NuisancePrior,
    sample_nuisance,
    simulate_bold,
    simulate_training_set,
)
from bids_app.simulate.hrf import default_kernel_duration, double_gamma, hrf_kernels, spm_canonical

__all__ = [
    "HCP_1P",
    "HCP_2P",
    "NuisancePrior",
    "default_kernel_duration",
    "double_gamma",
    "hrf_kernels",
    "sample_nuisance",
    "simulate_bold",
    "simulate_training_set",
    "spm_canonical",
]
