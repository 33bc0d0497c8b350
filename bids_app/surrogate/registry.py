"""Shipped surrogates: loading (with sha256 check), protocol coverage, and the object
the workflow uses (summarise, log-likelihood, calibration check).

One surrogate per HRF model covers every supported protocol: TR, run length and
low-pass cut-off are network inputs, not what selects a file.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from bids_app.errors import InputValidationError, MissingInputError
from bids_app.models import MODELS, HRFModel
from bids_app.preprocess import Preprocessing
from bids_app.surrogate.features import (
    N_PROTOCOL,
    Protocol,
    feature_matrix,
    protocol_vector,
)
from bids_app.surrogate.likelihood import (
    LoglikFn,
    LoglikTable,
    LoglikTable2,
    autograd_loglik,
    flow_loglik,
)
from bids_app.surrogate.networks import SummaryNet, build_flow
from bids_app.surrogate.training import TrainingConfig, noise_context

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
        n_summary = self.config.n_summary
        self.summary = SummaryNet(2 * self.config.n_bands + N_PROTOCOL, n_summary,
                                  self.config.summary_hidden, self.config.summary_layers)
        self.flow = build_flow(n_summary, self.config.n_context, n_layers=self.config.flow_layers,
                               hidden=self.config.flow_hidden, num_bins=self.config.flow_bins)
        self.summary.load_state_dict({k[8:]: v for k, v in state.items()
                                      if k.startswith("summary.")})
        self.flow.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("flow.")})
        self.summary.eval()
        self.flow.eval()
        self._tables: dict[tuple, LoglikTable | LoglikTable2] = {}

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
        """S(y) ≈ E[θ̃ | y] per vertex, then any extra outputs: (V, n_summary) float32,
        from cleaned series (V, T) from which ``n_regressors`` confound columns were
        removed."""
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
        summaries = np.asarray(summaries, dtype=np.float32).reshape(-1, self.config.n_summary)
        if self.model.n_params == 1 and self.config.n_summary <= 2:
            return self.table(proto, noise_ar).bind(summaries)
        return flow_loglik(self.flow, summaries, self.conditioning(proto, noise_ar),
                           self.model.n_params)

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
        summaries = np.asarray(summaries, dtype=np.float32).reshape(-1, self.config.n_summary)
        return autograd_loglik(self.flow, summaries, self.conditioning(proto, noise_ar),
                               self.model.n_params)

    def table(self, protocol: Protocol, noise_ar: float | None = None
              ) -> LoglikTable | LoglikTable2:
        """The (cached) tabulation of the 1p flow for one protocol (and φ), over one
        summary or two (a card with a second output)."""
        vec = self.conditioning(protocol, noise_ar)
        key = tuple(vec.tolist())
        if key not in self._tables:
            kind = LoglikTable if self.config.n_summary == 1 else LoglikTable2
            self._tables[key] = kind(self.flow, vec)
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
