"""The quality gate passes runs the model describes and flags the ones it cannot."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from bids_app.io.confounds import strategy_regressors
from bids_app.io.surface_files import load_func_gifti
from bids_app.preprocess import clean
from bids_app.quality import quality_control
from bids_app.simulate import sample_nuisance, simulate_bold
from bids_app.simulate.confounds import simulated_confounds
from bids_app.surrogate import load_surrogate

TR, FRAMES = 2.0, 300


def simulated_run(surrogate, n: int, seed: int, lowpass_hz: float | None = None):
    """Series from the surrogate's own training prior (24P regressed), optionally
    low-pass filtered upstream without telling the app."""
    rng = np.random.default_rng(seed)
    theta = surrogate.model.to_theta(rng.standard_normal((n, surrogate.model.n_params)))
    prior = surrogate.config.nuisance_prior()
    y = simulate_bold(surrogate.model, theta, TR, FRAMES, sample_nuisance(prior, n, rng), rng)
    if lowpass_hz is not None:
        y = sosfiltfilt(butter(4, lowpass_hz, fs=1 / TR, output="sos"), y, axis=1)
    regressors = strategy_regressors(simulated_confounds(FRAMES, TR, rng), "24P", "sim")[1]
    return clean(y, TR, surrogate.preprocessing, regressors), regressors.shape[1]


def gate(surrogate, y_clean: np.ndarray, tr: float, n_reg: int, converged: bool = True):
    theta_t = surrogate.summarize(y_clean, tr, n_reg).astype(float)
    return quality_control(y_clean, theta_t, surrogate, tr, n_reg,
                           surrogate.check_calibration(y_clean, tr, n_reg), converged, seed=0)


@pytest.fixture(scope="module")
def surrogate():
    return load_surrogate("1p", TR, FRAMES)


def test_gate_passes_runs_the_model_describes(surrogate) -> None:
    y_clean, n_reg = simulated_run(surrogate, 800, seed=0)
    quality = gate(surrogate, y_clean, TR, n_reg)
    assert quality.passed, quality.reasons
    assert quality.checks["PosteriorPredictiveSpectra"].value < 0.05
    record = quality.sidecar()
    assert record["Pass"] is True and record["Reasons"] == []
    assert set(record["Checks"]) == {"PosteriorPredictiveSpectra", "RunSpectrumShape",
                                     "TrainingDistribution", "AtRangeBound", "MapConverged"}
    # the report's spectrum-against-envelope: the data's median inside the model's 5-95 %
    envelope = record["SpectrumEnvelope"]
    data, model = envelope["Data"], envelope["Simulated"]
    assert len(envelope["FrequencyHz"]) == len(data["P50"]) == len(model["P05"]) > 5
    inside = (np.array(data["P50"]) >= model["P05"]) & (np.array(data["P50"]) <= model["P95"])
    assert inside.all()


def test_gate_flags_an_undeclared_low_pass(surrogate) -> None:
    y_clean, n_reg = simulated_run(surrogate, 800, seed=1, lowpass_hz=0.05)
    quality = gate(surrogate, y_clean, TR, n_reg)
    assert not quality.passed
    assert not quality.checks["PosteriorPredictiveSpectra"].passed
    assert any("--lowpass" in reason for reason in quality.reasons)
    envelope = quality.sidecar()["SpectrumEnvelope"]
    high = np.array(envelope["FrequencyHz"]) > 0.1
    assert (np.array(envelope["Data"]["P50"])[high]
            < np.array(envelope["Simulated"]["P05"])[high]).all()  # the picture shows it


def test_gate_flags_a_pinned_map_and_a_failed_newton(surrogate) -> None:
    y_clean, n_reg = simulated_run(surrogate, 300, seed=2)
    theta_t = np.full((300, 1), -3.5)
    quality = quality_control(y_clean, theta_t, surrogate, TR, n_reg,
                              surrogate.check_calibration(y_clean, TR, n_reg), False, seed=0)
    assert not quality.checks["AtRangeBound"].passed
    assert quality.checks["AtRangeBound"].value == 1.0
    assert not quality.checks["MapConverged"].passed
    assert any("pinned" in reason for reason in quality.reasons)


@pytest.mark.shared
def test_gate_flags_the_real_low_passed_run(shared_data) -> None:
    """The shared real run was low-passed upstream: fitted without --lowpass it must not
    pass silently."""
    bold = next((shared_data / "real" / "fmriprep_fsaverage5").rglob(
        "*hemi-L_space-fsaverage5_bold.func.gii"))
    y = np.asarray(load_func_gifti(bold)[0], dtype=float)
    y = y[np.ptp(y, axis=1) > 0][::4]
    surrogate = load_surrogate("1p", 1.4, y.shape[1])
    y_clean = clean(y, 1.4, surrogate.preprocessing)
    quality = gate(surrogate, y_clean, 1.4, 0)
    assert not quality.passed
    assert any("--lowpass" in reason for reason in quality.reasons)
    envelope = quality.sidecar()["SpectrumEnvelope"]
    high = np.array(envelope["FrequencyHz"]) > 0.1
    assert (np.array(envelope["Data"]["P50"])[high]
            < np.array(envelope["Simulated"]["P05"])[high]).all()  # the picture shows it
