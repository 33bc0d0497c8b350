"""The ``hemocoupling`` command: thread limits from the arguments, then the CLI.

This module imports nothing that loads OpenMP or BLAS before the limits are set
(:mod:`bids_app.threads` says why).
"""

from __future__ import annotations

import sys

from bids_app.threads import limit_threads_from_argv


def main() -> int:
    """Set the thread limits from ``sys.argv``, then run :func:`bids_app.cli.run.main`."""
    limit_threads_from_argv(sys.argv[1:])
    from bids_app.cli.run import main as run  # loads scipy, CHOLMOD's OpenMP, torch

    return run()


if __name__ == "__main__":
    sys.exit(main())
