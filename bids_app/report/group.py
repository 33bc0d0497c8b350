"""The group HTML report (``OUTPUT_DIR/group.html``), built from the group outputs on disk."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bids_app.errors import MissingInputError
from bids_app.io.atomic import write_text
from bids_app.io.derivatives import MapFile, find_group_maps, read_map, split_hemispheres
from bids_app.models import DERIVED_UNITS
from bids_app.report.render import render
from bids_app.report.surfaces import MeshLookup, find_meshes, map_figure

_PARAM_MODEL = {param: model for model, units in DERIVED_UNITS.items() for param in units}
_STAT_STYLE = {"mean": "viridis", "sd": "magma", "n": "Blues"}
GROUP_REPORT = "group.html"


def _per_hemisphere(files: list[MapFile]) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {}
    for item in files:
        loaded = read_map(item.path)
        if loaded.brain_models is not None:
            values.update(split_hemispheres(loaded.values, loaded.brain_models))
        else:
            values[item.entities["hemi"]] = loaded.values
    return values


def _section(key: tuple, model: str, files: list[MapFile], meshes: MeshLookup | None) -> dict:
    entities = dict(key)
    title = " ".join([*(f"{k}-{v}" for k, v in key), f"model-{model}"])
    section: dict[str, Any] = {
        "title": title,
        "anchor": re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-"),
        "notes": [],
        "map_figures": [],
        "param_header": [
            "parameter",
            "units",
            "hemisphere",
            "vertices",
            "median of mean",
            "median SD",
            "max N",
        ],
        "param_rows": [],
    }
    by_stat: dict[tuple[str, str], list[MapFile]] = defaultdict(list)
    for item in files:
        by_stat[item.entities["param"], item.entities["stat"]].append(item)
    units = DERIVED_UNITS[model]
    params = [p for p in units if (p, "mean") in by_stat]
    first = read_map(by_stat[params[0], "mean"][0].path).metadata
    section["n_included"] = first.get("NParticipants", "?")
    section["parcel_tables"] = first.get("ParcelTables") or []
    if first.get("ParcelTablesNote"):
        section["notes"].append(first["ParcelTablesNote"])
    mesh_by_hemi: dict = {}
    for param in params:
        stats = {stat: _per_hemisphere(by_stat[param, stat]) for stat in ("mean", "sd", "n")}
        if not mesh_by_hemi:
            mesh_by_hemi, notes = find_meshes(entities.get("space", ""), stats["mean"], meshes)
            section["notes"].extend(notes)
        for hemi, mean in sorted(stats["mean"].items()):
            sd, n = stats["sd"].get(hemi), stats["n"].get(hemi)
            finite = np.isfinite(mean)
            section["param_rows"].append(
                [
                    param,
                    units[param],
                    hemi,
                    str(int(finite.sum())),
                    f"{np.median(mean[finite]):.4g}" if finite.any() else "–",
                    f"{np.nanmedian(sd):.4g}" if sd is not None and np.isfinite(sd).any() else "–",
                    f"{int(np.nanmax(n))}" if n is not None and np.isfinite(n).any() else "–",
                ]
            )
        symmetric = param == "latency"
        for stat in ("mean", "sd", "n"):
            cmap = "RdBu_r" if symmetric and stat == "mean" else _STAT_STYLE[stat]
            unit = "participants" if stat == "n" else units[param]
            limits = None
            if stat == "n":  # counts from 0 to the largest, so a constant N is not mid-grey
                top = max(
                    (np.nanmax(v) for v in stats["n"].values() if np.isfinite(v).any()), default=1.0
                )
                limits = (0.0, float(max(top, 1.0)))
            figure = map_figure(
                mesh_by_hemi,
                stats[stat],
                f"{param} group {stat}",
                unit,
                cmap,
                symmetric and stat == "mean",
                limits,
            )
            section["map_figures"].append(figure)
    return section


def write_group_report(output_dir: Path | str, meshes: MeshLookup | None = None) -> Path:
    """Write ``OUTPUT_DIR/group.html`` from the group maps and ``group_participants.tsv``.

    ``meshes(space, hemi)`` gives the surface to draw on (default: template midthickness).
    """
    output_dir = Path(output_dir)
    files = find_group_maps(output_dir)
    if not files:
        raise MissingInputError(f"no group maps in {output_dir}; run the group level first")
    groups: dict[tuple, list[MapFile]] = defaultdict(list)
    for item in files:
        model = _PARAM_MODEL.get(item.entities["param"])
        if model:
            groups[item.fit_key, model].append(item)
    sections = [
        _section(key, model, group, meshes) for (key, model), group in sorted(groups.items())
    ]
    table = output_dir / "group_participants.tsv"
    header: list[str] = []
    rows: list[list[str]] = []
    if table.is_file():
        with open(table, newline="") as handle:
            reader = csv.reader(handle, delimiter="\t")
            header = next(reader, [])
            rows = list(reader)
    html = render(
        "group.html.j2",
        output_dir=str(output_dir),
        sections=sections,
        participants=rows,
        participant_header=header,
    )
    return write_text(output_dir / GROUP_REPORT, html)
