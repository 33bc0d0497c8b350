"""Simulate-and-train: the summary network by MSE, then the flow by maximum likelihood.

Training series are simulated on the fly with :mod:`bids_app.simulate` for protocols
drawn at random (TR, run length, low-pass cut-off, confound strategy), cleaned with the
app's own :func:`~bids_app.preprocess.clean` — removing the strategy's regressors built
from a simulated confounds table by the app's own strategy code — and reduced to
spectral features. The summary
network and the flow see disjoint simulations, so the flow learns the spread of S on
data the summary network never fitted. Every random draw comes from the seed, each
epoch's shuffle from (seed, stage, epoch), so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kstest, norm

from bids_app.errors import UsageError
from bids_app.models import MODELS, time_to_peak
from bids_app.preprocess import Preprocessing
from bids_app.simulate.bold import NuisancePrior, simulate_training_set
from bids_app.simulate.confounds import STRATEGIES, STRATEGY_WIDTHS, regressors_of_count
from bids_app.simulate.nuisance import FMRIPREP_NUISANCE, shared_fluctuation
from bids_app.surrogate.features import N_BANDS, N_PROTOCOL, Protocol, feature_matrix
from bids_app.surrogate.networks import SummaryNet, build_flow

LOG = logging.getLogger(__name__)

# The flow's noise-colour input is φ times this, so that φ ∈ [0, 0.1] spans [0, 2], the
# scale of the other context inputs.
NOISE_AR_SCALE = 20.0
# Share of the flow's training series that are told their φ; the others are told nothing
# (marker 0), so one flow gives both q(S | θ̃, φ) and the marginal q(S | θ̃) over the
# prior's φ, and the evidence can prefer the marginal where conditioning does not help.
NOISE_TOLD_FRACTION = 0.5
# Extra summary outputs a 1-parameter surrogate can learn beside E[θ̃ | y], each fitted
# to a statistic of θ that moves where the posterior mean barely does (slow HRFs, whose
# posterior is broad): the standardised time to peak (MSE) or the logit of θ below
# SLOW_THETA (cross-entropy). Experimental, not shipped: benchmarks/bench_recovery.py.
SUMMARY_EXTRAS = ("time_to_peak", "slow_logit")
SLOW_THETA = 0.9


@dataclass
class TrainingConfig:
    """Everything that determines a trained surrogate (stored in its model card).

    Attributes
    ----------
    model : str
        A name in :data:`bids_app.models.MODELS` (its training prior and flow size are
        the defaults of ``prior``, ``flow_layers`` and ``flow_hidden``).
    seed : int
    tr_range : (s, s)
        TRs drawn log-uniformly.
    frames_range : (int, int)
        Run lengths drawn log-uniformly; longer runs are served with the duration input
        capped at the maximum (a conservative, wider likelihood).
    lowpass_range : (Hz, Hz)
        Low-pass cut-offs drawn log-uniformly for a ``lowpass_fraction`` of protocols;
        the others are cleaned without a low-pass.
    confounds : tuple of str
        Confound strategies drawn with equal probability per protocol draw; their
        regressors come from a simulated confounds table and are removed by ``clean``.
    n_train : int
        Simulated series per network (summary and flow each get their own).
    n_val : int
        Held-out series for the validation metrics.
    block : int
        Series simulated per protocol draw.
    noise_context : bool
        Tell the flow the noise's AR(1) coefficient φ (``--noise-context``; off by
        default), for a share :data:`NOISE_TOLD_FRACTION` of its training series:
        q(S | θ̃, φ) besides the q that averages over φ, which biases θ̃ wherever the
        data's noise colour is not the prior's average
        (benchmarks/bench_nuisance_bias.py). The workflow then selects a run's φ, or
        none, by Laplace evidence. Not shipped: the selection trades φ against θ̃
        (README, Known limitations).
    summary_extra : tuple of str
        Names from :data:`SUMMARY_EXTRAS`: outputs the summary network learns beside
        E[θ̃ | y] (1-parameter models); the flow then models the joint S. Empty (the
        default, left out of :meth:`to_dict`) is the shipped one-output summary.
    """

    model: str
    seed: int = 0
    tr_range: tuple[float, float] = (0.5, 3.0)
    frames_range: tuple[int, int] = (150, 1200)
    lowpass_range: tuple[float, float] = (0.04, 0.3)
    lowpass_fraction: float = 0.5
    confounds: tuple[str, ...] = STRATEGIES
    n_train: int = 200_000
    n_val: int = 20_000
    block: int = 256
    epochs_summary: int = 30
    epochs_flow: int = 30
    batch: int = 512
    lr: float = 1e-3
    summary_hidden: int = 128
    summary_layers: int = 3
    flow_layers: int | None = None
    flow_hidden: int | None = None
    flow_bins: int = 8
    n_bands: int = N_BANDS
    threads: int = 1
    prior: dict = field(default_factory=dict)
    noise_context: bool = False
    summary_extra: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.prior:
            self.prior = training_prior(self.model)
        layers, hidden = MODELS[self.model].flow_size
        self.flow_layers = self.flow_layers or layers
        self.flow_hidden = self.flow_hidden or hidden
        self.tr_range = tuple(self.tr_range)
        self.frames_range = tuple(self.frames_range)
        self.lowpass_range = tuple(self.lowpass_range)
        self.confounds = tuple(self.confounds)
        self.summary_extra = tuple(self.summary_extra)
        unknown = set(self.summary_extra) - set(SUMMARY_EXTRAS)
        if unknown or (self.summary_extra and MODELS[self.model].n_params != 1):
            raise UsageError(f"summary outputs {sorted(unknown) or list(self.summary_extra)} "
                             f"are not available for model {self.model}; extra outputs are "
                             f"{', '.join(SUMMARY_EXTRAS)} for 1p")

    @property
    def n_summary(self) -> int:
        """Summary outputs: E[θ̃ | y] per parameter, then the extras."""
        return MODELS[self.model].n_params + len(self.summary_extra)

    @property
    def n_context(self) -> int:
        """Flow context width: θ̃, then φ (if told), then the protocol vector."""
        return MODELS[self.model].n_params + 2 * int(self.noise_context) + N_PROTOCOL

    def nuisance_prior(self) -> NuisancePrior:
        return NuisancePrior(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in self.prior.items()})

    def to_dict(self) -> dict:
        """The stored form; without extras it is what cards held before they existed."""
        out = asdict(self)
        if not self.summary_extra:
            del out["summary_extra"]
        return out


def summary_targets(config: TrainingConfig, theta_t: np.ndarray
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (N, n_summary) of the summary network and which columns are class
    labels (fitted by cross-entropy on logits) rather than values (fitted by MSE)."""
    columns, labels = [theta_t], [False] * theta_t.shape[1]
    theta = MODELS[config.model].to_theta(theta_t)[:, :1]
    for name in config.summary_extra:
        if name == "time_to_peak":
            ttp = time_to_peak(theta)
            columns.append((ttp - ttp.mean()) / ttp.std())
        else:
            columns.append((theta < SLOW_THETA).astype(float))
        labels.append(name == "slow_logit")
    return (torch.from_numpy(np.concatenate(columns, axis=1).astype(np.float32)),
            torch.tensor(labels))


