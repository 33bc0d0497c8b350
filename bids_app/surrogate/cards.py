"""Model cards: what ``hemocoupling-train`` writes beside a trained surrogate's weights.

A card records the training configuration, validation metrics, the tabulation check and
the design notes a reader needs to judge the surrogate; :mod:`bids_app.surrogate.registry`
reads it back and checks the weights against its sha256.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from bids_app.preprocess import Preprocessing
from bids_app.simulate.hrf import default_kernel_duration
from bids_app.surrogate.features import Protocol, band_edges
from bids_app.surrogate.likelihood import table_error
from bids_app.surrogate.registry import N_NOISE_AR, conditioning_vector, sha256_of
from bids_app.surrogate.training import Trainer, TrainingConfig


def _table_check(trainer: Trainer) -> dict:
    """One-output summaries (tabulated): tabulation error against the flow at a
    reference protocol (TR 0.72, 1200)."""
    if trainer.config.n_summary != 1:
        return {}
    proto = Protocol(0.72, min(1200, int(trainer.config.frames_range[1])))
    noise_ar = float(np.mean(trainer.config.prior["ar_coef"]))
    vec = conditioning_vector(trainer.config, proto, noise_ar)
    return {"loglik_table_error": {"protocol": [proto.tr, proto.n_frames],
                                   "noise_ar": noise_ar if trainer.config.noise_context else None,
                                   **table_error(trainer.flow, vec)}}


# What each beyond-AR(1) setting of the nuisance prior means and where its range comes from.
NUISANCE_COMPONENTS = {
    "powerlaw": "share of noise variance from 1/f^β noise, β in powerlaw_exponent: resting "
                "BOLD noise has β ≈ 0.5-1.5 over 0.01-0.1 Hz (HCP regions, shared real data)",
    "physio": "share from respiration (0.1-0.5 Hz) and heart (0.8-1.5 Hz) rhythms with "
              "wandering rate and amplitude, sampled at the TR so they alias below Nyquist",
    "drift": "share from random-walk drift (partly removed by detrend and high-pass)",
    "shared": "share from one slow fluctuation (β 1-2) common to a run's series and written "
              "into its simulated global signal, so 36P's global signal regression removes it",
    "neural_fluctuation": "share of the neural drive's variance from 1/f^β fluctuations (β "
                          "in neural_exponent) added to the events",
    "clean_fraction": "share of series with none of the above (the paper's white/AR(1) "
                      "model)",
    "check": "benchmarks/bench_nuisance_envelope.py: real spectra inside the simulated "
             "envelope per protocol; benchmarks/bench_real_nuisance.py: accuracy per kind",
}


def design_notes(config: TrainingConfig) -> dict:
    """Simulator, features, preprocessing and the reasoning behind them, for the card."""
    return {
        "simulator": {
            "module": "bids_app.simulate.bold.simulate_training_set",
            "neural": "marked Poisson events per second, binned on the TR grid",
            "kernel_seconds": default_kernel_duration(config.model),
            "burn_in": "kernel length (series start in steady state)",
            "theta_prior": "latent N(0, 1) per parameter (uniform on the link box)",
            "nuisance_prior": config.prior,
            "nuisance_prior_reasoning": (
                "Wider than the one-subject HCP calibration of docs/method.md §2 (noise sd, "
                "amplitudes and event rates spread log-uniformly over about a decade "
                f"around it, AR(1) noise with φ in {list(config.prior['ar_coef'])}) so other "
                "scanners, subjects and preprocessing fall inside; check_calibration says "
                "when data do not."),
            "nuisance_components": NUISANCE_COMPONENTS,
        },
        "preprocessing": {
            "clean": Preprocessing().to_dict(),
            "lowpass": (f"none for {1 - config.lowpass_fraction:.0%} of training protocols, "
                        f"else log-uniform in {list(config.lowpass_range)} Hz; pass the "
                        "data's own cut-off (or lower) to load_surrogate(lowpass=...)"),
        },
        "confounds": {
            "strategies": list(config.confounds),
            "simulation": ("one simulated fMRIPrep-style confounds table per protocol draw "
                           "(bids_app.simulate.confounds: simulated head motion, smooth "
                           "tissue signals, 5 WM + 5 CSF aCompCor components); the drawn "
                           "strategy's regressors are built by the app's own "
                           "bids_app.io.confounds.strategy_regressors and removed by clean "
                           "with drift and high-pass, exactly as for a real run"),
            "conditioning": ("the number of regressors removed, as a share of the frames, "
                             "is the 4th protocol input of both the summary network and "
                             "the flow context; the workflow passes each run's own count"),
            "reasoning": (
                "Regressing 24 low-frequency motion regressors out of 300 frames removes "
                "power the v2 surrogate (trained without regression) read as a faster HRF "
                "(demo sub-02 hemi-L: true theta 0.495, estimated 1.04 with 24P, 0.60 "
                "without). Training with the same removal makes the learned likelihood "
                "describe the series the app actually summarises; the count as an input "
                "lets one network serve every strategy and run length, since what a "
                "regressor removes scales with regressors per frame."),
        },
        "protocol_range": {"tr_s": list(config.tr_range),
                           "frames_min": int(config.frames_range[0]),
                           "frames_trained_max": int(config.frames_range[1]),
                           "lowpass_hz": list(config.lowpass_range)},
        "features": {
            "band_edges_hz": [round(float(e), 6) for e in band_edges(config.n_bands)],
            "inputs": "log mean periodogram per band (0 if masked), band mask, "
                      "(log TR, log duration, log highest usable frequency, confound "
                      "regressors per frame) scaled",
            "reasoning": (
                "Raw Fourier coefficients tie a network to one TR and length. Band-"
                "averaged log power on fixed Hz bands means the same thing for every "
                "protocol; bands without ordinates (short runs), past Nyquist or past the "
                "low-pass are masked and the mask and protocol are inputs, so one network "
                "serves TR 0.5–3 s and ≥150 frames. Runs longer than trained are described "
                "by the longest trained duration, which only widens the likelihood."),
            "measured": (
                "Pilot 1p summaries (60k series, 12 epochs), held-out HCP-calibrated "
                "MSE(θ) at TR 0.72 s/1200 frames, 1.4/600, 2.0/200: 24 bands with AR φ≤0.3 "
                "0.092/0.152/0.242; 48 bands φ≤0.3 0.082/0.144/0.242; 48 bands white "
                "0.061/0.124/0.241; 48 bands φ≤0.1 0.060/0.120/0.240 (chosen)."),
        },
        "flow": ("conditional element-wise rational-quadratic splines (nflows spline "
                 "functions, knots from SiLU context nets) alternating with conditional "
                 "affines" if config.n_summary == 1 else
                 "nflows masked autoregressive rational-quadratic splines, SiLU MADE"),
        "noise_colour": (
            "the flow's context is (θ̃, 20·φ, told, protocol): for half of its training "
            "series it is told the noise AR(1) coefficient φ they were simulated with "
            "(drawn per series from the nuisance prior), for the others nothing (0, 0), "
            "so it gives q(S | θ̃, φ) and the q averaged over φ. The workflow scores "
            f"'not told' and {N_NOISE_AR} run-level φ spanning the trained range by "
            "Laplace evidence, each at its own (κ, τ²), and keeps the best. Reason: "
            "a flow averaging over φ ∈ [0, 0.1] placed white-noise (HCP-calibrated) runs "
            "0.07–0.135 latent units slow (benchmarks/bench_nuisance_bias.py); caveat: "
            "the selected φ trades off against θ̃ (README, Known limitations)"
            if config.noise_context else "not an input: q averages over the prior's φ"),
        "loglik": ("bicubic tabulation of log q on (S, θ̃) per protocol and φ, analytic "
                   "derivatives" if config.n_summary == 1 else
                   "exact forward-mode second-order propagation through the flow "
                   "(surrogate.flow_derivatives); autograd if its structure is unknown"),
    }


def write_surrogate(trainer: Trainer, metrics: dict, out_dir: Path, surrogate_id: str,
                    notes: dict | None = None) -> Path:
    """Write ``{id}.pt`` (state dict) and ``{id}.json`` (model card); returns the card."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {f"summary.{k}": v for k, v in trainer.summary.state_dict().items()}
    state.update({f"flow.{k}": v for k, v in trainer.flow.state_dict().items()})
    weights = out_dir / f"{surrogate_id}.pt"
    tmp = weights.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    tmp.replace(weights)
    n_weights = sum(v.numel() for v in state.values())
    card = {
        "id": surrogate_id,
        "model": trainer.config.model,
        "weights": weights.name,
        "sha256": sha256_of(weights),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": trainer.config.to_dict(),
        "n_weights": int(n_weights),
        "training_seconds": round(trainer.elapsed, 1),
        "history": trainer.history,
        "validation": metrics,
        **_table_check(trainer),
        **design_notes(trainer.config),
        **(notes or {}),
    }
    card_path = out_dir / f"{surrogate_id}.json"
    tmp = card_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2))
    tmp.replace(card_path)
    return card_path
