"""Real data without a truth: HCP region series, whole runs and split halves.

Seven HCP young adults (REST1_LR, 94 AAL2 regions × 1,200 frames, TR 0.72 s, not
low-passed; shared/data/real/hcp_rest_rois). Each region is cleaned as the app cleans a
vertex (no confounds: region averages of ICA-FIX data), summarised, and estimated
pointwise: the mode of the surrogate's likelihood times its N(0, 1) latent prior (no
mesh, so no spatial prior). Printed per subject: time-to-peak distribution, share of
regions at a bound of the range, the quality gate's verdict on the run, and the
split-half (frames 1-600 vs 601-1,200) correlation of θ across regions; then pooled.

Run: ``python benchmarks/bench_real_rois.py [--card CARD]`` (about a minute).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bids_app.preprocess import clean
from bids_app.quality import quality_control
from bids_app.quality.gate import BOUND_LATENT
from bids_app.surrogate import load_surrogate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "hcp_rest_rois"
TR = 0.72
GRID = np.linspace(-4.0, 4.0, 641)


def pointwise_mode(surrogate, y_clean: np.ndarray) -> np.ndarray:
    """Per-region mode of log q(S | θ̃) + log N(θ̃; 0, 1) on a 0.0125-wide latent grid."""
    return summary_mode(surrogate, surrogate.summarize(y_clean, TR), y_clean.shape[1])


def summary_mode(surrogate, summaries: np.ndarray, n_frames: int) -> np.ndarray:
    """:func:`pointwise_mode` of per-region summaries (V, 1) of ``n_frames``-frame runs."""
    loglik = surrogate.loglik(summaries, TR, n_frames)
    values = np.stack([loglik(np.full((len(summaries), 1), g))[0] - 0.5 * g**2
                       for g in GRID])
    return GRID[values.argmax(axis=0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", type=Path, help="a model card (default: the shipped one)")
    args = parser.parse_args()
    files = sorted(DATA.glob("*.npy"))
    halves_all, ttp_all, bound_all = ([], []), [], []
    surrogate = None
    print(f"{'subject':12s} {'TTP median':>10s} {'TTP 5-95%':>12s} {'at bound':>8s} "
          f"{'gate':>5s} {'split-half r':>12s}")
    for path in files:
        series = np.load(path).astype(float)
        surrogate = surrogate or load_surrogate("1p", TR, series.shape[1], card_path=args.card)
        model = surrogate.model
        y_clean = clean(series, TR, surrogate.preprocessing)
        latent = pointwise_mode(surrogate, y_clean)
        theta = model.to_theta(latent[:, None])[:, 0]
        ttp = model.derived(theta[:, None])["timetopeak"]
        quality = quality_control(y_clean, latent[:, None], surrogate, TR, 0,
                                  surrogate.check_calibration(y_clean, TR), True, seed=0)
        half = series.shape[1] // 2
        halves = [model.to_theta(pointwise_mode(surrogate, clean(part, TR,
                                                                 surrogate.preprocessing)
                                                )[:, None])[:, 0]
                  for part in (series[:, :half], series[:, half:])]
        for k in range(2):
            halves_all[k].append(halves[k])
        ttp_all.append(ttp)
        at_bound = float(np.mean(np.abs(latent) > BOUND_LATENT))
        bound_all.append(at_bound)
        lo, hi = np.percentile(ttp, [5, 95])
        print(f"{path.name[:10]:12s} {np.median(ttp):10.2f} {lo:5.2f}-{hi:5.2f} s "
              f"{at_bound:8.3f} {'pass' if quality.passed else 'FLAG':>5s} "
              f"{np.corrcoef(*halves)[0, 1]:12.3f}"
              + ("" if quality.passed else f"  ({'; '.join(quality.reasons)})"))
    first, second = (np.concatenate(h) for h in halves_all)
    ttp = np.concatenate(ttp_all)
    lo, hi = np.percentile(ttp, [5, 95])
    print(f"pooled ({len(files)} subjects, {ttp.size} regions): time-to-peak median "
          f"{np.median(ttp):.2f} s (5-95% {lo:.2f}-{hi:.2f}); at a bound "
          f"{np.mean(bound_all):.3f}; split-half r {np.corrcoef(first, second)[0, 1]:.3f}; "
          f"surrogate {surrogate.card['id']}")


if __name__ == "__main__":
    main()
