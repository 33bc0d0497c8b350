"""The surface spaces the app reads, in the order it prefers them.

One row per space: its ``--space`` label (fMRIPrep's ``space[_den]`` entities), the BIDS
``space`` and ``den`` entities of its files, and the TemplateFlow template and density of
its mesh and group parcellations (fsLR 91k grayordinates use the 32k surface; fsnative
has no template: subject meshes only). The simulator's ``--mesh`` names are aliases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class SurfaceSpace:
    label: str
    entity: str
    density: str | None = None
    templateflow: tuple[str, str] | None = None


# Preference order when a participant has several spaces and --space is not given.
SPACES: tuple[SurfaceSpace, ...] = (
    SurfaceSpace("fsaverage5", "fsaverage5", None, ("fsaverage", "10k")),
    SurfaceSpace("fsaverage6", "fsaverage6", None, ("fsaverage", "41k")),
    SurfaceSpace("fsaverage", "fsaverage", None, ("fsaverage", "164k")),
    SurfaceSpace("fsLR_den-32k", "fsLR", "32k", ("fsLR", "32k")),
    SurfaceSpace("fsLR_den-91k", "fsLR", "91k", ("fsLR", "32k")),
    SurfaceSpace("fsnative", "fsnative"),
)
SPACE_LABELS = tuple(space.label for space in SPACES)
# hemocoupling-simulate --mesh → the space its data are written in.
SIMULATOR_MESHES = {"fsaverage5": "fsaverage5", "fsLR32k": "fsLR_den-32k"}

_BY_LABEL = {space.label: space for space in SPACES}


def space_label(entities: Mapping[str, str]) -> str:
    """``fsaverage5``, ``fsLR_den-32k``, ``fsLR_den-91k``: the form ``--space`` takes, from
    a file's entities (short or pybids names); no space entity means fsnative."""
    space = entities.get("space", "fsnative")
    den = entities.get("density") or entities.get("den")
    return f"{space}_den-{den}" if den else space


def template_of(name: str) -> tuple[str, str] | None:
    """TemplateFlow (template, density) of a space given by label, ``space`` entity or
    simulator mesh name; None when it has no template."""
    name = SIMULATOR_MESHES.get(name, name)
    space = _BY_LABEL.get(name) or next((s for s in SPACES if s.entity == name), None)
    return space.templateflow if space else None


def template_names() -> list[str]:
    """Every name :func:`template_of` resolves to a template."""
    names = [s.entity for s in SPACES if s.templateflow] + list(SIMULATOR_MESHES)
    return list(dict.fromkeys(names))
