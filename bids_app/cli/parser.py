"""The ``hemocoupling`` argument parser (BIDS-App form, fMRIPrep/XCP-D style).

One function builds the parser so that the packaging (boutiques descriptor) and the
command can never disagree. Usage errors raise :class:`~bids_app.errors.UsageError`
(exit 64) instead of argparse's exit 2, which the BIDS-App contract reserves.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from bids_app import __version__
from bids_app.config import default
from bids_app.errors import EXIT_CODES, UsageError
from bids_app.io.spaces import SPACE_LABELS
from bids_app.models import MODELS, models_help

CONFOUND_STRATEGIES = ("24P", "36P", "acompcor", "none")
BOOTSTRAP_LEVELS = ("none", "single", "double")
BIAS_CORRECTIONS = ("simulation", "none")
RESAMPLING = ("local", "block")


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
        epilog="Exit codes: " + ", ".join(f"{code} {text}" for code, text in EXIT_CODES.items()),
    )
    parser.add_argument("bids_dir", type=Path, metavar="BIDS_DIR",
                        help="fMRIPrep derivatives dataset, or raw BIDS with --derivatives")
    parser.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR",
                        help="where the BIDS-Derivatives outputs are written")
    parser.add_argument("analysis_level", choices=("participant", "group"),
                        help="participant: maps per subject; group: aggregate participants")
    parser.add_argument("--version", action="version", version=f"hemocoupling {__version__}")
    parser.add_argument("--config-file", dest="config_file", type=Path, metavar="FILE",
                        help="TOML file of options, one key per long option name (n-boot = 50,"
                             " participant-label = ['01']); the command line wins")

    bids = parser.add_argument_group("Selecting inputs")
    bids.add_argument("--participant-label", "--participant_label", dest="participant_label",
                      nargs="+", metavar="LABEL",
                      help="subjects to process (with or without 'sub-'); default all")
    bids.add_argument("--session-label", "--session_label", dest="session_label", nargs="+",
                      metavar="LABEL", help="sessions to process (with or without 'ses-')")
    bids.add_argument("--task-id", "--task_id", dest="task_id", default=default("task_id"),
                      help="task label of the resting-state runs (default: rest)")
    bids.add_argument("--bids-filter-file", dest="bids_filter_file", type=Path, metavar="FILE",
                      help="JSON of pybids entity filters, key 'bold' (fMRIPrep format)")
    bids.add_argument("--derivatives", nargs="+", type=_derivative, metavar="NAME=PATH",
                      help="fMRIPrep outputs when BIDS_DIR is raw BIDS, e.g. fmriprep=PATH")
    bids.add_argument("--space", choices=SPACE_LABELS,
                      help="surface space when several exist (default: first of "
                           + ", ".join(SPACE_LABELS) + " found)")
    bids.add_argument("--skip-bids-validation", "--skip_bids_validation",
                      dest="skip_bids_validation", action="store_true",
                      help="do not run the BIDS validator (bids-validator-deno) on a raw "
                           "BIDS_DIR (derivatives are never validated)")

    model = parser.add_argument_group("Model and denoising")
    model.add_argument("--model", choices=tuple(MODELS), default=default("model"),
                       help=models_help())
    model.add_argument("--confounds", choices=CONFOUND_STRATEGIES,
                       default=default("confounds"),
                       help="confound regressors from desc-confounds_timeseries.tsv "
                            "(default %(default)s)")
    model.add_argument("--fd-threshold", dest="fd_threshold", type=_positive_float, metavar="MM",
                       help="censor frames with framewise displacement above MM; the longest "
                            "contiguous low-motion segment is kept (default: no censoring)")
    model.add_argument("--dummy-scans", dest="dummy_scans", type=_nonnegative_int, metavar="N",
                       help="initial frames to drop (default: fMRIPrep's non_steady_state_outlier"
                            " columns)")
    model.add_argument("--lowpass", type=_positive_float, metavar="HZ",
                       help="low-pass cut-off already applied to the data, in Hz; the surrogate "
                            "is matched to it")
    model.add_argument("--surrogate", type=Path, metavar="CARD",
                       help="model card (.json) of a surrogate trained with hemocoupling-train, "
                            "e.g. one trained on fMRIPrep-grade nuisance (default: the shipped "
                            "one for --model)")
    model.add_argument("--kappa", type=_positive_float, nargs="+", metavar="K",
                       help="SPDE range parameter(s) κ (1/mm) to search; one value fixes it")
    model.add_argument("--tau2", type=_positive_float, nargs="+", metavar="T",
                       help="SPDE precision scale(s) τ² to search; one value fixes it")

    boot = parser.add_argument_group("Uncertainty")
    boot.add_argument("--bootstrap", choices=BOOTSTRAP_LEVELS,
                      default=default("bootstrap"),
                      help="none: no intervals; single: bootstrap SE and normal intervals; "
                           "double: calibrated intervals (default)")
    boot.add_argument("--n-boot", dest="n_boot", type=_positive_int, default=default("n_boot"),
                      metavar="B", help="outer bootstrap resamples (default %(default)s)")
    boot.add_argument("--n-inner", dest="n_inner", type=_positive_int,
                      default=default("n_inner"), metavar="R",
                      help="inner resamples per outer resample (default %(default)s)")
    boot.add_argument("--block-length", dest="block_length", type=_positive_float,
                      default=default("block_length"),
                      metavar="SECONDS", help="mean block length of the stationary bootstrap "
                                              "in seconds, --resampling block "
                                              "(default %(default)s)")
    boot.add_argument("--resampling", choices=RESAMPLING, default=default("resampling"),
                      help="local: local periodogram bootstrap, the same frequency draws for "
                           "every vertex (default); block: stationary block bootstrap of the "
                           "cleaned series in time (--block-length)")
    boot.add_argument("--bias-correction", dest="bias_correction", choices=BIAS_CORRECTIONS,
                      default=default("bias_correction"),
                      help="simulation: remove the estimate's bias under the run's own noise "
                           "regime, fitted to its spectrum (1p; default); none: "
                           "report the MAP as it is")

    group = parser.add_argument_group("Group level")
    group.add_argument("--group-model", dest="group_model", metavar="FORMULA",
                       help="random-effects model on participants.tsv columns, e.g. "
                            "'~ age + sex' (default: '~ 1', the group mean)")
    group.add_argument("--contrast", metavar="WEIGHTS",
                       help="extra map of a combination of --group-model columns: one weight "
                            "per column ('0,1,0') or COLUMN=WEIGHT pairs ('age=1')")
    group.add_argument("--include-flagged", dest="include_flagged", action="store_true",
                       help="keep participants whose maps failed quality control or are "
                            "weakly identified (default: excluded and listed)")
    group.add_argument("--n-modes", dest="n_modes", type=_positive_int, default=5, metavar="K",
                       help="population modes (functional PCA components) to write (default 5)")

    perf = parser.add_argument_group("Resources and outputs")
    perf.add_argument("-w", "--work-dir", dest="work_dir", type=Path,
                      help="intermediate files and bootstrap cache (default: ./work)")
    perf.add_argument("--nprocs", "--n_cpus", "--n-cpus", dest="nprocs", type=_positive_int,
                      help="parallel worker processes (default: all CPUs)")
    perf.add_argument("--mem", "--mem-mb", "--mem_mb", dest="mem_mb", type=_positive_int,
                      metavar="MB", help="memory the run may use, in MB: bounds the number of "
                                         "worker processes (default: no bound)")
    perf.add_argument("--omp-nthreads", dest="omp_nthreads", type=_positive_int,
                      help="BLAS/torch threads per process (default: CPUs / workers)")
    perf.add_argument("--dask-scheduler", dest="dask_scheduler", metavar="ADDRESS",
                      help="run bootstrap refits and the group level's vertex blocks on this "
                           "dask.distributed scheduler")
    perf.add_argument("--random-seed", dest="random_seed", type=_nonnegative_int,
                      default=default("random_seed"),
                      help="seed of every random draw (default %(default)s)")
    perf.add_argument("--write-deconvolved", dest="write_deconvolved", action="store_true",
                      help="also write Wiener-deconvolved neural time series")
    perf.add_argument("--overwrite", action="store_true",
                      help="redo participants whose outputs already exist")
    perf.add_argument("--stop-on-first-crash", dest="stop_on_first_crash", action="store_true",
                      help="stop at the first participant that fails (default: go on with the "
                           "others and exit with the first failure's code)")
    perf.add_argument("--no-report", dest="no_report", action="store_true",
                      help="do not write the HTML reports")
    perf.add_argument("--reports-only", dest="reports_only", action="store_true",
                      help="only re-assemble the HTML reports of this level from OUTPUT_DIR "
                           "(the figures and sidecars an earlier run wrote); nothing is "
                           "refitted")
    perf.add_argument("-v", "--verbose", dest="verbose", action="count", default=0,
                      help="more log output (-vv for debug)")
    return parser


def parse_command_line(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse argv, with the options of ``--config-file`` (if given) as defaults that the
    command line overrides (:mod:`bids_app.cli.config_file`)."""
    from bids_app.cli.config_file import options_from_file

    parser = build_parser()
    first = BidsAppArgumentParser(prog="hemocoupling", add_help=False)
    first.add_argument("--config-file", dest="config_file", type=Path)
    known, _ = first.parse_known_args(argv)
    if known.config_file is not None:
        parser.set_defaults(**options_from_file(build_parser(), known.config_file))
    return parser.parse_args(argv)
