"""Do the bootstrap SEs mean what they say on real data? Split-half z on HCP regions.

Issue 17's check where no truth exists: the two halves of a run (frames 1-600 and
601-1,200) are independent estimates of the same θ, so over regions
z = (θ̂₁ − θ̂₂) / √(se₁² + se₂²) should have SD ≈ 1 (band 0.8–1.25) when the standard
errors are right. Seven HCP young adults, 94 AAL2 regions × 1,200 frames, TR 0.72 s
(shared/data/real/hcp_rest_rois). Each half is cleaned and estimated pointwise as in
``bench_real_rois.py`` (the latent mode of likelihood × N(0, 1) prior; region averages
have no mesh, so no spatial prior), and its SE is the SD over ``--B`` resamples of the
app's default scheme, the local periodogram bootstrap
(:class:`bids_app.bootstrap.periodogram.LocalPeriodogramBootstrap`, the same draws for
every region), or with ``--resampling block`` of the paper's stationary block bootstrap
of the cleaned series (72 s blocks, re-cleaned as the app's block refits are), each
refitted the same way. This checks the resampling scheme's SE on real nuisance, not the
spatial MAP's.

Printed per subject and pooled: SD of z, its robust version (1.4826 × MAD), the share
of |z| > 1.96, the median SE and |θ̂₁ − θ̂₂|, in 1/s.

Run: ``python benchmarks/bench_real_halves.py [--B 100] [--card CARD]`` (a few minutes).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from bench_real_rois import DATA, TR, summary_mode

from bids_app.bootstrap.double import FADE_S, resample_series
from bids_app.bootstrap.periodogram import LocalPeriodogramBootstrap, cleaning_gain
from bids_app.bootstrap.periodogram_refit import periodogram_summaries
from bids_app.bootstrap.resample import block_frames, fade_frames
from bids_app.config import default
from bids_app.inference.refit import clean_by_rows
from bids_app.preprocess import clean
from bids_app.surrogate import load_surrogate
from bids_app.surrogate.features import ordinate_bands


def half_estimate(surrogate, series: np.ndarray, n_boot: int, seed: int,
                  resampling: str = "local") -> tuple[np.ndarray, np.ndarray]:
    """(θ̂, bootstrap SE) per region (V,), in 1/s, of one half-run (V, T)."""
    n_frames = series.shape[1]
    model = surrogate.model
    y_clean = clean(series, TR, surrogate.preprocessing)

    def mode(summaries: np.ndarray) -> np.ndarray:
        return model.to_theta(summary_mode(surrogate, summaries, n_frames)[:, None])[:, 0]

    theta_hat = mode(surrogate.summarize(y_clean, TR))
    if resampling == "block":
        spec = replace(surrogate.preprocessing, lowpass=None)
        block, fade = block_frames(default("block_length"), TR), fade_frames(FADE_S, TR)
        boot = [mode(surrogate.summarize(clean_by_rows(
                    resample_series(y_clean, seed, b, 0, block, fade), TR, spec), TR))
                for b in range(n_boot)]
    else:
        plan = LocalPeriodogramBootstrap(
            n_frames, cleaning_gain(n_frames, TR, surrogate.preprocessing),
            ordinate_bands(n_frames, TR, surrogate.config.n_bands))
        power = plan.periodogram(y_clean)
        spectrum = plan.spectrum(power)
        rng = np.random.default_rng(seed)
        boot = [mode(periodogram_summaries(surrogate, plan.resample(power, rng, spectrum),
                                           TR, n_frames, 0))
                for _ in range(n_boot)]
    return theta_hat, np.std(boot, axis=0, ddof=1)


def describe(z: np.ndarray) -> str:
    """SD, robust SD and share of |z| > 1.96 of finite z values."""
    z = z[np.isfinite(z)]
    robust = 1.4826 * np.median(np.abs(z - np.median(z)))
    return f"{z.std(ddof=1):6.2f} {robust:9.2f} {np.mean(np.abs(z) > 1.96):8.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--B", type=int, default=100, help="resamples per half")
    parser.add_argument("--card", type=Path, help="a model card (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resampling", choices=("local", "block"), default="local")
    args = parser.parse_args()
    files = sorted(DATA.glob("*.npy"))
    surrogate = None
    z_all = []
    print(f"{args.resampling} resampling, B = {args.B}; "
          "z = (half 1 - half 2) / sqrt(se1^2 + se2^2) over regions")
    print(f"{'subject':12s} {'SD z':>6s} {'robust SD':>9s} {'|z|>1.96':>8s} "
          f"{'median se':>9s} {'median |d|':>10s}")
    for i, path in enumerate(files):
        series = np.load(path).astype(float)
        half = series.shape[1] // 2
        surrogate = surrogate or load_surrogate("1p", TR, half, card_path=args.card)
        (t1, s1), (t2, s2) = (half_estimate(surrogate, part, args.B, args.seed + 2 * i + k,
                                             args.resampling)
                              for k, part in enumerate((series[:, :half], series[:, half:])))
        z = (t1 - t2) / np.sqrt(s1**2 + s2**2)
        z_all.append(z)
        print(f"{path.name[:10]:12s} {describe(z)} {np.median(np.r_[s1, s2]):9.3f} "
              f"{np.median(np.abs(t1 - t2)):10.3f}")
    print(f"{'pooled':12s} {describe(np.concatenate(z_all))}   "
          f"({len(files)} subjects; surrogate {surrogate.card['id']})")


if __name__ == "__main__":
    main()
