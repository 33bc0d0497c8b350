"""The per-participant HTML report (``OUTPUT_DIR/sub-XX.html``), built from the outputs.

The report reads only what the participant level wrote (maps and their JSON
sidecars), so it can be regenerated without refitting and always shows what is on disk.
One section per fit (run, or runs combined; GIFTI hemispheres together, or one CIFTI).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bids_app.errors import MissingInputError
from bids_app.io.atomic import write_text
from bids_app.io.derivatives import (
    ENTITY_ORDER,
    MapFile,
    find_maps,
    read_map,
    split_hemispheres,
)
from bids_app.models import DEFAULT_MODEL, DERIVED_UNITS
from bids_app.report.figures import evidence_figure, numeric_series, traces_figure
from bids_app.report.render import format_value, render
from bids_app.report.surfaces import Figure, MeshLookup, find_meshes, map_figure

# Sidecar keys shown in their own tables; any other key is listed under "Fit".
_AXIS_NAMES = {"kappa": "κ", "tau2": "τ²"}
_SHOWN_ELSEWHERE = {
    "Units",
    "Description",
    "Parameter",
    "Statistic",
    "Model",
    "Kappa",
    "Tau2",
    "LogEvidence",
    "Convergence",
    "CalibrationCheck",
    "Identifiability",
    "EvidenceGrid",
    "NominalCoverage",
    "Surrogate",
    "Bootstrap",
    "Sources",
    "QualityControl",
}
_HEMIS = ("L", "R")


@dataclass
class Section:
    """Everything the template shows about one fit."""

    title: str
    anchor: str
    notes: list[str] = field(default_factory=list)
    summary: list[list[str]] = field(default_factory=list)
    param_header: list[str] = field(default_factory=list)
    param_rows: list[list[str]] = field(default_factory=list)
    map_figures: list[Figure] = field(default_factory=list)
    evidence_figures: list[Figure] = field(default_factory=list)
    convergence_header: list[str] = field(default_factory=list)
    convergence_rows: list[list[str]] = field(default_factory=list)
    convergence_figures: list[Figure] = field(default_factory=list)
    calibration: list[dict[str, Any]] = field(default_factory=list)
    identifiability: list[list[str]] = field(default_factory=list)
    quality: list[dict[str, Any]] = field(default_factory=list)
    quality_rows: list[list[str]] = field(default_factory=list)


@dataclass
class LoadedFit:
    """The maps of one fit read back: values per (param, stat) and hemisphere, sidecars."""

    entities: dict[str, str]
    values: dict[tuple[str, str], dict[str, np.ndarray]]
    sidecars: dict[str, dict[str, dict[str, Any]]]  # param → file hemi ("L"/"R"/"LR") → sidecar

    @property
    def model(self) -> str:
        record = next(iter(next(iter(self.sidecars.values())).values()))
        name = (record.get("Model") or {}).get("Name")
        if name in DERIVED_UNITS:
            return name
        params = {param for param, _ in self.values}
        return next(m for m, units in DERIVED_UNITS.items() if params <= set(units))

    @property
    def params(self) -> list[str]:
        present = {param for param, _ in self.values}
        return [p for p in DERIVED_UNITS[self.model] if p in present]

    @property
    def hemis(self) -> list[str]:
        found = {h for per_hemi in self.values.values() for h in per_hemi}
        return [h for h in _HEMIS if h in found]


def load_fit(files: list[MapFile]) -> LoadedFit:
    """Read every map of one fit (GIFTI hemispheres or a CIFTI file) and its sidecars."""
    values: dict[tuple[str, str], dict[str, np.ndarray]] = defaultdict(dict)
    sidecars: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for item in files:
        loaded = read_map(item.path)
        param, stat = item.entities["param"], item.entities["stat"]
        if loaded.brain_models is not None:
            per_hemi = split_hemispheres(loaded.values, loaded.brain_models)
        else:
            per_hemi = {item.entities["hemi"]: loaded.values}
        values[param, stat].update(per_hemi)
        if stat == "estimate":
            sidecars[param][item.entities.get("hemi", "LR")] = loaded.metadata
    entities = dict(files[0].fit_key)
    return LoadedFit(entities, dict(values), dict(sidecars))


def _is_per_hemisphere(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and set(value) <= set(_HEMIS)


def hemisphere_records(by_file: Mapping[str, Mapping[str, Any]]) -> Iterator[tuple[str, dict]]:
    """(label, sidecar) per hemisphere: GIFTI sidecars as they are; a CIFTI sidecar whose
    values are ``{"L": .., "R": ..}`` split in two, else labelled "L+R"."""
    for file_hemi in sorted(by_file):
        record = dict(by_file[file_hemi])
        if file_hemi in _HEMIS:
            yield file_hemi, record
        elif any(_is_per_hemisphere(v) for v in record.values()):
            for hemi in _HEMIS:
                yield hemi, {k: v[hemi] if _is_per_hemisphere(v) else v for k, v in record.items()}
        else:
            yield "L+R", record


def fit_title(entities: Mapping[str, str]) -> str:
    """Human title of a fit from its entities, e.g. ``ses-1 task-rest run-2 space-fsLR``."""
    parts = [f"{k}-{entities[k]}" for k in ENTITY_ORDER if k in entities and k != "sub"]
    title = " ".join(parts) or "all data"
    return title if "run" in entities else f"{title} (all runs)"


def _percentiles(arr: np.ndarray) -> tuple[str, str]:
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return "–", "–"
    lo, med, hi = np.percentile(finite, [5, 50, 95])
    return f"{med:.4g}", f"{lo:.4g} – {hi:.4g}"


def _map_section(fit: LoadedFit, section: Section, meshes: MeshLookup | None) -> None:
    """Summary statistics and surface figures of each parameter and its CI width."""
    units = DERIVED_UNITS[fit.model]
    estimates = {h: fit.values[p, "estimate"][h] for p in fit.params[:1] for h in fit.hemis}
    mesh_by_hemi, notes = find_meshes(fit.entities.get("space", ""), estimates, meshes)
    section.notes.extend(notes)
    section.param_header = [
        "parameter",
        "units",
        "hemisphere",
        "vertices estimated",
        "median",
        "5th – 95th percentile",
        "median CI width",
    ]
    without_intervals = []
    for param in fit.params:
        symmetric = param == "latency"
        cmap = "RdBu_r" if symmetric else "viridis"
        estimate = fit.values[param, "estimate"]
        lower, upper = fit.values.get((param, "cilower")), fit.values.get((param, "ciupper"))
        width = None
        if lower and upper:
            width = {h: upper[h] - lower[h] for h in estimate if h in lower and h in upper}
        for hemi in fit.hemis:
            median, spread = _percentiles(estimate[hemi])
            ci = _percentiles(width[hemi])[0] if width else "–"
            count = int(np.isfinite(estimate[hemi]).sum())
            section.param_rows.append([param, units[param], hemi, str(count), median, spread, ci])
        section.map_figures.append(
            map_figure(mesh_by_hemi, estimate, f"{param} estimate", units[param], cmap, symmetric)
        )
        if width:
            section.map_figures.append(
                map_figure(mesh_by_hemi, width, f"{param} CI width", units[param], "magma")
            )
        else:
            without_intervals.append(param)
    if without_intervals:
        names = ", ".join(without_intervals)
        section.notes.append(f"No interval maps for {names} in this fit (estimates only).")


def _diagnostics_section(fit: LoadedFit, section: Section) -> None:
    """Hyperparameters, evidence surface, Newton traces, calibration check, identifiability."""
    first = fit.params[0]
    records = list(hemisphere_records(fit.sidecars[first]))
    convergence_keys: list[str] = []
    for _, record in records:
        for key, value in (record.get("Convergence") or {}).items():
            if not isinstance(value, (list, dict)) and key not in convergence_keys:
                convergence_keys.append(key)
    section.convergence_header = ["hemisphere", "κ (1/mm)", "τ²", "noise AR(1) φ",
                                  "log evidence", *convergence_keys]
    for label, record in records:
        convergence = record.get("Convergence") or {}
        noise = (record.get("HyperparameterSelection") or {}).get("NoiseAR") or {}
        section.convergence_rows.append(
            [
                label,
                format_value(record.get("Kappa")),
                format_value(record.get("Tau2")),
                "averaged" if noise and noise.get("Selected") is None
                else format_value(noise.get("Selected")),
                format_value(record.get("LogEvidence")),
                *(format_value(convergence.get(k)) for k in convergence_keys),
            ]
        )
        png = evidence_figure(record.get("EvidenceGrid") or {}, f"log evidence, {label}")
        if png:
            caption = f"Laplace log evidence over the (κ, τ²) grid, {label}; ★ = selected."
            section.evidence_figures.append(Figure(png, caption))
        png = traces_figure(convergence, f"Newton iterations, {label}")
        if png:
            section.convergence_figures.append(Figure(png, f"Newton traces, {label}."))
        if convergence.get("Converged") is False:
            section.notes.append(f"{label}: the Newton iterations did not converge.")
        edges = (record.get("HyperparameterSelection") or {}).get("OnGridBoundary") or {}
        if edges:
            where = ", ".join(f"{_AXIS_NAMES.get(axis, axis)} at its {edge} grid edge"
                              for axis, edge in edges.items())
            section.notes.append(
                f"{label}: hyperparameters selected on the grid boundary ({where}); the "
                "evidence may peak outside the grid: rerun with a wider --kappa/--tau2 list "
                "or fix them."
            )
        told = [v for v in noise.get("Candidates") or [] if v is not None]
        if told and noise.get("Selected") == max(told):
            section.notes.append(
                f"{label}: the noise is at least as autocorrelated (AR(1) φ "
                f"{format_value(noise['Selected'])}) as the most the surrogate was trained "
                "for; θ may read slow.")
        check = record.get("CalibrationCheck") or {}
        if check.get("in_distribution", check.get("Passed")) is False:
            message = check.get("message") or "outside the surrogate's training distribution"
            section.notes.append(f"{label}: calibration check failed: {message}.")
        traces = numeric_series(check) if isinstance(check, Mapping) else {}
        rows = [[k, format_value(v)] for k, v in check.items() if k not in traces]
        x_key = next((k for k in traces if "freq" in k.lower()), None)
        png = traces_figure(check, f"calibration check, {label}", x_key=x_key) if traces else None
        caption = f"Data against the surrogate's simulations, {label}."
        section.calibration.append(
            {"label": label, "rows": rows, "figure": Figure(png, caption) if png else None}
        )
    for param in fit.params:
        for label, record in hemisphere_records(fit.sidecars.get(param, {})):
            assessment = record.get("Identifiability")
            section.identifiability.append([param, label, format_value(assessment)])
            if isinstance(assessment, Mapping) and assessment.get("Identified") is False:
                section.notes.append(
                    f"{param} ({label}) is weakly identified: its map mostly reflects the prior."
                )


def _quality_section(fit: LoadedFit, section: Section) -> None:
    """The quality gate's verdict per hemisphere (banner) and its checks (table)."""
    for label, record in hemisphere_records(fit.sidecars[fit.params[0]]):
        if record.get("ModelCaveat") and record["ModelCaveat"] not in section.notes:
            section.notes.append(record["ModelCaveat"])
        gate = record.get("QualityControl")
        if not isinstance(gate, Mapping) or "Pass" not in gate:
            continue
        section.quality.append({"label": label, "passed": bool(gate["Pass"]),
                                "reasons": list(gate.get("Reasons") or [])})
        for name, check in (gate.get("Checks") or {}).items():
            section.quality_rows.append([label, name, format_value(check.get("Value")),
                                         format_value(check.get("Threshold")),
                                         "yes" if check.get("Pass") else "NO"])


