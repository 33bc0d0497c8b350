"""``hemocoupling`` entry point: argv → :class:`Config` → workflow → exit code.

Only this module turns :mod:`bids_app.errors` exceptions into exit codes and one-line
messages; the workflows never read argv nor call ``sys.exit``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bids_app import __version__
from bids_app.cli.parser import parse_command_line
from bids_app.config import Config, make_config, make_folder
from bids_app.errors import EXIT_SIGTERM, HemocouplingError
from bids_app.io.refit_progress import refits_kept
from bids_app.threads import set_thread_variables

LOGGER = logging.getLogger("hemocoupling")
LOGGER.addHandler(logging.NullHandler())  # errors before logging starts go to stderr once
_VERSIONED = ("numpy", "scipy", "torch", "nflows", "nibabel", "pybids", "templateflow",
              "nilearn", "pandas", "scikit-sparse")


class Interrupted(BaseException):
    """SIGTERM arrived (a BaseException, so no ``except Exception`` swallows it; the
    workflows' cleanup — staging folder, half-written maps — runs on the way out)."""


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the documented exit code (see ``bids_app.errors``), or 143
    after SIGTERM (logged with the bootstrap refits kept for a resume)."""
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    else:  # handlers can only be set from the main thread (e.g. main() in a worker)
        previous = None
    try:
        return _main(argv)
    except Interrupted:  # while an error was being reported
        return interrupted(None, time.time())
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    started, config = time.time(), None
    early = hold_early_records()
    try:
        args = parse_command_line(argv)
        config = make_config(args)
        if args.config_file is not None:
            LOGGER.info("options from --config-file %s", args.config_file)
        selected = select_inputs(config)  # before any folder exists: exit 18 leaves none
        log_file = start_logging(config, early)
        apply_threads(config)
        LOGGER.info("hemocoupling %s, %s level; log %s",
                    __version__, config.analysis_level, log_file)
        run_workflow(config, selected)
    except Interrupted:
        return interrupted(config, started)
    except HemocouplingError as err:
        LOGGER.error("%s", err)
        print(f"hemocoupling: error: {err}", file=sys.stderr)
        return err.exit_code
    except SystemExit as done:  # --help / --version
        return int(done.code or 0)
    except Exception as err:  # a bug or an unforeseen failure: full trace to the log only
        LOGGER.exception("runtime failure")
        print(f"hemocoupling: runtime failure: {type(err).__name__}: {err} (details in logs/)",
              file=sys.stderr)
        return 1
    return 0


def interrupted(config: Config | None, started: float) -> int:
    """Log and print how much bootstrap work was kept for a resume; return 143."""
    kept, planned = (0, 0) if config is None else refits_kept(
        config.work_dir, config.bootstrap, config.n_boot, config.n_inner, started)
    LOGGER.error("interrupted, %d of %d refits kept", kept, planned)
    print(f"hemocoupling: interrupted (SIGTERM), {kept} of {planned} refits kept; run the "
          "same command to resume", file=sys.stderr)
    return EXIT_SIGTERM


def select_inputs(config: Config) -> dict | None:
    """The participant level's runs per participant (:func:`bids_app.io.bids.discover`:
    unknown labels and empty filters fail here); the group level selects its own, and
    ``--reports-only`` reads OUTPUT_DIR only."""
    if config.analysis_level != "participant" or config.reports_only:
        return None
    from bids_app.io.bids import discover

    return discover(config)


def run_workflow(config: Config, selected: dict | None = None) -> None:
    """Dispatch to the participant or group workflow (imported late: heavy modules); a raw
    BIDS_DIR is validated first (:mod:`bids_app.io.bids_validator`)."""
    if config.reports_only:
        from bids_app.workflows.reports_only import rebuild_reports

        rebuild_reports(config)
    elif config.analysis_level == "participant":
        from bids_app.io.bids import fmriprep_root
        from bids_app.io.bids_validator import validate_bids_dir
        from bids_app.workflows.participant import run_participants

        validate_bids_dir(config.bids_dir, fmriprep_root(config), config.skip_bids_validation)
        run_participants(config, selected)
    else:
        from bids_app.workflows.group import run_group

        run_group(config)


class EarlyRecords(logging.Handler):
    """Holds what is logged before OUTPUT_DIR exists (input discovery), for the log file."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def hold_early_records() -> EarlyRecords:
    """Route the app's log records to an :class:`EarlyRecords` until :func:`start_logging`."""
    early = EarlyRecords()
    for logger in (LOGGER, logging.getLogger("bids_app")):
        logger.setLevel(logging.DEBUG)
        logger.handlers = [early]
        logger.propagate = False
    return early


def start_logging(config: Config, early: EarlyRecords | None = None) -> Path:
    """Create OUTPUT_DIR, log to ``OUTPUT_DIR/logs/`` (with the records held in ``early``)
    and save the resolved config and versions beside it. The work folder is made by what
    first writes there (the bootstrap cache, the group's spill files).

    File names carry a timestamp and the PID so concurrent participant jobs never
    share a log file.
    """
    logs = make_folder(config.output_dir / "logs", "OUTPUT_DIR")
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}"
    labels = "_".join(f"sub-{x}" for x in config.participant_labels[:3]) or config.analysis_level
    stem = logs / f"hemocoupling_{labels}_{stamp}"
    record = {"config": config.to_dict(), "versions": package_versions(),
              "python": platform.python_version(), "platform": platform.platform()}
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str))

    level = logging.DEBUG if config.verbose >= 2 else logging.INFO
    file_handler = logging.FileHandler(stem.with_suffix(".log"))
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    file_handler.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    console.setLevel(level if config.verbose else logging.WARNING)
    # Errors reach the console once, as main()'s one-line message.
    console.addFilter(lambda record: record.levelno < logging.ERROR)
    root = logging.getLogger("bids_app")
    for logger in (LOGGER, root):
        logger.setLevel(logging.DEBUG)
        logger.handlers = [file_handler, console]
        logger.propagate = False
    for record in early.records if early else ():
        for handler in (file_handler, console):
            if record.levelno >= handler.level:
                handler.handle(record)
    return stem.with_suffix(".log")


def package_versions() -> dict[str, str]:
    """Versions of hemocoupling and its numerical stack, for the log."""
    found = {"hemocoupling": __version__}
    for name in _VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def apply_threads(config: Config) -> None:
    """Cap BLAS/OpenMP and torch intra-op threads at ``--omp-nthreads``, here and in the
    worker processes started after this call (:mod:`bids_app.threads`)."""
    from threadpoolctl import threadpool_limits

    set_thread_variables(config.omp_nthreads)
    threadpool_limits(limits=config.omp_nthreads)
    import torch

    torch.set_num_threads(config.omp_nthreads)


if __name__ == "__main__":
    sys.exit(main())
