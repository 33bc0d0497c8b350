"""Accuracy, calibration, identifiability and speed of the shipped surrogates (issue 3).

Run: ``.venv/bin/python benchmarks/bench_surrogate.py [--n 1000] [--seed 12345]``;
``--pooled [--models 1p 2p]`` runs only the pooled-likelihood bias check (below).

Prints, for held-out simulations from the HCP-calibrated one-parameter simulator
(fresh seed) at TR ∈ {0.72, 1.4, 2.0} s × frames ∈ {200, 600, 1200}: MSE of θ (1/s²)
and Pearson r with the truth for (a) S(y) alone, (b) the per-vertex argmax of
q(S | θ̃), (c) an analytic Whittle baseline (periodogram under a flat neural spectrum,
c·|H_θ(f)|² + σ², fitted per series on a grid). Then flow PIT uniformity, 2p
identifiability, sizes, training times and log-likelihood timings for 32,492 vertices
(2p: exact forward-mode derivatives beside autograd; ``timing``, ``timing_2p_parts``).

``--pooled``: 2000 vertices of one simulated run, all at one true latent θ̃ (TR 0.72 s,
1200 frames), nuisance from the HCP calibration or from the training prior; the argmax
of the pooled log-likelihood Σ_v log q(S_v | θ̃) should sit at the truth. A per-vertex
bias too small to see in the table above becomes the dominant error of a MAP or a
bootstrap that pools thousands of vertices.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from scipy.stats import kstest, pearsonr

from bids_app.models import ONE_PARAM, TWO_PARAM
from bids_app.preprocess import clean
from bids_app.simulate.bold import (
    HCP_1P,
    HCP_2P,
    sample_nuisance,
    simulate_bold,
    simulate_training_set,
)
from bids_app.simulate.confounds import STRATEGIES, simulated_regressors
from bids_app.simulate.hrf import hrf_kernels
from bids_app.surrogate.features import N_PROTOCOL, protocol_vector
from bids_app.surrogate.likelihood import autograd_loglik, flow_loglik, table_error
from bids_app.surrogate.registry import WEIGHTS_DIR, load_surrogate
from bids_app.surrogate.training import (
    flow_context,
    probability_integral_transform,
    simulate_features,
)

TRS = (0.72, 1.4, 2.0)
FRAMES = (200, 600, 1200)
N_VERTICES = 32_492


def whittle_fit(y_clean: np.ndarray, tr: float, highpass: float = 1.0 / 128.0) -> np.ndarray:
    """Per-series Whittle MLE of θ (1p) under S(f) = σ²(1 + r·|H_θ(f)|²).

    σ² is profiled out in closed form; θ (101 values over the link box) and the
    signal-to-noise ratio r (40 log-spaced values) are searched on a grid. Ordinates
    below the cleaning's high-pass and the Nyquist ordinate are left out.
    """
    n = y_clean.shape[1]
    freqs = np.arange(n // 2 + 1) / (n * tr)
    keep = (freqs > highpass) & (np.arange(n // 2 + 1) < n / 2)
    pgram = np.abs(np.fft.rfft(y_clean, axis=1)) ** 2 / n
    pgram = pgram[:, keep]
    k = pgram.shape[1]
    lo, hi = ONE_PARAM.link_bounds()
    thetas = np.linspace(lo[0], hi[0], 101)
    ratios = np.geomspace(1e-2, 1e4, 40)
    kernels = hrf_kernels(ONE_PARAM, thetas[:, None], tr)
    lags = np.arange(kernels.shape[1]) * tr
    gains = np.abs(kernels @ np.exp(-2j * np.pi * np.outer(lags, freqs[keep]))) ** 2
    best = np.full(y_clean.shape[0], -np.inf)
    theta_hat = np.zeros(y_clean.shape[0])
    for i, theta in enumerate(thetas):
        g = gains[i]
        shape = 1.0 + ratios[:, None] * g[None, :]  # (R, K)
        sigma2 = pgram @ (1.0 / shape).T / k  # (V, R)
        ll = -k * np.log(sigma2) - np.log(shape).sum(1)[None, :]
        top = ll.max(1)
        better = top > best
        best[better], theta_hat[better] = top[better], theta
    return theta_hat


def _metrics(estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    return float(np.mean((estimate - truth) ** 2)), float(pearsonr(estimate, truth)[0])


def accuracy_table(n: int, seed: int, confounds: str = "none") -> None:
    print(f"\n## 1p accuracy on held-out HCP-calibrated simulations (n={n} per protocol, "
          f"seed {seed}, confounds {confounds} from a simulated table); MSE in (1/s)^2; "
          f"argmax q with the flow told the calibration's noise colour (white, φ 0)")
    print(f"{'TR':>5} {'frames':>6} | {'S(y) MSE':>9} {'r':>6} | {'argmax q MSE':>12} {'r':>6} "
          f"| {'Whittle MSE':>11} {'r':>6}")
    rng = np.random.default_rng(seed)
    grid = np.linspace(-4, 4, 801)
    for tr in TRS:
        for frames in FRAMES:
            sur = load_surrogate("1p", tr, frames)
            regressors = simulated_regressors(confounds, frames, tr, rng)
            k = 0 if regressors is None else regressors.shape[1]
            theta_t, y = simulate_training_set("1p", n, tr, frames, HCP_1P,
                                               sur.preprocessing, rng, confounds=regressors)
            truth = ONE_PARAM.to_theta(theta_t)[:, 0]
            s = sur.summarize(y, tr, k)
            est_s = ONE_PARAM.to_theta(s)[:, 0]
            table = sur.table(sur.context_protocol(sur.protocol(tr, frames, k)),
                              noise_ar=HCP_1P.ar_coef[0])
            values = table.spline.ev(np.repeat(np.clip(s[:, 0], table.s_grid[0],
                                                       table.s_grid[-1]), grid.size),
                                     np.tile(grid, n)).reshape(n, grid.size)
            est_q = ONE_PARAM.to_theta(grid[values.argmax(1)][:, None])[:, 0]
            est_w = whittle_fit(y.astype(np.float64), tr)
            (ms, rs), (mq, rq), (mw, rw) = (_metrics(e, truth) for e in (est_s, est_q, est_w))
            print(f"{tr:5.2f} {frames:6d} | {ms:9.4f} {rs:6.3f} | {mq:12.4f} {rq:6.3f} "
                  f"| {mw:11.4f} {rw:6.3f}")


def pit_check(model: str, n: int, seed: int) -> None:
    sur = load_surrogate(model, 1.0, 600)
    rng = np.random.default_rng(seed)
    theta_t, x, phi = simulate_features(sur.config, n, rng)
    with torch.no_grad():
        s = sur.summary(torch.from_numpy(x))
        context = flow_context(sur.config, torch.from_numpy(theta_t),
                               torch.from_numpy(x[:, -N_PROTOCOL:]), phi)
        pit = probability_integral_transform(sur.flow, s, context)
    stats = [float(kstest(pit[:, j], "uniform").statistic) for j in range(pit.shape[1])]
    print(f"{model}: KS of Rosenblatt PIT on {n} held-out draws (training prior, random "
          f"protocols): {', '.join(f'{v:.4f}' for v in stats)}")


def identifiability_2p(n: int, seed: int, tr: float = 0.72, frames: int = 1200) -> None:
    sur = load_surrogate("2p", tr, frames)
    rng = np.random.default_rng(seed)
    theta_t, y = simulate_training_set("2p", n, tr, frames, HCP_2P, sur.preprocessing, rng)
    s = sur.summarize(y, tr)
    grid = np.linspace(-2.0, 2.0, 41)
    loglik = sur.loglik(s, tr, frames)
    print(f"\n## 2p identifiability (HCP-calibrated 2p simulator, TR {tr}, {frames} frames, "
          f"n={n})")
    for j, name in enumerate(TWO_PARAM.params):
        other = 1 - j
        curves = []
        for value in grid:
            th = theta_t.astype(float).copy()
            th[:, j] = value
            curves.append(loglik(th)[0])
        curves = np.array(curves)  # (grid, n)
        spread = curves.max(0) - curves.min(0)
        _, _, hess = loglik(theta_t.astype(float))
        r_s = pearsonr(s[:, j], theta_t[:, j])[0]
        print(f"{name}: log q range over θ̃{j + 1} ∈ [-2, 2] at the true θ̃{other + 1}: "
              f"median {np.median(spread):.3f} nats (90th pct {np.percentile(spread, 90):.3f}); "
              f"median curvature -d²/dθ̃² at truth {np.median(-hess[:, j, j]):.3f}; "
              f"r(S_{j + 1}, θ̃{j + 1}) = {r_s:.3f}")


def _pooled_argmax(loglik, n: int, p: int) -> tuple[np.ndarray, float]:
    """argmax over one common θ̃ (P,) of Σ_v log q_v, and the sum there: the best point of
    a 0.25-step grid over [-3, 3]^P, then Newton ascent steps (Hessian shifted to be
    negative definite, step halved until the sum does not decrease) on the summed value,
    gradient, Hessian."""
    def total(point: np.ndarray):
        value, grad, hess = loglik(np.broadcast_to(point, (n, p)).copy())
        return value.sum(), grad.sum(0), hess.sum(0)

    axis = np.linspace(-3.0, 3.0, 25)
    points = np.stack(np.meshgrid(*[axis] * p, indexing="ij"), -1).reshape(-1, p)
    values = [total(point)[0] for point in points]
    theta, value = points[int(np.argmax(values))].astype(float), max(values)
    for _ in range(50):
        _, grad, hess = total(theta)
        hess = hess - max(0.0, np.linalg.eigvalsh(hess).max() + 1e-3) * np.eye(p)
        step = -np.linalg.solve(hess, grad)
        for _ in range(30):
            trial = np.clip(theta + step, -4.0, 4.0)
            new = total(trial)[0]
            if new >= value:
                break
            step = step / 2
        else:
            break
        theta, value = trial, new
        if np.abs(step).max() < 1e-4:
            break
    return theta, float(value)


def pooled_bias(model_name: str, n: int = 2000, seed: int = 0, card: Path | None = None
                ) -> None:
    """Pooled-likelihood argmax at five true latents, HCP and training nuisance; for a
    surrogate told the noise colour, at the candidate φ with the highest pooled
    likelihood and, in brackets, at every candidate (None: not told)."""
    tr, frames = 0.72, 1200
    model, hcp = {"1p": (ONE_PARAM, HCP_1P), "2p": (TWO_PARAM, HCP_2P)}[model_name]
    sur = load_surrogate(model_name, tr, frames, card_path=card)
    print(f"\n## pooled bias {model_name} ({sur.card['id']}): {n} vertices at one true θ̃, "
          f"TR {tr} s, {frames} frames, seed {seed}")
    for label, nuisance_prior in (("HCP", hcp), ("train", sur.config.nuisance_prior())):
        for latent in (-1.5, -0.5, 0.0, 0.5, 1.5):
            start = _clock()
            rng = np.random.default_rng(seed)
            truth = np.full((n, model.n_params), latent)
            nuisance = sample_nuisance(nuisance_prior, n, rng)
            y = clean(simulate_bold(model, model.to_theta(truth), tr, frames, nuisance, rng),
                      tr, sur.preprocessing)
            s = np.asarray(sur.summarize(y, tr), float)
            phis, logliks = sur.candidate_logliks(s, tr, frames)
            fits = [_pooled_argmax(f, n, model.n_params) for f in logliks]
            k = int(np.argmax([value for _, value in fits]))
            best = fits[k][0]
            each = ", ".join(f"{phi}: {np.round(fit[0] - latent, 3)}"
                             for phi, fit in zip(phis, fits, strict=True))
            print(f"{label:5s} truth {latent:+.1f}: mean S {np.round(s.mean(0), 3)}; pooled "
                  f"argmax {np.round(best, 3)} (noise AR φ̂ {phis[k]}); "
                  f"bias {np.round(best - latent, 3)} "
                  + (f"[bias per φ {each}] " if len(phis) > 1 else "")
                  + f"({_clock()[1] - start[1]:.1f} CPU-s)", flush=True)


def _clock() -> tuple[float, float]:
    """(wall, process CPU) seconds; CPU counts every thread of this process."""
    return time.perf_counter(), time.process_time()


def timing() -> None:
    print(f"\n## log-likelihood value+grad+Hessian for {N_VERTICES} vertices (1 thread); "
          "wall s (CPU s)")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    for model in ("1p", "2p"):
        sur = load_surrogate(model, 0.72, 1200)
        p = sur.model.n_params
        s = rng.normal(0, 0.5, (N_VERTICES, p)).astype(np.float32)
        theta = rng.normal(0, 1, (N_VERTICES, p))
        sur._tables.clear()  # time the 1p tabulation too
        paths = [("shipped path", sur.loglik)]
        if model == "2p":
            paths.append(("autograd", sur.exact_loglik))
        for name, make in paths:
            t = [_clock()]
            fn = make(s, 0.72, 1200)
            t.append(_clock())
            fn(theta)
            t.append(_clock())
            fn(theta + 0.01)
            t.append(_clock())
            w, c = (np.diff([x[i] for x in t]) for i in (0, 1))
            print(f"{model} {name}: build {w[0]:.3f} s ({c[0]:.3f}) (1p: tabulation, once per "
                  f"protocol), first call {w[1]:.3f} s ({c[1]:.3f}), next call {w[2]:.3f} s "
                  f"({c[2]:.3f})")


def timing_2p_parts(repeats: int = 5) -> None:
    """2p: the autograd call by part, beside the forward-mode path (min of ``repeats``),
    at 1 and 2 threads, and how far the two agree."""
    sur = load_surrogate("2p", 0.72, 1200)
    rng = np.random.default_rng(0)
    s_np = rng.normal(0, 0.5, (N_VERTICES, 2)).astype(np.float32)
    theta_np = rng.normal(0, 1, (N_VERTICES, 2))
    s, theta = torch.as_tensor(s_np), torch.as_tensor(theta_np, dtype=torch.float32)
    vec = protocol_vector(sur.context_protocol(sur.protocol(0.72, 1200)))
    proto = torch.as_tensor(vec, dtype=torch.float32).expand(N_VERTICES, -1)
    jet = flow_loglik(sur.flow, s_np, vec)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        best = np.full(4, np.inf)
        best_jet = np.full(2, np.inf)
        for _ in range(repeats):
            t = [time.perf_counter()]
            th = theta.clone().requires_grad_(True)
            lp = sur.flow.log_prob(s, torch.cat([th, proto], 1))
            t.append(time.perf_counter())
            (g,) = torch.autograd.grad(lp.sum(), th, create_graph=True)
            t.append(time.perf_counter())
            for i in range(2):
                torch.autograd.grad(g[:, i].sum(), th, retain_graph=i == 0)
            t.append(time.perf_counter())
            th = theta.clone().requires_grad_(True)
            torch.autograd.grad(sur.flow.log_prob(s, torch.cat([th, proto], 1)).sum(), th)
            t.append(time.perf_counter())
            best = np.minimum(best, np.diff(t))
            start = _clock()
            jet(theta_np)
            best_jet = np.minimum(best_jet, np.subtract(_clock(), start))
        print(f"2p autograd parts, {threads} thread(s), {N_VERTICES} vertices, min of "
              f"{repeats}: forward {best[0]:.3f} s, gradient (create_graph) {best[1]:.3f} s, "
              f"2 Hessian rows {best[2]:.3f} s (value+gradient+Hessian "
              f"{best[:3].sum():.3f} s); value+gradient alone {best[3]:.3f} s")
        print(f"2p forward-mode value+gradient+Hessian, {threads} thread(s): "
              f"{best_jet[0]:.3f} s wall, {best_jet[1]:.3f} CPU-s")
    torch.set_num_threads(1)
    exact = autograd_loglik(copy.deepcopy(sur.flow).double(), s_np, vec)(theta_np)
    for name, fn in (("forward-mode", jet), ("autograd", sur.exact_loglik(s_np, 0.72, 1200))):
        errors = ", ".join(f"{part} {np.abs(a - b).max() / np.abs(b).max():.1e}"
                           for part, a, b in zip(("value", "gradient", "Hessian"),
                                                 fn(theta_np), exact, strict=True))
        print(f"{name} float32 vs float64 autograd, max |error| / max |entry|: {errors}")


def table_error_report() -> None:
    sur = load_surrogate("1p", 0.72, 1200)
    proto = sur.context_protocol(sur.protocol(0.72, 1200))
    noise_ar = float(np.mean(sur.config.prior["ar_coef"]))
    err = table_error(sur.flow, sur.conditioning(proto, noise_ar), n=20000, seed=1)
    print(f"1p tabulation vs flow at {err['n_points']} random off-grid points (TR 0.72 s, "
          f"1200 frames): |Δ log q| max {err['value_max']:.2e}, max where log q is within "
          f"10 nats of its top {err['value_max_bulk']:.2e}, median {err['value_median']:.1e}; "
          f"|Δ grad| there median {err['grad_median_bulk']:.1e}, 99th pct "
          f"{err['grad_p99_bulk']:.1e} (RQ splines are C¹ in θ̃: the flow's own gradient "
          f"jumps at knots)")


def sizes() -> None:
    print("\n## shipped surrogates")
    total = 0
    for path in sorted(WEIGHTS_DIR.glob("*.pt")):
        size = path.stat().st_size
        total += size
        card = load_surrogate(path.stem.split("-")[1], 1.0, 600).card
        print(f"{path.name}: {size / 1e6:.2f} MB, {card['n_weights']} weights, trained in "
              f"{card['training_seconds'] / 60:.1f} min ({card['config']['threads']} "
              "thread(s), simulation included)")
    print(f"total {total / 1e6:.2f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="series per protocol")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--confounds", choices=STRATEGIES, default="none",
                        help="strategy regressed out of the accuracy table's series")
    parser.add_argument("--pooled", action="store_true",
                        help="only the pooled-likelihood bias check")
    parser.add_argument("--models", nargs="+", default=["1p", "2p"], choices=("1p", "2p"),
                        help="models of the pooled check")
    parser.add_argument("--card", type=Path,
                        help="pooled check: model card to use instead of the shipped one "
                             "(one model)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.pooled:
        for model in args.models:
            pooled_bias(model, card=args.card)
        return
    accuracy_table(args.n, args.seed, args.confounds)
    print("\n## flow calibration")
    for model in ("1p", "2p"):
        pit_check(model, 10_000, args.seed + 1)
    table_error_report()
    identifiability_2p(args.n, args.seed + 2)
    sizes()
    timing()
    timing_2p_parts()


if __name__ == "__main__":
    main()
