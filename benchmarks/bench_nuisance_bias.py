"""Which nuisance setting biases the pooled 1p likelihood: an ablation (issue 4).

``bench_surrogate.py --pooled`` shows that the argmax of Σ_v log q(S_v | θ̃) over
thousands of vertices of one HCP-calibrated run sits 0.04–0.21 latent units below the
truth, which no resampling of the data can reproduce. This script asks why.

At one protocol (TR 0.72 s, 1,200 frames, no confound regression) it simulates
training series from the 1p surrogate's own training prior, keeps the shipped summary
network S(y), and fits small conditional flows that differ only in what they are told
besides θ̃:

- ``θ``: nothing (the shipped design, refitted at this one protocol);
- ``θ,snr``: a per-vertex estimate of log SNR (a small network on the same spectral
  features, trained on the same series);
- ``θ,snr,ar,rate``: per-vertex estimates of log SNR, noise AR(1) coefficient and log
  event rate;
- ``θ,φ``: the true noise AR(1) coefficient φ, as if the run's noise colour were a
  known run-level setting;
- ``θ,φ,snr``: both.

It then prints the pooled-argmax bias (2,000 vertices at one true θ̃) of the shipped
surrogate (told each series' true φ when its flow takes φ, as from 1p-v4) and of each
flow, for runs whose nuisance is the HCP calibration (white
noise, φ = 0: the edge of the training range 0–0.1), the HCP calibration with φ = 0.05
(mid-range), the training prior with φ = 0, and the training prior itself. Last, the
profile log-likelihood of the run's φ under the ``θ,φ,snr`` flow: whether pooled
summaries identify the noise colour a run-level setting would need.

Run: ``.venv/bin/python benchmarks/bench_nuisance_bias.py`` (about
4 min on 2 cores with ``OMP_NUM_THREADS=2``; ``--n`` series per stage, default 100,000).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from bids_app.models import ONE_PARAM
from bids_app.preprocess import clean
from bids_app.simulate import HCP_1P, NuisancePrior, sample_nuisance, simulate_bold
from bids_app.surrogate import load_surrogate
from bids_app.surrogate.features import Protocol, feature_matrix, protocol_vector
from bids_app.surrogate.networks import ScalarFlow, mlp
from bids_app.surrogate.training import flow_context

TR, FRAMES = 0.72, 1200
TRUTHS = (-1.5, -0.5, 0.0, 0.5, 1.5)
COARSE = torch.linspace(-3.0, 3.0, 121)
FINE = torch.linspace(-0.05, 0.05, 21)
BATCH = 512


def simulate(prior: NuisancePrior, theta_t: np.ndarray, rng: np.random.Generator,
             surrogate) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectral features (n, F) and nuisance labels (n, 3): log SNR, φ, log rate."""
    nuisance = sample_nuisance(prior, len(theta_t), rng)
    raw = simulate_bold(ONE_PARAM, ONE_PARAM.to_theta(theta_t[:, None]), TR, FRAMES,
                        nuisance, rng)
    x = feature_matrix(clean(raw, TR, surrogate.preprocessing), Protocol(TR, FRAMES))
    low, high = nuisance["amp_low"], nuisance["amp_high"]
    mean_sq_amplitude = (low**2 + low * high + high**2) / 3.0
    snr = np.log(mean_sq_amplitude * nuisance["rate"] / nuisance["noise_sd"] ** 2)
    labels = np.stack([snr, nuisance["ar_coef"], np.log(nuisance["rate"])], axis=1)
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.float32))


def fit(module: torch.nn.Module, loss_of, n: int, epochs: int, seed: int) -> None:
    """Adam with a cosine schedule over seeded minibatches."""
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * 0.5 * (1.0 + np.cos(np.pi * epoch / epochs))
        order = np.random.default_rng([seed, epoch]).permutation(n)
        for start in range(0, n, BATCH):
            loss = loss_of(torch.from_numpy(order[start: start + BATCH]))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
            optimizer.step()


