"""Group level: participant maps → mean/SD/N, random-effects, test–retest and mode maps.

Reads what the participant level wrote to OUTPUT_DIR, never the inputs, in one direction:

- :mod:`.selection` finds the maps and groups them by (task, space, density, model, file
  format); :mod:`.participant_maps` combines each participant's fits into one map per
  parameter; :mod:`.exclusions` decides who enters and writes ``group_participants.tsv``
  saying who was included and why others were not;
- :mod:`.aggregate` reads one participant at a time into a disk-backed store
  (:mod:`bids_app.io.spill`), then runs the vertex-wise model
  (:mod:`bids_app.group.vertexwise`: mean, SD, N, random effects, test–retest ICC) block
  by block (:mod:`bids_app.group.blocks`), in this process or on a Dask cluster
  (``GroupOptions.dask_scheduler``);
- :mod:`.group_model`, :mod:`.modes`, :mod:`.retest` and :mod:`.parcels` turn the results
  into maps and tables, written by :mod:`.writing`.

Outputs go to the OUTPUT_DIR root (no ``sub-`` entity): ``stat-{mean,sd,n}`` maps; per
design term ``desc-<term>`` maps of ``stat-{effect,se,z,p,q}`` (plus ``cilower``/``ciupper``
for the mean) and ``desc-re`` between-participant SD and N; ``desc-retest`` ICC maps and
per-parcel tables when sessions or runs repeat; ``desc-modes`` population modes with a
``_boldmodes.tsv`` of scores; per-parcel tables; and the group report.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bids_app.errors import NothingSelectedError
from bids_app.group.blocks import block_runner
from bids_app.io.dataset_description import write_bidsignore, write_dataset_description
from bids_app.io.templates import Parcellation
from bids_app.report.group import write_group_report
from bids_app.report.surfaces import MeshLookup
from bids_app.workflows.group.aggregate import GroupResult, aggregate_group
from bids_app.workflows.group.exclusions import PARTICIPANTS_TSV, write_participants_table
from bids_app.workflows.group.modes import MODES_SUFFIX
from bids_app.workflows.group.options import GroupOptions
from bids_app.workflows.group.selection import select_groups

__all__ = ["GroupOptions", "GroupResult", "group_level", "run_group"]

LOGGER = logging.getLogger(__name__)


def group_level(
    output_dir: Path | str,
    participants: Sequence[str] = (),
    space: str | None = None,
    report: bool = True,
    parcellations: Mapping[str, Parcellation] | None = None,
    meshes: MeshLookup | None = None,
    options: GroupOptions | None = None,
) -> list[GroupResult]:
    """Run the group level on OUTPUT_DIR; returns one result per group of comparable maps.

    ``participants`` (labels without ``sub-``) and ``space`` (``fsaverage5``,
    ``fsLR_den-32k`` …) restrict what is aggregated; ``parcellations`` overrides the
    TemplateFlow lookup (``{atlas: {hemi: (labels, names)}}``); ``meshes(space, hemi)``
    gives the report's surfaces and the modes' mass (default: template midthickness);
    ``options`` sets the group model, who enters it and where the vertex blocks run.
    """
    output_dir = Path(output_dir)
    options = options or GroupOptions()
    groups = select_groups(output_dir, participants, space)
    write_dataset_description(output_dir)
    write_bidsignore(output_dir, extra=(f"*_{MODES_SUFFIX}.tsv", f"*_{MODES_SUFFIX}.json"))
    with block_runner(options.dask_scheduler) as runner:
        results = [
            aggregate_group(output_dir, key, subjects, parcellations, options, meshes, runner)
            for key, subjects in sorted(groups.items(), key=lambda kv: kv[0].label)
        ]
    write_participants_table(output_dir, [row for r in results for row in r.rows],
                             participants)
    for result in results:
        LOGGER.info(
            "group %s: %d included, %d excluded",
            result.key.label,
            len(result.included),
            len(result.rows) - len(result.included),
        )
    if not any(result.included for result in results):
        raise NothingSelectedError(
            f"no participant could be included; see {output_dir / PARTICIPANTS_TSV} for why "
            "(--include-flagged keeps participants flagged by quality control or identifiability)"
        )
    if report:
        # The plotting libraries' warnings (nilearn's RuntimeWarnings on NaN vertices,
        # matplotlib's) are about drawing, not the maps: to the log, not the terminal.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            write_group_report(output_dir, meshes)
        log_report_warnings(caught)
    return results


def log_report_warnings(caught: Sequence[warnings.WarningMessage]) -> None:
    """Each distinct warning the report raised, once, with how often: a warning raised
    for every panel or surface is one log line, not one per occurrence."""
    counts = Counter((w.category.__name__, str(w.message)) for w in caught)
    for (category, message), count in counts.items():
        LOGGER.info("group report: %s: %s%s", category, message,
                    f" ({count} times)" if count > 1 else "")


def run_group(config: Any) -> list[GroupResult]:
    """CLI entry: the group level for a :class:`bids_app.config.Config`."""
    from bids_app.io.group_inputs import read_participants_table

    source = Path(config.bids_dir) / "participants.tsv"
    options = GroupOptions(
        formula=config.group_model,
        contrast=config.contrast,
        include_flagged=config.include_flagged,
        participants_table=read_participants_table(source) if config.group_model else None,
        n_modes=config.n_modes,
        work_dir=Path(config.work_dir),
        dask_scheduler=config.dask_scheduler,
    )
    return group_level(
        config.output_dir,
        participants=config.participant_labels,
        space=config.space,
        report=config.report,
        options=options,
    )
