"""Real spectra against the surrogate's simulated envelope, per protocol.

For each kind of real run in shared/data/real (HCP region averages at TR 0.72 s, an
unfiltered volume run at TR 1.5 s, the low-passed fsaverage5 run at TR 1.4 s with and
without its cut-off declared), series are cleaned as the app cleans them and reduced to
the surrogate's log band spectra; the same is done for series simulated from the
surrogate's training prior at that protocol. Printed: the share of real (series, band)
values inside the simulated 1-99 % envelope, and the training-distribution check.
``--figure PATH`` draws the real median and 5-95 % spread over the simulated envelope.

Run: ``python benchmarks/bench_nuisance_envelope.py [--card CARD] [--figure env.png]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_app.preprocess import clean
from bids_app.surrogate import load_surrogate
from bids_app.surrogate.features import band_edges, band_log_power
from bids_app.surrogate.training import simulate_features

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
N_SIMULATED = 2000


def real_runs() -> list[tuple[str, np.ndarray, float, float | None]]:
    """(label, series (V, T), TR, declared low-pass) of each real kind."""
    runs = [(f"HCP regions {path.name[4:10]}", np.load(path).astype(float), 0.72, None)
            for path in sorted((REAL / "hcp_rest_rois").glob("*.npy"))]
    volume = REAL / "volume_unfiltered_tr1.5"
    data = nib.load(next(volume.glob("*_bold.nii.gz"))).get_fdata()
    mask = nib.load(next(volume.glob("*_mask.nii.gz"))).get_fdata() > 0
    runs.append(("unfiltered volume", data[mask][::10], 1.5, None))
    gifti = next((REAL / "fmriprep_fsaverage5").rglob("*hemi-L_space-fsaverage5_bold.func.gii"))
    surface = np.column_stack([a.data for a in nib.load(gifti).darrays]).astype(float)
    surface = surface[np.ptp(surface, axis=1) > 0][::5]
    runs += [("fsaverage5, low-pass not declared", surface, 1.4, None),
             ("fsaverage5, --lowpass 0.07", surface, 1.4, 0.07)]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", type=Path, help="a model card (default: the shipped one)")
    parser.add_argument("--figure", type=Path, help="write a PNG of the envelopes here")
    args = parser.parse_args()
    rows = []
    print(f"{'real run':36s} {'inside 1-99%':>12s} {'training-distribution check'}")
    for label, series, tr, lowpass in real_runs():
        surrogate = load_surrogate("1p", tr, series.shape[1], lowpass, card_path=args.card)
        protocol = surrogate.protocol(tr, series.shape[1])
        y_clean = clean(series, tr, surrogate.preprocessing)
        real, mask = band_log_power(y_clean, protocol, surrogate.config.n_bands)
        simulated = simulate_features(surrogate.config, N_SIMULATED, np.random.default_rng(1),
                                      protocol=protocol)[1][:, :surrogate.config.n_bands]
        low, high = np.percentile(simulated[:, mask], [1, 99], axis=0)
        inside = float(np.mean((real[:, mask] >= low) & (real[:, mask] <= high)))
        check = surrogate.check_calibration(y_clean, tr)
        print(f"{label:36s} {inside:12.2f} {check['message']}", flush=True)
        rows.append((label, real[:, mask], simulated[:, mask], band_edges()[:-1][mask]))
    print(f"surrogate {surrogate.card['id']}")
    if args.figure:
        draw(rows, args.figure)


def draw(rows: list, path: Path) -> None:
    """One panel per real run: simulated 1-99 % band, real median and 5-95 %."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, (len(rows) + 1) // 2, figsize=(16, 7), sharey=True)
    for ax, (label, real, simulated, freqs) in zip(axes.ravel(), rows, strict=False):
        ax.fill_between(freqs, *np.percentile(simulated, [1, 99], axis=0), color="0.85",
                        label="simulated 1-99 %")
        ax.fill_between(freqs, *np.percentile(real, [5, 95], axis=0), color="C0", alpha=0.3,
                        label="real 5-95 %")
        ax.plot(freqs, np.median(real, axis=0), color="C0", label="real median")
        ax.set_xscale("log")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("Hz")
    axes.ravel()[0].set_ylabel("log band power (z-scored series)")
    axes.ravel()[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
