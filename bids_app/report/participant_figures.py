"""Draw every figure of a participant's report into ``sub-<label>/figures/``.

Runs once at the participant level, where the meshes, the cleaned series and the
confounds are at hand: maps, CI widths, evidence surfaces, Newton traces and the
spectrum-against-envelope come from the maps and sidecars just written; the carpet and
the confounds plot from the fit itself. :mod:`bids_app.report.participant` then only
assembles (also under ``--reports-only``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from bids_app.io.atomic import write_bytes
from bids_app.io.derivatives import MapFile, find_maps
from bids_app.models import DERIVED_UNITS
from bids_app.report.figure_files import figure_path
from bids_app.report.figures import (
    carpet_figure,
    confounds_figure,
    evidence_figure,
    spectrum_figure,
    traces_figure,
)
from bids_app.report.participant import ci_width, hemi_entity, hemisphere_records, load_fit
from bids_app.report.surfaces import MeshLookup, find_meshes, map_figure, surface_shading

ShadingFor = Callable[[str, str, tuple], np.ndarray]
"""``(space, hemi, mesh) -> shading``; see :func:`bids_app.report.surfaces.surface_shading`."""


def write_fit_figures(output_dir: Path, files: list[MapFile], meshes: MeshLookup | None,
                      shading: ShadingFor = surface_shading) -> list[Path]:
    """The figures of one fit drawn from its maps and sidecars on disk."""
    fit = load_fit(files)
    units = DERIVED_UNITS[fit.model]
    space = fit.entities.get("space", "")
    estimates = {h: fit.values[fit.params[0], "estimate"][h] for h in fit.hemis}
    mesh_by_hemi, _ = find_meshes(space, estimates, meshes)
    shades = {h: shading(space, h, mesh) for h, mesh in mesh_by_hemi.items()}
    drawn: dict[Path, bytes | None] = {}
    for param in fit.params:
        symmetric = param == "latency"
        figure = map_figure(mesh_by_hemi, fit.values[param, "estimate"], f"{param} estimate",
                            units[param], "RdBu_r" if symmetric else "viridis", symmetric,
                            shading=shades)
        drawn[figure_path(output_dir, fit.entities, "estimate", param=param)] = figure.svg
        if (width := ci_width(fit, param)) is not None:
            figure = map_figure(mesh_by_hemi, width, f"{param} CI width", units[param],
                                "magma", shading=shades)
            drawn[figure_path(output_dir, fit.entities, "ciwidth", param=param)] = figure.svg
    for label, record in hemisphere_records(fit.sidecars[fit.params[0]]):
        hemi = hemi_entity(label)
        envelope = (record.get("QualityControl") or {}).get("SpectrumEnvelope") or {}
        drawn[figure_path(output_dir, fit.entities, "spectrum", hemi)] = spectrum_figure(
            envelope, f"data against the model's spectra, {label}")
        drawn[figure_path(output_dir, fit.entities, "evidence", hemi)] = evidence_figure(
            record.get("EvidenceGrid") or {}, f"log evidence, {label}")
        drawn[figure_path(output_dir, fit.entities, "newton", hemi)] = traces_figure(
            record.get("Convergence") or {}, f"Newton iterations, {label}")
    return [write_bytes(path, svg) for path, svg in drawn.items() if svg is not None]


def write_input_figures(output_dir: Path, entities: Mapping[str, str], carpets: Mapping,
                        tr: float, first_frame: int, confounds: dict | None) -> list[Path]:
    """Input QC of one run: a carpet of each hemisphere's cleaned series and the
    framewise displacement and regressors (``confounds``: the ``fd``, ``regressors``,
    ``names``, ``kept``, ``fd_threshold`` of :func:`confounds_figure`)."""
    drawn: dict[Path, bytes | None] = {}
    for hemi, carpet in carpets.items():
        if carpet is not None:
            drawn[figure_path(output_dir, entities, "carpet", hemi)] = carpet_figure(
                carpet, tr, first_frame, f"cleaned series, hemi-{hemi} (z-scored)")
    if confounds is not None:
        drawn[figure_path(output_dir, entities, "confounds")] = confounds_figure(
            tr=tr, title="framewise displacement and the regressors removed", **confounds)
    return [write_bytes(path, svg) for path, svg in drawn.items() if svg is not None]


def write_map_figures(output_dir: Path | str, subject: str, meshes: MeshLookup | None = None,
                      shading: ShadingFor = surface_shading) -> list[Path]:
    """The figures of every fit of ``subject`` found under ``output_dir``."""
    groups: dict[tuple, list[MapFile]] = defaultdict(list)
    for item in find_maps(output_dir, subject):
        groups[item.fit_key].append(item)
    return [path for files in groups.values()
            for path in write_fit_figures(Path(output_dir), files, meshes, shading)]
