"""Template cortical meshes (fsaverage family, fsLR 32k) for the spatial prior, and the
template parcellations the group level tabulates.

The prior needs a midthickness mesh in mm. TemplateFlow serves fsLR 32k midthickness,
but for fsaverage densities often only white and pial, so their vertex-wise mean (the
usual midthickness construction) is used. fsaverage5 is also shipped inside the nilearn
wheel, which serves as the offline fallback.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_app.errors import MissingInputError
from bids_app.io.derivatives import parse_name
from bids_app.io.spaces import template_names, template_of
from bids_app.io.surface_files import load_surface

LOGGER = logging.getLogger(__name__)

Parcellation = Mapping[str, tuple[np.ndarray, Mapping[int, str]]]
"""Per hemisphere: (integer label per vertex, label → parcel name); 0 = unlabelled."""
_INSTALL_HINT = ("set TEMPLATEFLOW_HOME to a TemplateFlow copy holding it, or allow "
                 "TemplateFlow to download (TEMPLATEFLOW_AUTOUPDATE=1, network)")
_FETCH_HINT = ("fetch it on a machine with internet with the hemocoupling sources' "
               "`TEMPLATEFLOW_HOME=DIR python scripts/fetch_templates.py`, then run with "
               "TEMPLATEFLOW_HOME=DIR (docs/deployment.md, TemplateFlow offline)")


def template_mesh(space: str, hemi: str) -> tuple[np.ndarray, np.ndarray]:
    """Midthickness mesh of a template space: vertices (V, 3) mm, faces (F, 3).

    Parameters
    ----------
    space : str
        A template space by ``space`` entity, ``--space`` label or simulator mesh name
        (:mod:`bids_app.io.spaces`), e.g. "fsaverage5", "fsLR", "fsLR_den-32k".
    hemi : {"L", "R"}

    Returns read-only arrays (cached: the same mesh is asked for per run).
    """
    if template_of(space) is None:
        raise MissingInputError(f"no template mesh for space '{space}'; supported: "
                                f"{', '.join(template_names())} (or pass subject meshes)")
    if hemi not in ("L", "R"):
        raise ValueError(f"hemi must be 'L' or 'R', got {hemi!r}")
    return _cached_mesh(space, hemi)


@lru_cache(maxsize=8)
def _cached_mesh(space: str, hemi: str) -> tuple[np.ndarray, np.ndarray]:
    template, density = template_of(space)
    mesh = _templateflow_midthickness(template, density, hemi)
    if mesh is None and space == "fsaverage5":
        mesh = _nilearn_fsaverage5(hemi)
    if mesh is None:
        raise MissingInputError(
            f"TemplateFlow tpl-{template} hemi-{hemi} den-{density} midthickness (or white "
            f"and pial) surface not found; {_INSTALL_HINT}")
    for array in mesh:
        array.flags.writeable = False
    return mesh


def templateflow_parcellations(space: str, hemis: Sequence[str]) -> dict[str, Parcellation]:
    """Surface parcellations (``*_dseg.label.gii``) TemplateFlow has for ``space``.

    Returns ``{atlas: {hemi: (labels, names)}}`` for atlases covering every hemisphere;
    empty, with one warning naming the missing file and how to fetch it, when
    TemplateFlow has none locally and may not or cannot download (offline).
    """
    if template_of(space) is None:
        return {}
    template, density = template_of(space)
    found: dict[str, dict[str, tuple[np.ndarray, dict[int, str]]]] = defaultdict(dict)
    missing: list[str] = []
    for hemi in hemis:
        query = {"hemi": hemi, "density": density, "suffix": "dseg", "extension": ".label.gii"}
        try:
            usable, absent = _templateflow_files(template, query)
        except Exception as exc:  # downloads fail with network errors of many kinds
            LOGGER.warning("TemplateFlow parcellations for %s unavailable (%s): per-parcel "
                           "tables skipped; %s", space, exc, _FETCH_HINT)
            return {}
        missing += [path.name for path in absent]
        if not usable and not absent:
            missing.append(f"tpl-{template}_hemi-{hemi}_den-{density}_atlas-*_dseg.label.gii")
        for path in usable:
            ents = parse_name(path.name)[0]
            # atlas alone is ambiguous (Yeo 7/17 networks, Schaefer scales, Desikan
            # variants share it): key on every distinguishing entity.
            atlas = "_".join(f"{key}-{ents[key]}" for key in ("atlas", "seg", "scale", "desc")
                             if key in ents) or path.name.split(".")[0]
            img = nib.load(path)
            labels = np.asarray(img.darrays[0].data, dtype=int)
            found[atlas][hemi] = (labels, img.labeltable.get_labels_as_dict())
    complete = {atlas: per for atlas, per in found.items() if set(per) == set(hemis)}
    if not complete:
        from templateflow.conf import TF_HOME

        LOGGER.warning("no %s parcellation in TEMPLATEFLOW_HOME=%s (missing %s%s): per-parcel "
                       "tables skipped; %s", space, TF_HOME, missing[0] if missing else "?",
                       f" and {len(missing) - 1} more" if len(missing) > 1 else "", _FETCH_HINT)
    return complete


def _templateflow_files(template: str, query: Mapping[str, str | None]
                        ) -> tuple[list[Path], list[Path]]:
    """(usable, absent) files TemplateFlow lists for a query.

    Files not downloaded yet are empty placeholders. They are downloaded only when
    TEMPLATEFLOW_AUTOUPDATE allows it, so an offline or read-only run never reaches for S3.
    """
    import templateflow.api as tflow
    from templateflow.conf import TF_AUTOUPDATE

    def usable(path: Path) -> bool:
        return path.is_file() and path.stat().st_size > 0

    listed = [Path(p) for p in tflow.ls(template, **query)]
    if TF_AUTOUPDATE and not all(map(usable, listed)):
        tflow.get(template, raise_empty=False, **query)
    return [p for p in listed if usable(p)], [p for p in listed if not usable(p)]


def _templateflow_file(template: str, density: str, hemi: str, suffix: str,
                       extension: str = ".surf.gii") -> Path | None:
    """One TemplateFlow surface file (or per-vertex ``.shape.gii``), or None when it
    cannot be had."""
    query = {"hemi": hemi, "density": density, "suffix": suffix, "extension": extension}
    try:
        found = _templateflow_files(template, query)[0]
    except Exception:  # offline, missing skeleton, S3 errors: treat as absent
        return None
    found = [f for f in found if "desc-" not in f.name]
    return found[0] if len(found) == 1 else None


def template_shape(space: str, hemi: str, suffix: str) -> np.ndarray | None:
    """A template's per-vertex ``sulc`` or ``curv`` map, or None when TemplateFlow has none
    (the offline copy may hold meshes only)."""
    if template_of(space) is None:
        return None
    template, density = template_of(space)
    path = _templateflow_file(template, density, hemi, suffix, ".shape.gii")
    return None if path is None else np.asarray(nib.load(path).darrays[0].data, dtype=float)


def _templateflow_midthickness(template: str, density: str, hemi: str
                               ) -> tuple[np.ndarray, np.ndarray] | None:
    path = _templateflow_file(template, density, hemi, "midthickness")
    if path is not None:
        return load_surface(path)
    white = _templateflow_file(template, density, hemi, "white")
    pial = _templateflow_file(template, density, hemi, "pial")
    if white is None or pial is None:
        return None
    return _average_meshes(load_surface(white), load_surface(pial))


def _nilearn_fsaverage5(hemi: str) -> tuple[np.ndarray, np.ndarray] | None:
    side = {"L": "left", "R": "right"}[hemi]
    spec = find_spec("nilearn")  # locates the wheel without importing nilearn (slow)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "fsaverage5"
    white, pial = (folder / f"{kind}_{side}.gii.gz" for kind in ("white", "pial"))
    if not (white.is_file() and pial.is_file()):
        return None
    return _average_meshes(load_surface(white), load_surface(pial))


def _average_meshes(white: tuple[np.ndarray, np.ndarray], pial: tuple[np.ndarray, np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Midthickness as the vertex-wise mean of white and pial (same topology required)."""
    if white[0].shape != pial[0].shape or not np.array_equal(white[1], pial[1]):
        raise MissingInputError("white and pial template surfaces differ in topology; "
                                "reinstall the TemplateFlow template")
    return 0.5 * (white[0] + pial[0]), white[1]
