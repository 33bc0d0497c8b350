"""The quality gate: a map the model does not fit is flagged, never silently passed.

Each check has a figure and a threshold; a hemisphere passes when every check does. A
flagged map is still written (it is a result), with a WARNING naming the run and the
reasons, a banner in the report and a ``QualityControl`` sidecar record, and the group
level leaves it out unless told otherwise. False-alarm and detection rates:
benchmarks/bench_quality_gate.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bids_app.quality.predictive import HIGH_BAND_HZ, predictive_check

# At most this share of vertices may lie outside their predictive 99 % (1 % expected).
MAX_PREDICTIVE_OUTLIERS = 0.10
# A run whose spectral shape no single nuisance regime of the prior reaches this often.
MIN_RUN_TAIL_PROBABILITY = 0.05
# Latent |θ̃| beyond this is the outer 1 % of the link box: the estimate is at a bound of
# the surrogate's range. A map with more than half its vertices there is pinned.
BOUND_LATENT = 2.576
MAX_AT_BOUND = 0.5
# A high-frequency tail this many simulated sds below the model says "low-passed".
LOWPASS_HINT_Z = -3.0


@dataclass(frozen=True)
class Check:
    """One check's figure, its threshold, and whether it passed."""

    value: float
    threshold: float
    passed: bool
    description: str

    def sidecar(self) -> dict[str, Any]:
        return {"Value": self.value, "Threshold": self.threshold, "Pass": self.passed,
                "Description": self.description}


@dataclass(frozen=True)
class QualityControl:
    """The gate's verdict for one hemisphere's fit."""

    checks: dict[str, Check]
    reasons: list[str] = field(default_factory=list)
    envelope: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks.values())

    def sidecar(self) -> dict[str, Any]:
        return {"Pass": self.passed, "Reasons": list(self.reasons),
                "Checks": {name: check.sidecar() for name, check in self.checks.items()},
                **({"SpectrumEnvelope": self.envelope} if self.envelope else {})}


def quality_control(y_clean: np.ndarray, theta_t: np.ndarray, surrogate, tr: float,
                    n_regressors: int, calibration: dict, converged: bool, seed: int
                    ) -> QualityControl:
    """Run every check on one hemisphere's fit.

    Parameters
    ----------
    y_clean : array (V, T)
        Cleaned series of the fitted vertices.
    theta_t : array (V, P)
        Latent MAP estimate of the same vertices.
    surrogate : bids_app.surrogate.Surrogate
    tr : float
    n_regressors : int
    calibration : dict
        The surrogate's training-distribution check of the run
        (:meth:`Surrogate.check_calibration`).
    converged : bool
        Whether the MAP's Newton iterations converged.
    seed : int
    """
    theta_t = np.asarray(theta_t, dtype=float).reshape(len(y_clean), -1)
    model = surrogate.model
    predictive = predictive_check(y_clean, model.to_theta(theta_t), surrogate, tr,
                                  n_regressors, seed)
    at_bound = float(np.mean(np.any(np.abs(theta_t) > BOUND_LATENT, axis=1)))
    checks = {
        "PosteriorPredictiveSpectra": Check(
            predictive.outlier_fraction, MAX_PREDICTIVE_OUTLIERS,
            predictive.outlier_fraction <= MAX_PREDICTIVE_OUTLIERS,
            f"share of {predictive.n_checked} checked vertices whose log band spectrum lies "
            "beyond the 99th percentile of spectra simulated at their estimate under the "
            "surrogate's nuisance prior (about 0.01 expected)"),
        "RunSpectrumShape": Check(
            predictive.run_tail_probability, MIN_RUN_TAIL_PROBABILITY,
            predictive.run_tail_probability >= MIN_RUN_TAIL_PROBABILITY,
            "share of pseudo-runs simulated at the estimates with one nuisance regime of the "
            "surrogate's prior each whose mean spectral deviation is at least the data's "
            "(a tail probability; below the threshold no regime the likelihood integrates "
            "over shapes spectra like this run's, so the estimates are biased)"),
        "TrainingDistribution": Check(
            float(calibration["vertex_outlier_fraction"]), 0.1,
            bool(calibration["in_distribution"]), calibration["message"]),
        "AtRangeBound": Check(
            at_bound, MAX_AT_BOUND, at_bound <= MAX_AT_BOUND,
            f"share of vertices whose estimate is in the outer 1 % of {model.name}'s "
            "parameter range (a map pinned at a bound)"),
        "MapConverged": Check(float(converged), 1.0, bool(converged),
                              "the MAP's Newton iterations met their tolerance"),
    }
    reasons = [_reason(name, check) for name, check in checks.items() if not check.passed]
    if not checks["PosteriorPredictiveSpectra"].passed and predictive.high_band_z < LOWPASS_HINT_Z:
        reasons.append(f"the spectrum above {HIGH_BAND_HZ:g} Hz is "
                       f"{-predictive.high_band_z:.0f} sd below the model's: low-pass filtered "
                       "upstream? pass its cut-off with --lowpass HZ")
    return QualityControl(checks, reasons, predictive.envelope)


def _reason(name: str, check: Check) -> str:
    """One phrase per failed check, for the WARNING line and the report banner."""
    if name == "PosteriorPredictiveSpectra":
        return (f"{100 * check.value:.0f}% of vertices have spectra the model cannot produce "
                f"at their estimate (at most {100 * check.threshold:.0f}%)")
    if name == "RunSpectrumShape":
        return ("the run's spectral shape is one no nuisance regime of the model produces "
                f"(tail probability {check.value:.2f} < {check.threshold:g}): the estimates "
                "are likely biased")
    if name == "TrainingDistribution":
        return "the run's spectra are outside the surrogate's training distribution"
    if name == "AtRangeBound":
        return (f"{100 * check.value:.0f}% of vertices sit at a bound of the parameter range "
                "(the map is pinned, not estimated)")
    return "the MAP did not converge"
