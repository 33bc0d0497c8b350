"""Shipped surrogates: loading (with sha256 check), protocol coverage, and the object
the workflow uses (summarise, log-likelihood, calibration check).

One surrogate per HRF model covers every supported protocol: TR, run length and
low-pass cut-off are network inputs, not what selects a file.
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from bids_app.errors import InputValidationError, MissingInputError
from bids_app.models import MODELS, HRFModel
from bids_app.preprocess import Preprocessing
from bids_app.simulate.hrf import default_kernel_duration
from bids_app.surrogate.features import (
    N_PROTOCOL,
    Protocol,
    band_edges,
    feature_matrix,
    protocol_vector,
)
from bids_app.surrogate.likelihood import (
    LoglikFn,
    LoglikTable,
    autograd_loglik,
    flow_loglik,
    table_error,
)
from bids_app.surrogate.networks import SummaryNet, build_flow
from bids_app.surrogate.training import Trainer, TrainingConfig, noise_context

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# Model name → id of its shipped card (bids_app.models owns them).
SHIPPED = {m.name: m.shipped_card for m in MODELS.values() if m.shipped_card}
# TRs a little outside the trained range are still served (rounding in sidecars).
TR_TOLERANCE = 0.01
# Noise AR(1) coefficients a run is compared at (evenly over the trained range).
N_NOISE_AR = 5


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Surrogate:
    """A trained summary network and flow, bound to one low-pass setting.

    Attributes
    ----------
    model : HRFModel
    preprocessing : Preprocessing
        Pass this to :func:`bids_app.preprocess.clean` for real data.
    card : dict
        The model card (id, sha256, training config, metrics, …).
    config : TrainingConfig
    """

    def __init__(self, card: dict, state: dict[str, torch.Tensor], lowpass: float | None):
        self.card = card
        # Cards written before the noise-colour input existed describe flows without it.
        self.config = TrainingConfig(**{"noise_context": False, **card["config"]})
        self.model: HRFModel = MODELS[self.config.model]
        self.lowpass = lowpass
        self.preprocessing = Preprocessing(lowpass=lowpass)
        p = self.model.n_params
        self.summary = SummaryNet(2 * self.config.n_bands + N_PROTOCOL, p,
                                  self.config.summary_hidden, self.config.summary_layers)
        self.flow = build_flow(p, self.config.n_context, n_layers=self.config.flow_layers,
                               hidden=self.config.flow_hidden, num_bins=self.config.flow_bins)
        self.summary.load_state_dict({k[8:]: v for k, v in state.items()
                                      if k.startswith("summary.")})
        self.flow.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("flow.")})
        self.summary.eval()
        self.flow.eval()
        self._tables: dict[tuple, LoglikTable] = {}

    # -- protocol -------------------------------------------------------------------------
    def protocol(self, tr: float, n_frames: int, n_regressors: int = 0) -> Protocol:
        """Validated protocol; raises InputValidationError outside the trained range."""
        check_coverage(self.card, tr, n_frames, self.lowpass)
        return Protocol(float(tr), int(n_frames), _effective_lowpass(tr, self.lowpass),
                        int(n_regressors))

    def context_protocol(self, protocol: Protocol) -> Protocol:
        """What the networks are told: runs longer than trained are capped (conservative),
        keeping the run's share of frames spent on regressors."""
        frames = min(protocol.n_frames, int(self.config.frames_range[1]))
        regressors = round(protocol.n_regressors * frames / protocol.n_frames)
        return Protocol(protocol.tr, frames, protocol.lowpass, regressors)

    @property
    def noise_ar_candidates(self) -> list[float | None] | None:
        """Run-level noise AR(1) coefficients to select among by evidence, None first
        (the flow not told φ: q averaged over the trained range); None for a surrogate
        whose flow never takes φ."""
        if not self.config.noise_context:
            return None
        return [None, *(float(v) for v in np.linspace(*self.config.prior["ar_coef"],
                                                       N_NOISE_AR))]

    def conditioning(self, protocol: Protocol, noise_ar: float | None) -> np.ndarray:
        """The flow context after θ̃: (φ scaled, if the flow takes it) + protocol."""
        return conditioning_vector(self.config, protocol, noise_ar)

    # -- the contract ---------------------------------------------------------------------
    def summarize(self, y_clean: np.ndarray, tr: float, n_regressors: int = 0) -> np.ndarray:
        """S(y) ≈ E[θ̃ | y] per vertex, (V, P) float32, from cleaned series (V, T) from
        which ``n_regressors`` confound columns were removed."""
        proto = self.protocol(tr, np.shape(y_clean)[-1], n_regressors)
        x = feature_matrix(y_clean, proto, self.config.n_bands, self.context_protocol(proto))
        with torch.no_grad():
            return self.summary(torch.from_numpy(x)).numpy()

    def loglik(self, summaries: np.ndarray, tr: float, n_frames: int, n_regressors: int = 0,
               noise_ar: float | None = None) -> LoglikFn:
        """Per-vertex log q(S_v | θ̃_v[, φ]) with θ̃-gradient and Hessian
        (CONTRIBUTING.md); ``noise_ar`` is the run's noise AR(1) coefficient φ for a flow
        that takes it (None: not told, the likelihood averaged over φ)."""
        proto = self.context_protocol(self.protocol(tr, n_frames, n_regressors))
        summaries = np.asarray(summaries, dtype=np.float32).reshape(-1, self.model.n_params)
        if self.model.n_params == 1:
            return self.table(proto, noise_ar).bind(summaries)
        return flow_loglik(self.flow, summaries, self.conditioning(proto, noise_ar))

    def candidate_logliks(self, summaries: np.ndarray, tr: float, n_frames: int,
                          n_regressors: int = 0) -> tuple[list[float | None], list[LoglikFn]]:
        """One :meth:`loglik` per noise AR(1) candidate (a single one, φ None, for
        surrogates not told the noise colour), to select among by evidence."""
        phis = self.noise_ar_candidates or [None]
        return phis, [self.loglik(summaries, tr, n_frames, n_regressors, noise_ar=phi)
                      for phi in phis]

    def exact_loglik(self, summaries: np.ndarray, tr: float, n_frames: int,
                     n_regressors: int = 0, noise_ar: float | None = None) -> LoglikFn:
        """Same contract by autograd through the flow (no tabulation); for checks."""
        proto = self.context_protocol(self.protocol(tr, n_frames, n_regressors))
        summaries = np.asarray(summaries, dtype=np.float32).reshape(-1, self.model.n_params)
        return autograd_loglik(self.flow, summaries, self.conditioning(proto, noise_ar))

    def table(self, protocol: Protocol, noise_ar: float | None = None) -> LoglikTable:
        """The (cached) tabulation of the 1p flow for one protocol (and φ)."""
        vec = self.conditioning(protocol, noise_ar)
        key = tuple(vec.tolist())
        if key not in self._tables:
            self._tables[key] = LoglikTable(self.flow, vec)
        return self._tables[key]

    def check_calibration(self, y_clean: np.ndarray, tr: float, n_regressors: int = 0) -> dict:
        """Is the data's spectrum one the surrogate was trained on? See
        :func:`bids_app.surrogate.calibration.calibration_report`."""
        from bids_app.surrogate.calibration import calibration_report

        proto = self.protocol(tr, np.shape(y_clean)[-1], n_regressors)
        return calibration_report(y_clean, proto, self.config)


