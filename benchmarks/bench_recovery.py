"""Does the pooled 1p estimate follow the truth? Recovery curves at one protocol.

For each true θ, 1,500 series of that θ are simulated at the protocol (24P confounds
regressed) under white noise (the published HCP calibration, the paper's model), under
the surrogate's own training prior, or (``--nuisance KIND``) under one run-level setting
of a nuisance kind of ``bench_real_nuisance.py`` (held out: one exponent, breathing and
heart rate per run), and estimated as a run's level is: the latent offset
maximising the summed log-likelihood (:func:`bids_app.quality.recovery.pooled_offset`).
Printed per truth: the pooled estimate and the mean of the per-vertex summaries S(y),
in 1/s, per card. A flat stretch (different truths, one estimate) is where the quality
gate's EstimateFollowsTruth check fails. Cards whose summary has extra outputs
(``hemocoupling-train --summary-extra``) are scored with the exact flow log q (forward-mode
jets, equal to autograd) instead of the 1p table; their mean S(y) is of the first output.

Run: ``python benchmarks/bench_recovery.py --tr 1.4 --frames 300 --card ""
--card path/to/other.json`` (about a minute per card on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
from bench_real_nuisance import KINDS, run_level

from bids_app.io.confounds import strategy_regressors
from bids_app.models import ONE_PARAM
from bids_app.preprocess import clean
from bids_app.quality.recovery import pooled_offset
from bids_app.simulate import HCP_1P, sample_nuisance, simulate_bold
from bids_app.simulate.confounds import simulated_confounds
from bids_app.surrogate import load_surrogate

TRUTHS = (0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 2.4)
N_SERIES = 1500


def nuisance_draws(surrogate, name: str, rng: np.random.Generator) -> dict:
    """Per-series nuisance of ``name``: 'training' (the card's prior), or a kind of
    ``bench_real_nuisance.KINDS`` ('white' is the HCP calibration) set per run."""
    if name == "training":
        return sample_nuisance(surrogate.config.nuisance_prior(), N_SERIES, rng)
    prior = dataclasses.replace(HCP_1P, **KINDS[name])
    return run_level(sample_nuisance(prior, N_SERIES, rng))


def recovered(surrogate, nuisance: str, theta: float, tr: float, n_frames: int, seed: int
              ) -> tuple[float, float]:
    """(pooled estimate, mean S(y)) in 1/s for series of one true θ under ``nuisance``."""
    rng = np.random.default_rng(seed)
    y = simulate_bold(ONE_PARAM, np.full((N_SERIES, 1), theta), tr, n_frames,
                      nuisance_draws(surrogate, nuisance, rng), rng)
    regressors = strategy_regressors(simulated_confounds(n_frames, tr, rng), "24P", "sim")[1]
    y_clean = clean(y, tr, surrogate.preprocessing, regressors)
    n_reg = regressors.shape[1]
    offset = pooled_offset(surrogate, y_clean, np.zeros(N_SERIES), tr, n_reg)
    summaries = surrogate.summarize(y_clean, tr, n_reg)
    return (float(ONE_PARAM.to_theta(np.array([offset]))[0]),
            float(ONE_PARAM.to_theta(summaries[:, :1]).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tr", type=float, default=1.4)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--card", action="append", default=None,
                        help="model card ('' for the shipped one); repeat to compare")
    parser.add_argument("--nuisance", nargs="+", default=["white", "training"],
                        choices=["training", *KINDS])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    surrogates = [load_surrogate("1p", args.tr, args.frames, card_path=card or None)
                  for card in (args.card or [""])]
    print(f"TR {args.tr} s, {args.frames} frames, 24P, {N_SERIES} series per truth; "
          "per card: pooled estimate, mean S(y) (1/s)")
    print(f"{'nuisance':9s} {'truth':>5s} " + " ".join(f"{s.card['id']:>26s}" for s in surrogates))
    for name in args.nuisance:
        errors = np.zeros((len(TRUTHS), len(surrogates)))
        for i, theta in enumerate(TRUTHS):
            cells = []
            for j, surrogate in enumerate(surrogates):
                pooled, mean_s = recovered(surrogate, name, theta, args.tr, args.frames,
                                           args.seed)
                errors[i, j] = pooled - theta
                cells.append(f"{pooled:12.3f} {mean_s:13.3f}")
            print(f"{name:9s} {theta:5.2f} " + " ".join(cells), flush=True)
        print(f"{name:9s} mean |error| over the truths (θ ≤ 1.0): " + ", ".join(
            f"{abs(e).mean():.3f} ({abs(e[np.array(TRUTHS) <= 1.0]).mean():.3f})"
            for e in errors.T), flush=True)


if __name__ == "__main__":
    main()