class NuisanceNet(torch.nn.Module):
    """Standardised (log SNR, φ, log rate) regressed on the spectral features."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor):
        super().__init__()
        self.x_mean, self.x_sd = x.mean(0), x.std(0).clamp_min(1e-3)
        self.y_mean, self.y_sd = labels.mean(0), labels.std(0)
        self.net = mlp(x.shape[1], labels.shape[1], 64, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.x_mean) / self.x_sd)

    def target(self, labels: torch.Tensor) -> torch.Tensor:
        return (labels - self.y_mean) / self.y_sd


def pooled_bias(log_prob, truth: float) -> float:
    """argmax of Σ_v log q(S_v | θ̃, extras_v) (0.05 grid on [−3, 3], then 0.005 around
    the best point), minus the truth."""
    best = torch.tensor(0.0)
    for offsets in (COARSE, FINE):
        grid = offsets + best
        with torch.no_grad():
            totals = torch.stack([log_prob(g).sum() for g in grid])
        best = grid[totals.argmax()]
    return float(best) - truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="series per stage")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    surrogate = load_surrogate("1p", TR, FRAMES)
    training = surrogate.config.nuisance_prior()
    rng = np.random.default_rng(args.seed)
    n = args.n
    theta = rng.standard_normal(2 * n).astype(np.float32)
    parts = [simulate(training, theta[a: a + 20_000], rng, surrogate)
             for a in range(0, 2 * n, 20_000)]
    x = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    theta_all = torch.from_numpy(theta)
    with torch.no_grad():
        s = surrogate.summary(x)
    nuisance_net = NuisanceNet(x[:n], labels[:n])
    fit(nuisance_net, lambda i: ((nuisance_net(x[i]) - nuisance_net.target(labels[i])) ** 2
                                 ).mean(), n, 6, args.seed)
    with torch.no_grad():
        estimate = nuisance_net(x)
    held = nuisance_net.target(labels[n:])
    r2 = 1 - ((estimate[n:] - held) ** 2).mean(0) / held.var(0)
    print(f"TR {TR} s, {FRAMES} frames; {2 * n} training-prior series "
          f"({time.perf_counter() - start:.0f} s); held-out R² of the nuisance estimates: "
          f"log SNR {r2[0]:.3f}, φ {r2[1]:.3f}, log rate {r2[2]:.3f}", flush=True)

    phi_scale = 20.0  # φ ∈ [0, 0.1] → [0, 2], the scale of the other context inputs
    contexts = {
        "θ,snr": lambda est, lab: est[:, :1],
        "θ,snr,ar,rate": lambda est, lab: est,
        "θ,φ": lambda est, lab: lab[:, 1:2] * phi_scale,
        "θ,φ,snr": lambda est, lab: torch.cat([lab[:, 1:2] * phi_scale, est[:, :1]], 1),
        "θ": lambda est, lab: est[:, :0],
    }
    flows = {}
    for name, extra_of in contexts.items():
        extra = extra_of(estimate[n:], labels[n:])
        context = torch.cat([theta_all[n:, None], extra], dim=1)
        flow = ScalarFlow(context.shape[1])
        flow.fit_scaling(s[n:])
        fit(flow, lambda i, f=flow, c=context: -f.log_prob(s[n:][i], c[i]).mean(),
            n, args.epochs, args.seed + 1)
        flow.eval()
        with torch.no_grad():
            nll = -flow.log_prob(s[n:], context).mean()
        flows[name] = (flow, extra_of)
        print(f"flow q(S | {name}): training NLL {nll:.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)

    proto = torch.from_numpy(protocol_vector(Protocol(TR, FRAMES)))
    runs = {
        "HCP (φ 0)": HCP_1P,
        "HCP, φ 0.05": dataclasses.replace(HCP_1P, ar_coef=(0.05, 0.05)),
        "training, φ 0": dataclasses.replace(training, ar_coef=(0.0, 0.0)),
        "training": training,
    }
    names = ["shipped", *flows]
    print("\npooled-argmax bias (latent units), 2000 vertices at one true θ̃:")
    print(f"{'run nuisance':15s} {'truth':>5s} " + " ".join(f"{k:>14s}" for k in names))
    for label, prior in runs.items():
        for truth in TRUTHS:
            xv, lab = simulate(prior, np.full(2000, truth, np.float32),
                               np.random.default_rng(0), surrogate)
            with torch.no_grad():
                sv, est = surrogate.summary(xv), nuisance_net(xv)

            true_phi = lab[:, 1].numpy()

            def shipped(g, sv=sv, phi=true_phi):
                ctx = flow_context(surrogate.config, g.expand(len(sv), 1),
                                   proto.expand(len(sv), -1), phi)
                return surrogate.flow.log_prob(sv, ctx)

            biases = [pooled_bias(shipped, truth)]
            for flow, extra_of in flows.values():
                extra = extra_of(est, lab)
                biases.append(pooled_bias(
                    lambda g, f=flow, e=extra, sv=sv: f.log_prob(
                        sv, torch.cat([g.expand(len(sv), 1), e], 1)), truth))
            print(f"{label:15s} {truth:+5.1f} " + " ".join(f"{b:+14.3f}" for b in biases),
                  flush=True)
    phi_profile(flows["θ,φ,snr"][0], nuisance_net, surrogate, phi_scale)
    print(f"\n{time.perf_counter() - start:.0f} s wall")


def phi_profile(flow: ScalarFlow, nuisance_net: NuisanceNet, surrogate, phi_scale: float
                ) -> None:
    """Is the run's φ identified by the pooled summaries? Profile Σ_v log q(S_v | θ̃, φ,
    snr_v) over candidate φ on runs that share one φ: first with one θ̃ shared by every
    vertex (the most favourable case), then with θ̃ varying and maximised per vertex
    (the least favourable; a real run's spatial prior sits between the two)."""
    candidates = (0.0, 0.025, 0.05, 0.075, 0.1)
    print("\nprofile log-likelihood over the run's φ (nats below the best candidate; "
          "argmax θ̃ − truth in brackets), HCP calibration, 2000 vertices:")
    print(f"{'true φ':>6s} {'truth':>5s} " + " ".join(f"{c:>15.3f}" for c in candidates))
    for true_phi in (0.0, 0.05):
        prior = dataclasses.replace(HCP_1P, ar_coef=(true_phi, true_phi))
        for truth in (-0.5, 0.0, 0.5):
            xv, _ = simulate(prior, np.full(2000, truth, np.float32),
                             np.random.default_rng(0), surrogate)
            with torch.no_grad():
                sv, snr = surrogate.summary(xv), nuisance_net(xv)[:, :1]
            cells = []
            for phi in candidates:
                extra = torch.cat([torch.full_like(snr, phi * phi_scale), snr], 1)

                def log_prob(g, e=extra, sv=sv):
                    return flow.log_prob(sv, torch.cat([g.expand(len(sv), 1), e], 1))

                bias = pooled_bias(log_prob, truth)
                with torch.no_grad():
                    value = float(log_prob(torch.tensor(truth + bias)).sum())
                cells.append((value, bias))
            best = max(v for v, _ in cells)
            print(f"{true_phi:6.3f} {truth:+5.1f} "
                  + " ".join(f"{v - best:8.1f} ({b:+.2f})" for v, b in cells), flush=True)
    print("\nthe same with θ̃_v ~ N(0, 0.5²) per vertex and θ̃ maximised per vertex (no "
          "pooling of θ̃ at all; nats below the best candidate):")
    grid = torch.linspace(-3.0, 3.0, 601)
    for true_phi in (0.0, 0.05):
        prior = dataclasses.replace(HCP_1P, ar_coef=(true_phi, true_phi))
        rng = np.random.default_rng(1)
        truth = (0.5 * rng.standard_normal(2000)).astype(np.float32)
        xv, _ = simulate(prior, truth, rng, surrogate)
        with torch.no_grad():
            sv, snr = surrogate.summary(xv), nuisance_net(xv)[:, :1]
            values = []
            for phi in candidates:
                extra = torch.cat([torch.full_like(snr, phi * phi_scale), snr], 1)
                per_vertex = torch.stack([
                    flow.log_prob(sv, torch.cat([g.expand(len(sv), 1), extra], 1))
                    for g in grid]).max(0).values
                values.append(float(per_vertex.sum()))
        print(f"{true_phi:6.3f}  free " + " ".join(f"{v - max(values):15.1f}" for v in values),
              flush=True)


if __name__ == "__main__":
    main()
