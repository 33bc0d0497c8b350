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
from bids_app.report.figures import Figure, histogram_figure
from bids_app.report.render import render
from bids_app.report.surfaces import MeshLookup, find_meshes, map_figure, surface_shading

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


# desc of the maps other than per-term random-effects maps (workflows/group.py writes them)
_MODEL_DESC, _RETEST_DESC, _MODES_DESC = "re", "retest", "modes"
_Q_LEVEL = 0.05


def _extra_rows(
    by_desc: dict[str, dict[tuple[str, str], list[MapFile]]], units: dict[str, str]
) -> tuple[list[list[str]], dict[str, Any]]:
    """Table rows of the random-effects terms and the group-model record."""
    rows, model = [], {}
    for desc, by_stat in sorted(by_desc.items()):
        if desc in (_MODEL_DESC, _RETEST_DESC, _MODES_DESC):
            continue
        for param in units:
            if (param, "q") not in by_stat:
                continue
            q = np.concatenate(list(_per_hemisphere(by_stat[param, "q"]).values()))
            effect = np.concatenate(list(_per_hemisphere(by_stat[param, "effect"]).values()))
            meta = read_map(by_stat[param, "q"][0].path).metadata
            model = meta.get("GroupModel") or model
            finite = np.isfinite(q)
            rows.append([
                str(meta.get("Term", desc)), param,
                f"{np.nanmedian(effect):.4g}" if np.isfinite(effect).any() else "–",
                units[param] if desc in ("mean", "intercept") else f"{units[param]} per unit",
                f"{int((q[finite] <= _Q_LEVEL).sum())} / {int(finite.sum())}",
            ])
    return rows, model


def _figures(
    by_stat: dict[tuple[str, str], list[MapFile]],
    stats: list[str],
    mesh_by_hemi: dict,
    label: str,
    units: dict[str, str],
    shades: dict[str, np.ndarray],
) -> list[Figure]:
    figures = []
    for (param, stat), files in sorted(by_stat.items()):
        if stat not in stats:
            continue
        values = _per_hemisphere(files)
        symmetric = stat in ("z", "effect") and label not in ("mean", "intercept")
        unit = {"icc": "ICC", "z": "z", "q": "q"}.get(stat, units.get(param, ""))
        figures.append(map_figure(mesh_by_hemi, values, f"{param} {label} {stat}", unit,
                                  "RdBu_r" if symmetric else "viridis", symmetric,
                                  shading=shades))
    return figures


def _section(key: tuple, model: str, files: list[MapFile], meshes: MeshLookup | None) -> dict:
    entities = dict(key)
    by_desc: dict[str, dict[tuple[str, str], list[MapFile]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for item in [f for f in files if "desc" in f.entities]:
        by_desc[item.entities["desc"]][item.entities["param"], item.entities["stat"]].append(item)
    files = [f for f in files if "desc" not in f.entities]
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
    shades: dict[str, np.ndarray] = {}
    for param in params:
        stats = {stat: _per_hemisphere(by_stat[param, stat]) for stat in ("mean", "sd", "n")}
        if not mesh_by_hemi:
            mesh_by_hemi, notes = find_meshes(entities.get("space", ""), stats["mean"], meshes)
            section["notes"].extend(notes)
            shades = {h: surface_shading(entities.get("space", ""), h, mesh)
                      for h, mesh in mesh_by_hemi.items()}
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
                shading=shades,
            )
            section["map_figures"].append(figure)
    units_all = DERIVED_UNITS[model]
    section["term_header"] = ["term", "parameter", "median effect", "units",
                              f"vertices with q ≤ {_Q_LEVEL}"]
    section["term_rows"], group_model = _extra_rows(by_desc, units_all)
    section["group_model"] = group_model
    for desc, by_stat in sorted(by_desc.items()):
        if desc == _MODEL_DESC:
            chosen = ["betweensd"]
        elif desc == _RETEST_DESC:
            chosen = ["icc", "cv"]
        elif desc == _MODES_DESC:
            chosen = ["mode1", "mode2", "mode3"]
        else:
            chosen = ["effect", "q"] if desc in ("mean", "intercept") else ["z"]
        section["map_figures"] += _figures(by_stat, chosen, mesh_by_hemi, desc, units_all,
                                           shades)
        if desc == _MODES_DESC:
            first = next(iter(by_stat.values()))[0]
            ratio = read_map(first.path).metadata.get("ExplainedVarianceRatio") or []
            section["notes"].append("Population modes explain " + ", ".join(
                f"{r:.1%}" for r in ratio) + " of the between-participant variance.")
        if desc == _RETEST_DESC:
            first = next(iter(by_stat.values()))[0]
            meta = read_map(first.path).metadata
            section["notes"].append(
                f"Test–retest: {meta.get('RetestParticipants')} participants with "
                f"{meta.get('Repeats')} repeated maps each.")
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
            key = tuple((k, v) for k, v in item.fit_key if k != "desc")
            groups[key, model].append(item)
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
    identifiability = _column(header, rows, "identifiability")
    histogram = None
    if np.isfinite(identifiability).any():
        histogram = Figure(
            histogram_figure({"participants": identifiability},
                             "participant identifiability", "regional information fraction"),
            "Lowest regional information fraction of each participant's maps "
            "(below 0.5: weakly identified).", wide=False,
        )
    participants = participant_rows(output_dir, header, rows)
    html = render(
        "group.html.j2",
        identifiability=histogram,
        sections=sections,
        participants=participants,
        excluded=[p for p in participants if p["status"] == "excluded"],
        participant_header=header,
    )
    return write_text(output_dir / GROUP_REPORT, html)


def participant_rows(output_dir: Path, header: list[str], rows: list[list[str]]
                     ) -> list[dict[str, Any]]:
    """Rows of ``group_participants.tsv`` with the participant report to link (when it
    exists beside the group report), the status and the reason."""
    out = []
    for row in rows:
        record = dict(zip(header, row, strict=False))
        label = record.get("participant_id", row[0] if row else "")
        report = f"{label}.html"
        out.append({"id": label, "cells": row,
                    "href": report if (output_dir / report).is_file() else None,
                    "status": record.get("status", ""), "reason": record.get("reason", "")})
    return out


def _column(header: list[str], rows: list[list[str]], name: str) -> np.ndarray:
    """A numeric column of the participants table (NaN for n/a), empty when absent."""
    if name not in header:
        return np.array([])
    k = header.index(name)
    values = []
    for row in rows:
        try:
            values.append(float(row[k]))
        except (ValueError, IndexError):
            values.append(np.nan)
    return np.array(values)
