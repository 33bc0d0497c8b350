"""The ``hemocoupling`` argument parser (BIDS-App form, fMRIPrep/XCP-D style).

One function builds the parser so that the packaging (boutiques descriptor) and the
command can never disagree. Usage errors raise :class:`~bids_app.errors.UsageError`
(exit 64) instead of argparse's exit 2, which the BIDS-App contract reserves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bids_app import __version__
from bids_app.errors import UsageError

SPACES = ("fsaverage5", "fsaverage6", "fsaverage", "fsnative", "fsLR_den-32k", "fsLR_den-91k")
CONFOUND_STRATEGIES = ("24P", "36P", "acompcor", "none")
BOOTSTRAP_LEVELS = ("none", "single", "double")
BIAS_CORRECTIONS = ("simulation", "none")
RESAMPLING = ("local", "block")
MODELS = ("1p", "2p")


class BidsAppArgumentParser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors raise ``UsageError`` (exit 64) with one line."""

    def error(self, message: str):  # argparse's signature; never returns
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _derivative(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH (e.g. fmriprep=/data), got {text}")
    return name, Path(path)


def build_parser() -> BidsAppArgumentParser:
    """Return the parser for ``hemocoupling BIDS_DIR OUTPUT_DIR {participant,group}``."""
    parser = BidsAppArgumentParser(
        prog="hemocoupling",
        description=(
            "Vertex-wise hemodynamic coupling maps (HRF parameters with calibrated "
            "double-bootstrap intervals) from fMRIPrep surface BOLD outputs."
        ),
        epilog=(
            "Exit codes: 0 ok, 1 runtime failure, 16 input failed validation, 18 filters "
            "selected nothing, 64 usage error, 66 required inputs missing, 73 cannot create output."
        ),
    )
    parser.add_argument("bids_dir", type=Path, metavar="BIDS_DIR",
                        help="fMRIPrep derivatives dataset, or raw BIDS with --derivatives")
    parser.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR",
                        help="where the BIDS-Derivatives outputs are written")
    parser.add_argument("analysis_level", choices=("participant", "group"),
                        help="participant: maps per subject; group: aggregate participants")
    parser.add_argument("--version", action="version", version=f"hemocoupling {__version__}")

    bids = parser.add_argument_group("Selecting inputs")
    bids.add_argument("--participant-label", "--participant_label", dest="participant_label",
                      nargs="+", metavar="LABEL",
                      help="subjects to process (with or without 'sub-'); default all")
    bids.add_argument("--session-label", "--session_label", dest="session_label", nargs="+",
                      metavar="LABEL", help="sessions to process (with or without 'ses-')")
    bids.add_argument("--task-id", "--task_id", dest="task_id", default="rest",
                      help="task label of the resting-state runs (default: rest)")
    bids.add_argument("--bids-filter-file", dest="bids_filter_file", type=Path, metavar="FILE",
                      help="JSON of pybids entity filters, key 'bold' (fMRIPrep format)")
    bids.add_argument("--derivatives", nargs="+", type=_derivative, metavar="NAME=PATH",
                      help="fMRIPrep outputs when BIDS_DIR is raw BIDS, e.g. fmriprep=PATH")
    bids.add_argument("--space", choices=SPACES,
                      help="surface space when several exist (default: first of "
                           + ", ".join(SPACES) + " found)")
    bids.add_argument("--skip-bids-validation", "--skip_bids_validation",
                      dest="skip_bids_validation", action="store_true",
                      help="do not validate BIDS_DIR with pybids")

    model = parser.add_argument_group("Model and denoising")
    model.add_argument("--model", choices=MODELS, default="1p",
                       help="1p: double-gamma time scale θ; 2p: canonical amplitude + latency")
    model.add_argument("--confounds", choices=CONFOUND_STRATEGIES, default="24P",
                       help="confound regressors from desc-confounds_timeseries.tsv (default 24P)")
    model.add_argument("--fd-threshold", dest="fd_threshold", type=_positive_float, metavar="MM",
                       help="censor frames with framewise displacement above MM; the longest "
                            "contiguous low-motion segment is kept (default: no censoring)")
    model.add_argument("--dummy-scans", dest="dummy_scans", type=_nonnegative_int, metavar="N",
                       help="initial frames to drop (default: fMRIPrep's non_steady_state_outlier"
                            " columns)")
    model.add_argument("--lowpass", type=_positive_float, metavar="HZ",
                       help="low-pass cut-off already applied to the data, in Hz; the surrogate "
                            "is matched to it")
    model.add_argument("--kappa", type=_positive_float, nargs="+", metavar="K",
                       help="SPDE range parameter(s) κ (1/mm) to search; one value fixes it")
    model.add_argument("--tau2", type=_positive_float, nargs="+", metavar="T",
                       help="SPDE precision scale(s) τ² to search; one value fixes it")

    boot = parser.add_argument_group("Uncertainty")
    boot.add_argument("--bootstrap", choices=BOOTSTRAP_LEVELS, default="double",
                      help="none: no intervals; single: bootstrap SE and normal intervals; "
                           "double: calibrated intervals (default)")
    boot.add_argument("--n-boot", dest="n_boot", type=_positive_int, default=100, metavar="B",
                      help="outer bootstrap resamples (default 100)")
    boot.add_argument("--n-inner", dest="n_inner", type=_positive_int, default=10, metavar="R",
                      help="inner resamples per outer resample (default 10)")
    boot.add_argument("--block-length", dest="block_length", type=_positive_float, default=72.0,
                      metavar="SECONDS", help="mean block length of the stationary bootstrap "
                                              "in seconds, --resampling block (default 72)")
    boot.add_argument("--resampling", choices=RESAMPLING, default="local",
                      help="local: local periodogram bootstrap, the same frequency draws for "
                           "every vertex (default); block: stationary block bootstrap of the "
                           "cleaned series in time (--block-length)")
    boot.add_argument("--bias-correction", dest="bias_correction", choices=BIAS_CORRECTIONS,
                      default="simulation",
                      help="simulation: remove the estimate's bias under the run's own noise "
                           "regime, fitted to its spectrum (1p; default); none: "
                           "report the MAP as it is")

    perf = parser.add_argument_group("Resources and outputs")
    perf.add_argument("-w", "--work-dir", dest="work_dir", type=Path,
                      help="intermediate files and bootstrap cache (default: ./work)")
    perf.add_argument("--nprocs", "--n_cpus", "--n-cpus", dest="nprocs", type=_positive_int,
                      help="parallel worker processes (default: all CPUs)")
    perf.add_argument("--omp-nthreads", dest="omp_nthreads", type=_positive_int,
                      help="BLAS/torch threads per process (default: CPUs / workers)")
    perf.add_argument("--dask-scheduler", dest="dask_scheduler", metavar="ADDRESS",
                      help="run bootstrap refits on this dask.distributed scheduler")
    perf.add_argument("--random-seed", dest="random_seed", type=_nonnegative_int, default=0,
                      help="seed of every random draw (default 0)")
    perf.add_argument("--write-deconvolved", dest="write_deconvolved", action="store_true",
                      help="also write Wiener-deconvolved neural time series")
    perf.add_argument("--overwrite", action="store_true",
                      help="redo participants whose outputs already exist")
    perf.add_argument("--no-report", dest="no_report", action="store_true",
                      help="do not write the HTML reports")
    perf.add_argument("-v", "--verbose", dest="verbose", action="count", default=0,
                      help="more log output (-vv for debug)")
    return parser
