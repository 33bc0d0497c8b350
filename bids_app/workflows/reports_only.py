"""``--reports-only``: re-assemble the HTML reports of OUTPUT_DIR without refitting.

As fMRIPrep's option: the participant level drew its figures into
``sub-<label>/figures/`` and wrote the maps' sidecars; the participant report is
assembled from those alone. The group report is rebuilt from the group maps and
``group_participants.tsv``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bids_app.config import Config
from bids_app.errors import MissingInputError
from bids_app.io.derivatives import find_maps
from bids_app.report.group import write_group_report
from bids_app.report.participant import write_participant_report

LOGGER = logging.getLogger(__name__)


def rebuild_reports(config: Config) -> list[Path]:
    """The reports of ``config.analysis_level``: one per selected participant (all with
    maps when none is selected), or the group report."""
    if config.analysis_level == "group":
        written = [write_group_report(config.output_dir)]
    else:
        subjects = config.participant_labels or sorted(
            {item.entities["sub"] for item in find_maps(config.output_dir)})
        if not subjects:
            raise MissingInputError(
                f"no participant maps under {config.output_dir}; --reports-only re-assembles "
                "the reports of an earlier participant run: run it first")
        written = [write_participant_report(config.output_dir, s) for s in subjects]
    for path in written:
        LOGGER.info("report re-assembled: %s", path)
    return written