def summary_loss(output: torch.Tensor, target: torch.Tensor, labels: torch.Tensor
                 ) -> torch.Tensor:
    """Mean over columns of MSE (values) or logit cross-entropy (class labels); for the
    one-output summary this is the MSE alone."""
    mse = (output - target) ** 2
    if not labels.any():
        return mse.mean()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(output, target,
                                                               reduction="none")
    return torch.where(labels, bce, mse).mean()


def training_prior(model: str, nuisance: str = "real") -> dict:
    """The nuisance prior a surrogate of ``model`` is trained under: the model's own
    white/AR(1) prior (``ar1``, the paper's) plus, for ``real``, the fMRIPrep-grade
    family of :data:`bids_app.simulate.nuisance.FMRIPREP_NUISANCE`."""
    extra = FMRIPREP_NUISANCE if nuisance == "real" else {}
    return NuisancePrior(**MODELS[model].training_prior, **extra).to_dict()


def noise_context(phi: np.ndarray) -> np.ndarray:
    """The flow's noise-colour context columns (..., 2) float32: (20·φ, 1) where φ is
    told, (0, 0) where it is not (NaN)."""
    phi = np.asarray(phi, dtype=np.float32)
    told = np.isfinite(phi)
    return np.stack([np.where(told, phi * NOISE_AR_SCALE, 0.0), told], axis=-1
                    ).astype(np.float32)


