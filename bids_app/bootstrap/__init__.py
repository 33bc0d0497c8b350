"""Double stationary-bootstrap confidence intervals with Hall–Horowitz calibration."""