def conditioning_vector(config: TrainingConfig, protocol: Protocol, noise_ar: float | None
                        ) -> np.ndarray:
    """Flow context after θ̃, in training order (see ``Trainer._flow_inputs``); φ None
    tells the flow nothing about the noise colour."""
    vec = protocol_vector(protocol)
    if not config.noise_context:
        return vec
    told = noise_context(np.nan if noise_ar is None else noise_ar)
    return np.concatenate([told, vec]).astype(vec.dtype)


def _effective_lowpass(tr: float, lowpass: float | None) -> float | None:
    """A cut-off at or above Nyquist removes nothing: treat it as none."""
    if lowpass is None or lowpass >= 0.5 / tr:
        return None
    return float(lowpass)


def check_coverage(card: dict, tr: float, n_frames: int, lowpass: float | None) -> None:
    """Raise InputValidationError naming ``hemocoupling-train`` for uncovered protocols."""
    cfg = card["config"]
    tr_lo, tr_hi = cfg["tr_range"]
    lp_lo, lp_hi = cfg["lowpass_range"]
    name = f"surrogate {card['id']}"
    fix = (f"train one that covers it: hemocoupling-train --model {cfg['model']} "
           f"--tr-range LO HI --frames-range MIN MAX --out DIR")
    if not tr_lo * (1 - TR_TOLERANCE) <= tr <= tr_hi * (1 + TR_TOLERANCE):
        raise InputValidationError(
            f"TR {tr:g} s is outside the {tr_lo:g}–{tr_hi:g} s covered by {name}; {fix}")
    if n_frames < cfg["frames_range"][0]:
        raise InputValidationError(
            f"{n_frames} frames is shorter than the {cfg['frames_range'][0]} covered by "
            f"{name}; {fix}")
    lp = _effective_lowpass(tr, lowpass)
    if lp is not None and not lp_lo <= lp <= lp_hi:
        raise InputValidationError(
            f"low-pass {lp:g} Hz is outside the {lp_lo:g}–{lp_hi:g} Hz covered by {name}; "
            f"use no low-pass or one in range, or {fix}")