def flow_context(config: TrainingConfig, theta_t: torch.Tensor, protocol: torch.Tensor,
                 phi: np.ndarray | None = None) -> torch.Tensor:
    """The flow's context rows, in the one order training and use share: θ̃, then (for a
    ``noise_context`` flow) the noise columns of φ (NaN: not told), then the protocol."""
    told = [torch.from_numpy(noise_context(phi))] if config.noise_context else []
    return torch.cat([theta_t, *told, protocol], dim=1)


def draw_protocol(config: TrainingConfig, rng: np.random.Generator) -> Protocol:
    """A random protocol from the configured ranges."""
    tr = float(np.exp(rng.uniform(*np.log(config.tr_range))))
    frames = int(np.rint(np.exp(rng.uniform(*np.log(config.frames_range)))))
    lowpass = None
    if rng.random() < config.lowpass_fraction:
        lowpass = float(np.exp(rng.uniform(*np.log(config.lowpass_range))))
        if lowpass >= 0.5 / tr:
            lowpass = None
    strategy = config.confounds[rng.integers(len(config.confounds))]
    return Protocol(tr, frames, lowpass, STRATEGY_WIDTHS[strategy])


def simulate_features(config: TrainingConfig, n: int, rng: np.random.Generator,
                      protocol: Protocol | None = None,
                      progress: Callable[[int], None] | None = None,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulated (θ̃ (n, P), features (n, F), noise AR(1) φ (n,)) over random protocols
    (or a fixed one).

    Each block of ``config.block`` series shares one protocol and one simulated
    confounds table, as the vertices of a run share theirs.
    """
    prior = config.nuisance_prior()
    thetas, feats, phis = [], [], []
    done = 0
    while done < n:
        size = min(config.block, n - done)
        proto = protocol or draw_protocol(config, rng)
        shared = (shared_fluctuation(proto.n_frames, proto.tr, rng) if prior.shared[1] > 0
                  else None)
        regressors = regressors_of_count(proto.n_regressors, proto.n_frames, proto.tr, rng,
                                         shared)
        theta_t, y, phi = simulate_training_set(
            config.model, size, proto.tr, proto.n_frames, prior,
            Preprocessing(lowpass=proto.lowpass), rng, confounds=regressors, with_ar_coef=True,
            shared=shared)
        thetas.append(theta_t)
        feats.append(feature_matrix(y, proto, config.n_bands))
        phis.append(phi)
        done += size
        if progress:
            progress(size)
    return np.concatenate(thetas), np.concatenate(feats), np.concatenate(phis)


def _cosine_lr(config: TrainingConfig, epoch: int, epochs: int) -> float:
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def _epoch_batches(n: int, batch: int, seed: int, stage: int, epoch: int) -> list[np.ndarray]:
    order = np.random.default_rng([seed, stage, epoch]).permutation(n)
    return [order[i: i + batch] for i in range(0, n, batch)]


class Trainer:
    """Runs (and resumes) the three stages: simulate, fit summary, fit flow.

    Parameters
    ----------
    config : TrainingConfig
    work_dir : Path
        Holds ``data.npz`` and ``checkpoint.pt``; a rerun with the same directory resumes.
    """

    def __init__(self, config: TrainingConfig, work_dir: Path):
        self.config = config
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        n_features = 2 * config.n_bands + N_PROTOCOL
        torch.manual_seed(config.seed)
        self.summary = SummaryNet(n_features, config.n_summary, config.summary_hidden,
                                  config.summary_layers)
        self.flow = build_flow(config.n_summary, config.n_context, n_layers=config.flow_layers,
                               hidden=config.flow_hidden, num_bins=config.flow_bins)
        self.history: dict[str, list[float]] = {"summary": [], "flow": []}
        self.elapsed = 0.0
        self._check_config()

    def _check_config(self) -> None:
        """Refuse to resume a work folder that was started with another configuration."""
        path = self.work_dir / "config.json"
        current = json.loads(json.dumps(self.config.to_dict()))
        if path.exists():
            saved = json.loads(path.read_text())
            if saved != current:
                changed = sorted(k for k in current if saved.get(k) != current[k])
                raise UsageError(f"{self.work_dir} holds a run with other settings "
                                 f"({', '.join(changed)}); use a new --out or --work-dir")
        else:
            path.write_text(json.dumps(current, indent=2))

    # -- data -------------------------------------------------------------------------
    def data(self) -> dict[str, np.ndarray]:
        """Simulated training and validation sets, cached in ``data.npz``."""
        path = self.work_dir / "data.npz"
        if path.exists():
            with np.load(path) as f:
                return dict(f)
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        bar = _progress(2 * cfg.n_train + cfg.n_val, "simulate")
        out = {}
        for name, n in (("summary", cfg.n_train), ("flow", cfg.n_train), ("val", cfg.n_val)):
            out[f"{name}_theta"], out[f"{name}_x"], out[f"{name}_ar"] = simulate_features(
                cfg, n, rng, progress=bar.update)
        bar.close()
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **out)
        tmp.replace(path)
        return out

    # -- checkpoint ---------------------------------------------------------------------
    def _checkpoint_path(self) -> Path:
        return self.work_dir / "checkpoint.pt"

    def _save(self, stage: str, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        state = {"summary": self.summary.state_dict(), "flow": self.flow.state_dict(),
                 "optimizer": optimizer.state_dict(), "stage": stage, "epoch": epoch,
                 "history": self.history, "elapsed": self.elapsed}
        tmp = self._checkpoint_path().with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self._checkpoint_path())

    def _load(self) -> dict | None:
        path = self._checkpoint_path()
        if not path.exists():
            return None
        state = torch.load(path, weights_only=True)
        self.summary.load_state_dict(state["summary"])
        self.flow.load_state_dict(state["flow"])
        self.history = state["history"]
        self.elapsed = state["elapsed"]
        return state

    # -- training -----------------------------------------------------------------------
    def run(self) -> dict:
        """Train (or resume) both networks; returns validation metrics."""
        cfg = self.config
        torch.set_num_threads(cfg.threads)
        start = time.perf_counter()
        data = self.data()
        sim_time = time.perf_counter() - start
        state = self._load()
        self.elapsed += sim_time if state is None else 0.0
        self._fit_summary(data, state)
        state = self._load()
        self._fit_flow(data, state)
        metrics = self.validate(data)
        return metrics

    def _fit_summary(self, data: dict, state: dict | None) -> None:
        cfg = self.config
        x = torch.from_numpy(data["summary_x"])
        y, labels = summary_targets(cfg, data["summary_theta"])
        optimizer = torch.optim.Adam(self.summary.parameters(), lr=cfg.lr)
        first = 0
        if state is not None:
            if state["stage"] == "flow":
                return
            optimizer.load_state_dict(state["optimizer"])
            first = state["epoch"] + 1
        else:
            self.summary.fit_scaling(x)
        self._run_epochs("summary", "mse", optimizer, first, cfg.epochs_summary, len(x),
                         lambda idx: summary_loss(self.summary(x[idx]), y[idx], labels))

    def summaries(self, features: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self.summary(torch.from_numpy(features))

    def _flow_inputs(self, data: dict, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.summaries(data[f"{name}_x"])
        theta = torch.from_numpy(data[f"{name}_theta"])
        proto = torch.from_numpy(data[f"{name}_x"][:, -N_PROTOCOL:])
        phi = data[f"{name}_ar"].astype(np.float32)
        untold = np.random.default_rng([self.config.seed, 3, len(name)]).random(len(phi))
        phi[untold >= NOISE_TOLD_FRACTION] = np.nan
        return s, flow_context(self.config, theta, proto, phi)

    def _fit_flow(self, data: dict, state: dict | None) -> None:
        cfg = self.config
        s, context = self._flow_inputs(data, "flow")
        optimizer = torch.optim.Adam(self.flow.parameters(), lr=cfg.lr)
        first = 0
        if state is not None and state["stage"] == "flow":
            optimizer.load_state_dict(state["optimizer"])
            first = state["epoch"] + 1
        else:
            self.flow.fit_scaling(s)
        self._run_epochs("flow", "nll", optimizer, first, cfg.epochs_flow, len(s),
                         lambda idx: -self.flow.log_prob(s[idx], context[idx]).mean(),
                         clip=self.flow.parameters)

    def _run_epochs(self, stage: str, metric: str, optimizer: torch.optim.Optimizer,
                    first: int, epochs: int, n: int, loss_of, clip=None) -> None:
        """Cosine-scheduled minibatch epochs ``first..epochs-1`` of one stage, with a
        checkpoint after each so a killed run resumes at the next epoch."""
        cfg = self.config
        stream = {"summary": 1, "flow": 2}[stage]
        for epoch in range(first, epochs):
            t0 = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = _cosine_lr(cfg, epoch, epochs)
            total = 0.0
            for idx in _epoch_batches(n, cfg.batch, cfg.seed, stream, epoch):
                loss = loss_of(idx)
                optimizer.zero_grad()
                loss.backward()
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(clip(), 5.0)
                optimizer.step()
                total += loss.item() * len(idx)
            self.history[stage].append(total / n)
            self.elapsed += time.perf_counter() - t0
            _log(f"{stage} epoch {epoch + 1}/{epochs} {metric} {total / n:.4f}")
            self._save(stage, epoch, optimizer)

    def validate(self, data: dict) -> dict:
        """Held-out metrics: summary MSE and r per parameter, flow NLL, PIT KS."""
        s, context = self._flow_inputs(data, "val")
        theta = torch.from_numpy(data["val_theta"])
        with torch.no_grad():
            nll = float(-self.flow.log_prob(s, context).mean())
            pit = probability_integral_transform(self.flow, s, context)
        p = theta.shape[1]
        mse = ((s[:, :p] - theta) ** 2).mean(0).tolist()
        r = [float(np.corrcoef(s[:, j], theta[:, j])[0, 1]) for j in range(p)]
        ks = [float(kstest(pit[:, j], "uniform").statistic) for j in range(pit.shape[1])]
        extra = {}
        if self.config.summary_extra:
            target, _ = summary_targets(self.config, data["val_theta"])
            extra = {"summary_extra_r": [float(np.corrcoef(s[:, j], target[:, j])[0, 1])
                                         for j in range(p, s.shape[1])]}
        return {"summary_mse_latent": mse, "summary_r_latent": r, **extra, "flow_nll": nll,
                "pit_ks": ks, "n_val": len(s)}


def probability_integral_transform(flow: torch.nn.Module, s: torch.Tensor,
                                   context: torch.Tensor) -> np.ndarray:
    """Rosenblatt PIT Φ(f(s)) (N, P): uniform on [0, 1]^P when q is calibrated."""
    z = (s - flow.summary_mean) / flow.summary_sd
    if hasattr(flow, "blocks"):
        for block in flow.blocks:
            z, _ = block(z, context)
    else:
        z, _ = flow.flow._transform(z, context=context)
    return norm.cdf(z.numpy())


def _progress(total: int, desc: str):
    """tqdm bar on a terminal; otherwise a stand-in that logs every ~10%."""
    if sys.stderr.isatty():
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit="series")
    return _LogProgress(total, desc)


class _LogProgress:
    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.done, self.next = total, desc, 0, 0.1

    def update(self, n: int) -> None:
        self.done += n
        if self.done / self.total >= self.next:
            _log(f"{self.desc}: {self.done}/{self.total}")
            self.next += 0.1

    def close(self) -> None:
        pass


def _log(message: str) -> None:
    LOG.info(message)
