"""Double-bootstrap confidence intervals (local periodogram or stationary block resampling)
with Hall–Horowitz calibration."""

from bids_app.bootstrap.calibration import calibrate_level
from bids_app.bootstrap.double import BootstrapResult, double_bootstrap
from bids_app.bootstrap.natural import MapInterval, natural_intervals
from bids_app.bootstrap.resample import block_frames, stationary_indices

__all__ = [
    "BootstrapResult",
    "MapInterval",
    "block_frames",
    "calibrate_level",
    "double_bootstrap",
    "natural_intervals",
    "stationary_indices",
]