def _summary_rows(record: Mapping[str, Any]) -> list[list[str]]:
    surrogate = record.get("Surrogate") or {}
    rows = [
        ["Model", format_value((record.get("Model") or {}).get("Name"))],
        ["Surrogate", format_value(surrogate.get("Id"))],
        ["Surrogate sha256", format_value(surrogate.get("Sha256"))],
        ["Bootstrap", format_value(record.get("Bootstrap"))],
        ["Sources", format_value(record.get("Sources"))],
    ]
    rows += [[k, format_value(v)] for k, v in record.items() if k not in _SHOWN_ELSEWHERE]
    return rows


def build_section(files: list[MapFile], meshes: MeshLookup | None = None) -> Section:
    """The report section of one fit."""
    fit = load_fit(files)
    title = fit_title(fit.entities)
    section = Section(title=title, anchor=re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-"))
    first = next(iter(fit.sidecars[fit.params[0]].values()))
    section.summary = _summary_rows(first)
    _quality_section(fit, section)
    _map_section(fit, section, meshes)
    _diagnostics_section(fit, section)
    return section


def methods_context(record: Mapping[str, Any]) -> dict[str, Any]:
    """Values the methods boilerplate quotes, from one estimate sidecar."""
    boot = record.get("Bootstrap") or {}
    alpha = boot.get("CalibratedAlpha")
    bias = record.get("SimulatedBiasCorrection") or {}
    if "Method" not in bias:  # CIFTI: {"L": ..., "R": ...}
        bias = next(iter(bias.values()), {})
    return {
        "model": (record.get("Model") or {}).get("Name", DEFAULT_MODEL),
        "surrogate": (record.get("Surrogate") or {}).get("Id"),
        "bootstrap_mode": boot.get("Mode"),
        "resampling": boot.get("Resampling", "block"),
        "block_length": format_value(boot.get("BlockLengthSeconds"))
        if boot.get("BlockLengthSeconds") is not None
        else None,
        "B": boot.get("B"),
        "R": boot.get("R"),
        "alpha": format_value(alpha) if alpha is not None else None,
        "bias_correction": bias.get("Method"),
        "bias_sims": bias.get("Simulations"),
    }


def write_participant_report(
    output_dir: Path | str, subject: str, meshes: MeshLookup | None = None
) -> Path:
    """Write ``OUTPUT_DIR/sub-<subject>.html`` from the participant's maps on disk.

    ``meshes(space, hemi)`` gives the midthickness to draw on (default: the template's
    through TemplateFlow); without one the maps are shown as histograms.
    """
    output_dir = Path(output_dir)
    files = find_maps(output_dir, subject)
    if not files:
        raise MissingInputError(
            f"no parameter maps for sub-{subject} under {output_dir}; run the participant "
            "level first"
        )
    groups: dict[tuple, list[MapFile]] = defaultdict(list)
    for item in files:
        groups[item.fit_key].append(item)
    ordered = sorted(groups.items(), key=lambda kv: ("run" in dict(kv[0]), kv[0]))
    sections = [build_section(group, meshes) for _, group in ordered]
    first = next(f for f in files if f.entities["stat"] == "estimate")
    context = methods_context(read_map(first.path).metadata)
    html = render("participant.html.j2", subject=subject, sections=sections, **context)
    return write_text(output_dir / f"sub-{subject}.html", html)
