"""Run the BIDS validator (``bids-validator-deno``, pinned) on a raw BIDS_DIR.

The validator is the schema-based one the BIDS project maintains; its PyPI wheel ships
the bundled JavaScript and pulls the Deno runtime in as the ``deno`` wheel, so it runs
offline. Only a raw dataset is validated, as fMRIPrep does: a BIDS_DIR that is fMRIPrep's
outputs (``DatasetType: derivative``, or the folder the series are read from) holds GIFTI
series and files the raw schema does not describe, and fMRIPrep validated its raw input.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from bids_app.errors import HemocouplingError, InputValidationError

LOGGER = logging.getLogger(__name__)
VALIDATOR = "bids-validator-deno"
SKIP_HINT = "pass --skip-bids-validation to run without it"


def dataset_type(bids_dir: Path) -> str | None:
    """``DatasetType`` of ``bids_dir`` (``raw`` when the description omits it, as BIDS
    says), or None without a readable dataset_description.json."""
    try:
        description = json.loads((bids_dir / "dataset_description.json").read_text())
    except (OSError, ValueError):
        return None
    return description.get("DatasetType", "raw") if isinstance(description, dict) else None


def validator_command() -> str:
    """The installed validator: beside this Python first (the app's venv), then PATH."""
    beside = Path(sys.executable).with_name(VALIDATOR)
    found = str(beside) if beside.is_file() else shutil.which(VALIDATOR)
    if found is None:
        raise HemocouplingError(f"{VALIDATOR} is not installed (pip install -r "
                                f"requirements.lock); {SKIP_HINT}")
    return found


def validate_bids_dir(bids_dir: Path, fmriprep_dir: Path | None = None,
                      skip: bool = False) -> None:
    """Validate a raw ``bids_dir``; its errors are exit 16 with the first in one line.

    The full report (errors and warnings) goes to the log. BIDS_DIR is not validated when
    it is the fMRIPrep folder itself (``fmriprep_dir``), says ``DatasetType: derivative``
    or has no readable dataset_description.json (the discovery reports what is missing).
    """
    if skip:
        LOGGER.info("BIDS validation skipped (--skip-bids-validation)")
        return
    kind = dataset_type(bids_dir)
    if fmriprep_dir is not None and Path(fmriprep_dir).resolve() == Path(bids_dir).resolve():
        kind = "derivative"  # the fMRIPrep outputs, whatever their description says
    if kind != "raw":
        LOGGER.info("BIDS_DIR %s is %s: not validated (only raw datasets are)", bids_dir,
                    "a derivatives dataset" if kind else "without dataset_description.json")
        return
    done = subprocess.run([validator_command(), str(bids_dir), "--format", "json"],
                          capture_output=True, text=True, check=False)
    try:
        report = json.loads(done.stdout)
        issues = report["issues"]["issues"]
        messages = report["issues"].get("codeMessages", {})
    except (ValueError, KeyError, TypeError) as err:
        raise HemocouplingError(f"{VALIDATOR} failed on {bids_dir} (exit {done.returncode}: "
                                f"{done.stderr.strip()[:200] or err}); {SKIP_HINT}") from err
    errors = [i for i in issues if i.get("severity") == "error"]
    warnings = len(issues) - len(errors)
    for issue in issues:
        LOGGER.info("%s %s: %s %s %s", VALIDATOR, issue.get("severity"), issue.get("code"),
                    issue.get("location", ""), issue.get("subCode", "") or "")
    if errors:
        first = errors[0]
        where = bids_dir / first.get("location", "").lstrip("/")
        text = " ".join(messages.get(first.get("code"), "").split())  # one line
        raise InputValidationError(
            f"BIDS_DIR {bids_dir} is not valid BIDS: {len(errors)} error(s), the first "
            f"{first.get('code')} in {where} ({text}); "
            f"fix the dataset (full report in the log) or {SKIP_HINT}")
    LOGGER.info("%s: %s is valid BIDS (%d warning(s), listed above)", VALIDATOR, bids_dir,
                warnings)
