"""Does real data look like the surrogate's training simulations?

A learned likelihood is only trustworthy where it was trained. This check simulates
series from the surrogate's own training prior at the data's protocol, and compares the
data's mean log band spectrum with those simulated spectra: the distance is the mean
absolute standardised difference over the usable bands, and the reported fraction is
how many simulated spectra lie at least as far from the simulated centre (a tail
probability; small means the data sit outside the training distribution).
"""

from __future__ import annotations

import numpy as np

from bids_app.surrogate.features import Protocol, band_log_power
from bids_app.surrogate.training import TrainingConfig, simulate_features

# Simulated reference series, the tail probability below which data are flagged, and
# the share of vertices beyond the simulations' 99th percentile that is flagged (1% is
# expected of data the simulator could have made).
N_REFERENCE = 2000
ALPHA = 0.01
MAX_OUTLIER_FRACTION = 0.1
REFERENCE_SEED = 20260101


def calibration_report(y_clean: np.ndarray, protocol: Protocol, config: TrainingConfig
                       ) -> dict:
    """Distance of the data's mean spectrum from the training simulations.

    Parameters
    ----------
    y_clean : array (V, T)
        Cleaned series; all-zero rows (no variance, e.g. medial wall) are ignored.
    protocol : Protocol
    config : TrainingConfig
        The surrogate's training configuration (model and nuisance prior).

    Returns
    -------
    dict with ``distance`` (float), ``fraction_as_far`` (tail probability in [0, 1]),
    ``vertex_outlier_fraction`` (share of vertices farther than the 99th percentile of
    simulated spectra), ``in_distribution`` (bool: tail probability ≥ 1% and at most
    10% outlying vertices), ``message`` (one line), ``n_bands``.
    """
    y = np.asarray(y_clean)
    y = y[np.any(y != 0, axis=1)]
    if y.shape[0] == 0:
        return {"distance": float("nan"), "fraction_as_far": float("nan"),
                "vertex_outlier_fraction": float("nan"), "in_distribution": False,
                "n_bands": 0, "message": "no vertex has any variance: nothing to check"}
    rng = np.random.default_rng(REFERENCE_SEED)
    _, ref_x, _ = simulate_features(config, N_REFERENCE, rng, protocol=protocol)
    nb = config.n_bands
    mask = ref_x[0, nb: 2 * nb] > 0.5
    ref = ref_x[:, :nb][:, mask]
    data, _ = band_log_power(y, protocol, nb)
    data = data[:, mask]
    centre, scale = ref.mean(0), ref.std(0) + 1e-6

    def distance(spectra: np.ndarray) -> np.ndarray:
        return np.abs((spectra - centre) / scale).mean(-1)

    ref_d = distance(ref)
    d = float(distance(data.mean(0)))
    fraction = float(np.mean(ref_d >= d))
    outliers = float(np.mean(distance(data) > np.quantile(ref_d, 0.99)))
    ok = fraction >= ALPHA and outliers <= MAX_OUTLIER_FRACTION
    verdict = ("inside" if ok else "OUTSIDE")
    message = (f"data spectrum is {verdict} the surrogate's training distribution "
               f"(distance {d:.2f}, {100 * fraction:.1f}% of simulated spectra as far; "
               f"{100 * outliers:.1f}% of vertices beyond the 99th percentile)")
    return {"distance": d, "fraction_as_far": fraction, "vertex_outlier_fraction": outliers,
            "in_distribution": bool(ok), "n_bands": int(mask.sum()),
            "n_regressors": int(protocol.n_regressors), "message": message}
