"""Which participant maps the group level reads, and how they fall into groups.

Maps are grouped by what makes them comparable vertex by vertex: task, space, density,
HRF model and file format. fsnative maps are not in a common space and are refused.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bids_app.errors import InputValidationError, MissingInputError, NothingSelectedError
from bids_app.io.derivatives import CIFTI_EXT, MapFile, find_maps
from bids_app.io.spaces import space_label
from bids_app.models import DERIVED_UNITS

PARAM_MODEL = {param: model for model, units in DERIVED_UNITS.items() for param in units}
"""Reported parameter → the HRF model it belongs to."""


@dataclass(frozen=True)
class GroupKey:
    """What makes participant maps comparable vertex by vertex."""

    task: str | None
    space: str
    den: str | None
    model: str
    extension: str

    @property
    def entities(self) -> dict[str, str]:
        ents = {"task": self.task, "space": self.space, "den": self.den}
        return {k: v for k, v in ents.items() if v}

    @property
    def label(self) -> str:
        parts = [f"{k}-{v}" for k, v in self.entities.items()]
        return " ".join([*parts, f"model-{self.model}"])


def group_key(item: MapFile) -> GroupKey:
    ents = item.entities
    return GroupKey(
        task=ents.get("task"),
        space=ents.get("space", ""),
        den=ents.get("den"),
        model=PARAM_MODEL[ents["param"]],
        extension=CIFTI_EXT if item.path.name.endswith(CIFTI_EXT) else ".func.gii",
    )


def select_groups(
    output_dir: Path, participants: Sequence[str], space: str | None
) -> dict[GroupKey, dict[str, list[MapFile]]]:
    """Estimate maps by group and subject, filtered by participant and space."""
    files = [f for f in find_maps(output_dir) if f.entities["param"] in PARAM_MODEL]
    if not files:
        raise MissingInputError(
            f"no participant maps under {output_dir}; run the participant level first"
        )
    if participants:
        unknown = sorted(set(participants) - {f.entities["sub"] for f in files})
        if unknown:
            raise NothingSelectedError(
                f"--participant-label {' '.join(unknown)} has no participant maps in "
                f"{output_dir}; run the participant level for it or drop the label"
            )
        files = [f for f in files if f.entities["sub"] in set(participants)]
    if space:
        files = [f for f in files if space in (f.entities.get("space"), space_label(f.entities))]
    if not files:
        raise NothingSelectedError(
            f"no participant maps in {output_dir} match participant_label "
            f"{list(participants) or 'any'} and --space {space or 'any'}; check the labels"
        )
    native = sorted(
        {f.entities["sub"] for f in files}
        - {f.entities["sub"] for f in files if f.entities.get("space") != "fsnative"}
    )
    if native:
        raise InputValidationError(
            f"sub-{', sub-'.join(native)} in {output_dir} have only fsnative maps, which are "
            "not in a common space; rerun the participant level with --space fsaverage5 (or "
            "another template space) and pass that --space to the group level"
        )
    files = [f for f in files if f.entities.get("space") != "fsnative"]
    groups: dict[GroupKey, dict[str, list[MapFile]]] = defaultdict(lambda: defaultdict(list))
    for item in files:
        groups[group_key(item)][item.entities["sub"]].append(item)
    return groups
