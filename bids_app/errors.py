"""Exceptions that carry the BIDS-App exit codes documented in the README.

Every stage raises one of these with a one-line message that names the file and the
fix; only the CLI turns them into exit codes, so stages stay usable as a library.
"""

from __future__ import annotations


class HemocouplingError(Exception):
    """A failure the user can act on; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class UsageError(HemocouplingError):
    """Bad command-line usage (exit 64; argparse's 2 is reserved)."""

    exit_code = 64


class InputValidationError(HemocouplingError):
    """An input exists but is not usable: wrong shape, NaN, bad TR (exit 16)."""

    exit_code = 16


class NothingSelectedError(HemocouplingError):
    """Participant labels or filters selected no data (exit 18)."""

    exit_code = 18


class MissingInputError(HemocouplingError):
    """A required input file or metadata field is absent (exit 66)."""

    exit_code = 66


class OutputError(HemocouplingError):
    """The output or work directory cannot be created or written (exit 73)."""

    exit_code = 73


# Exit status of a run ended by SIGTERM (128 + 15), as a shell reports a killed job.
EXIT_SIGTERM = 143

EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "runtime failure",
    16: "input failed validation",
    18: "filters selected nothing",
    64: "usage error",
    66: "required inputs missing",
    73: "cannot create output",
    EXIT_SIGTERM: "interrupted by SIGTERM (bootstrap refits kept for a resume)",
}
"""Every exit code of ``hemocoupling``: the parser's epilog, the README table and the
Boutiques descriptor (``scripts/make_boutiques.py``) all list these."""
