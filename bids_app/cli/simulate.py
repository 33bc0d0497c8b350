"""``hemocoupling-simulate``: write a synthetic fMRIPrep-style dataset with known HRF maps.

Usage::

    hemocoupling-simulate OUT_DIR --mesh {fsaverage5,fsLR32k} --subjects N --tr SECONDS
                          --frames N --model {1p,2p} --seed N
                          [--kappa K] [--tau2 T] [--cifti] [--runs N] [--sessions N]
                          [--motion-strength S]

Exit codes as for ``hemocoupling``: 0 ok, 64 usage error, 66 template mesh missing,
73 cannot write OUT_DIR, 1 anything else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bids_app import __version__
from bids_app.cli.parser import BidsAppArgumentParser
from bids_app.errors import HemocouplingError
from bids_app.io.spaces import SIMULATOR_MESHES
from bids_app.models import DEFAULT_MODEL, MODELS, models_help


def build_parser() -> BidsAppArgumentParser:
    """Parser of ``hemocoupling-simulate`` (usage errors exit 64)."""
    parser = BidsAppArgumentParser(
        prog="hemocoupling-simulate",
        description="Simulate resting-state surface BOLD with known HRF parameter maps, "
                    "laid out as fMRIPrep derivatives (ground truth in sourcedata/truth/).",
        epilog="Exit codes: 0 ok, 1 runtime failure, 64 usage error, 66 template mesh "
               "missing (set TEMPLATEFLOW_HOME), 73 cannot create output.",
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="dataset root to write")
    parser.add_argument("--mesh", choices=tuple(SIMULATOR_MESHES), default="fsaverage5",
                        help="template surface the data live on (default fsaverage5)")
    parser.add_argument("--subjects", type=int, default=1, help="number of subjects")
    parser.add_argument("--tr", type=float, default=0.72, help="repetition time in s")
    parser.add_argument("--frames", type=int, default=300, help="frames per run")
    parser.add_argument("--model", choices=tuple(MODELS), default=DEFAULT_MODEL,
                        help=f"HRF model: {models_help()}")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data)")
    parser.add_argument("--kappa", type=float, default=5e-3,
                        help="SPDE range parameter of the truth field in 1/mm (default 5e-3)")
    parser.add_argument("--tau2", type=float, default=1e4,
                        help="SPDE precision scale of the truth field (default 1e4)")
    parser.add_argument("--cifti", action="store_true",
                        help="also write a CIFTI dtseries (needs --mesh fsLR32k)")
    parser.add_argument("--runs", type=int, default=1, help="runs per session")
    parser.add_argument("--sessions", type=int, default=0,
                        help="sessions per subject (0: no session level)")
    parser.add_argument("--motion-strength", type=float, default=0.5,
                        help="motion adds about S² of each series' variance (default 0.5)")
    parser.add_argument("--version", action="version", version=f"hemocoupling {__version__}")
    return parser


def spec_from_args(args: argparse.Namespace):
    """The :class:`~bids_app.simulate.dataset.DatasetSpec` of parsed arguments."""
    from bids_app.simulate.dataset import DatasetSpec

    return DatasetSpec(mesh=args.mesh, n_subjects=args.subjects, tr=args.tr,
                       n_frames=args.frames, model=args.model, seed=args.seed,
                       kappa=args.kappa, tau2=args.tau2, n_sessions=args.sessions,
                       n_runs=args.runs, cifti=args.cifti, motion_strength=args.motion_strength)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit code."""
    try:
        args = build_parser().parse_args(argv)
        from bids_app.simulate.dataset import simulate_dataset

        root = simulate_dataset(args.out_dir, spec_from_args(args))
    except HemocouplingError as err:
        print(f"hemocoupling-simulate: error: {err}", file=sys.stderr)
        return err.exit_code
    except SystemExit as done:  # --help / --version
        return int(done.code or 0)
    print(f"hemocoupling-simulate: wrote {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