def read_surrogate(card_path: Path, lowpass: float | None = None) -> Surrogate:
    """Load a surrogate from its model card (weights beside it), verifying sha256."""
    card_path = Path(card_path)
    if not card_path.is_file():
        raise MissingInputError(f"surrogate model card {card_path} not found; reinstall the "
                                "package or train one with hemocoupling-train")
    card = json.loads(card_path.read_text())
    weights = card_path.parent / card["weights"]
    if not weights.is_file() or sha256_of(weights) != card["sha256"]:
        raise InputValidationError(
            f"surrogate weights {weights} are missing or do not match the sha256 in "
            f"{card_path}; reinstall the package or retrain with hemocoupling-train")
    state = torch.load(weights, weights_only=True, map_location="cpu")
    return Surrogate(card, state, lowpass)


def load_surrogate(model: str, tr: float, n_frames: int, lowpass: float | None = None,
                   card_path: Path | None = None) -> Surrogate:
    """The shipped surrogate for ``model`` (a name in ``bids_app.models.MODELS``), checked
    for the protocol.

    Parameters
    ----------
    model : str
    tr : float
        Repetition time in s.
    n_frames : int
    lowpass : float or None
        Low-pass cut-off (Hz) the cleaning should apply; use it for data that were
        already band-passed (at or below their own cut-off), so that the masked bands
        above it are ignored consistently in training and in use.
    card_path : Path, optional
        A model card written by ``hemocoupling-train`` instead of the shipped one.

    Raises
    ------
    InputValidationError
        The protocol is outside the surrogate's range, or the weights fail sha256.
    """
    if model not in SHIPPED:
        raise InputValidationError(f"unknown HRF model {model!r}; choose one of "
                                   f"{sorted(SHIPPED)}")
    path = Path(card_path) if card_path else WEIGHTS_DIR / f"{SHIPPED[model]}.json"
    surrogate = _cached_read(str(path), lowpass)
    check_coverage(surrogate.card, tr, n_frames, lowpass)
    return surrogate


@lru_cache(maxsize=8)
def _cached_read(path: str, lowpass: float | None) -> Surrogate:
    return read_surrogate(Path(path), lowpass)


def _table_check(trainer: Trainer) -> dict:
    """One-parameter models (tabulated): tabulation error against the flow at a
    reference protocol (TR 0.72, 1200)."""
    if MODELS[trainer.config.model].n_params != 1:
        return {}
    proto = Protocol(0.72, min(1200, int(trainer.config.frames_range[1])))
    noise_ar = float(np.mean(trainer.config.prior["ar_coef"]))
    vec = conditioning_vector(trainer.config, proto, noise_ar)
    return {"loglik_table_error": {"protocol": [proto.tr, proto.n_frames],
                                   "noise_ar": noise_ar if trainer.config.noise_context else None,
                                   **table_error(trainer.flow, vec)}}


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
                "Wider than the one-subject HCP calibration of DESIGN.md §2 (noise sd, "
                "amplitudes and event rates spread log-uniformly over about a decade "
                f"around it, AR(1) noise with φ in {list(config.prior['ar_coef'])}) so other "
                "scanners, subjects and preprocessing fall inside; check_calibration says "
                "when data do not."),
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
                 "affines" if MODELS[config.model].n_params == 1 else
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
                   "derivatives" if MODELS[config.model].n_params == 1 else
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
