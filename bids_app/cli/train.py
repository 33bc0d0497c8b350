"""``hemocoupling-train``: simulate, train and write a surrogate (weights + model card).

Rerunning with the same ``--out`` resumes from the checkpoint in ``OUT/work``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bids_app.errors import HemocouplingError, UsageError
from bids_app.models import MODELS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 64, not argparse's 2
        self.print_usage(sys.stderr)
        print(f"hemocoupling-train: error: {message}", file=sys.stderr)
        raise SystemExit(UsageError.exit_code)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hemocoupling-train", description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=tuple(MODELS), required=True)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", type=Path,
                   help="simulations and checkpoints (default OUT/work); reuse to resume")
    p.add_argument("--id", help="surrogate id (default hemocoupling-MODEL-seedN)")
    p.add_argument("--tr-range", type=float, nargs=2, default=(0.5, 3.0), metavar=("LO", "HI"),
                   help="TRs in s, drawn log-uniformly")
    p.add_argument("--frames-range", type=int, nargs=2, default=(150, 1200),
                   metavar=("MIN", "MAX"), help="run lengths, drawn log-uniformly")
    p.add_argument("--lowpass-range", type=float, nargs=2, default=(0.04, 0.3),
                   metavar=("LO", "HI"), help="low-pass cut-offs in Hz")
    p.add_argument("--n-train", type=int, default=200_000,
                   help="simulated series per network")
    p.add_argument("--n-val", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=20, help="epochs of the summary network")
    p.add_argument("--flow-epochs", type=int, help="epochs of the flow (default --epochs)")
    p.add_argument("--threads", type=int, default=1, help="torch/BLAS threads")
    p.add_argument("--nuisance", choices=("real", "ar1"), default="real",
                   help="nuisance of the training simulations: real = white/AR(1) noise plus "
                        "power-law noise, aliased physiology, shared fluctuations, drift and "
                        "power-law neural drive (docs/method.md §2); ar1 = the paper's model")
    p.add_argument("--noise-context", action="store_true",
                   help="tell the flow the noise AR(1) coefficient (experimental: the "
                        "workflow then selects a run's noise colour by evidence; README)")
    p.add_argument("--summary-extra", action="append", default=[],
                   metavar="NAME",
                   help="1p only, experimental: a summary output beside the posterior mean, "
                        "time_to_peak or slow_logit (repeatable); the flow then models the "
                        "joint summary "
                        "(benchmarks/bench_recovery.py)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.n_train < 2 or args.n_val < 2 or args.epochs < 1:
        parser.error("--n-train and --n-val must be ≥ 2 and --epochs ≥ 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        stream=sys.stderr)
    from threadpoolctl import threadpool_limits

    from bids_app.surrogate.cards import write_surrogate
    from bids_app.surrogate.training import Trainer, TrainingConfig, training_prior

    try:
        config = TrainingConfig(
            model=args.model, seed=args.seed, tr_range=tuple(args.tr_range),
            frames_range=tuple(args.frames_range), lowpass_range=tuple(args.lowpass_range),
            n_train=args.n_train, n_val=args.n_val, epochs_summary=args.epochs,
            epochs_flow=args.flow_epochs or args.epochs, threads=args.threads,
            noise_context=args.noise_context, summary_extra=tuple(args.summary_extra),
            prior=training_prior(args.model, args.nuisance))
        with threadpool_limits(args.threads):
            trainer = Trainer(config, args.work_dir or args.out / "work")
            metrics = trainer.run()
            command = " ".join(["hemocoupling-train", *(sys.argv[1:] if argv is None else argv)])
            card = write_surrogate(trainer, metrics, args.out,
                                   args.id or f"hemocoupling-{args.model}-seed{args.seed}",
                                   notes={"reproduce": command})
    except HemocouplingError as err:
        print(f"hemocoupling-train: {err}", file=sys.stderr)
        return err.exit_code
    print(card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
