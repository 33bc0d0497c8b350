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
from bids_app.report.figure_files import figure_path, figures_dir
from bids_app.report.figures import Figure, numeric_series
from bids_app.report.render import format_value, render

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
    identifiability: list[dict[str, Any]] = field(default_factory=list)
    input_figures: list[Figure] = field(default_factory=list)
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


def hemi_entity(label: str) -> str | None:
    """``hemi`` entity of a per-hemisphere record label ("L", "R"; none for "L+R")."""
    return label if label in ("L", "R") else None


def ci_width(fit: LoadedFit, param: str) -> dict[str, np.ndarray] | None:
    """Upper minus lower bound per hemisphere, None without interval maps."""
    lower, upper = fit.values.get((param, "cilower")), fit.values.get((param, "ciupper"))
    if not (lower and upper):
        return None
    return {h: upper[h] - lower[h] for h in fit.values[param, "estimate"]
            if h in lower and h in upper}


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


def _figure(output_dir: Path, fit: LoadedFit, caption: str, desc: str,
            hemi: str | None = None, param: str | None = None,
            required: bool = False, wide: bool = True) -> Figure | None:
    """A figure file of this fit (drawn at the participant level) with its caption."""
    path = figure_path(output_dir, fit.entities, desc, hemi, param)
    if path.is_file():
        return Figure(path.read_bytes(), caption, wide)
    if required:
        raise MissingInputError(
            f"{path} is missing; rerun the participant level (with --overwrite) to draw the "
            "report's figures")
    return None


def _map_section(fit: LoadedFit, section: Section, output_dir: Path) -> None:
    """Summary statistics of each parameter and its CI width, and their surface figures."""
    units = DERIVED_UNITS[fit.model]
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
        estimate = fit.values[param, "estimate"]
        width = ci_width(fit, param)
        for hemi in fit.hemis:
            median, spread = _percentiles(estimate[hemi])
            ci = _percentiles(width[hemi])[0] if width else "–"
            count = int(np.isfinite(estimate[hemi]).sum())
            section.param_rows.append([param, units[param], hemi, str(count), median, spread, ci])
        count = sum(int(np.isfinite(v).sum()) for v in estimate.values())
        blank = "the medial wall and vertices not estimated are flat grey"
        section.map_figures.append(_figure(
            output_dir, fit, f"{param} estimate ({units[param]}) at {count} vertices; {blank}.",
            "estimate", param=param, required=True))
        if width:
            section.map_figures.append(_figure(
                output_dir, fit, f"Width of the {param} confidence interval ({units[param]}); "
                f"{blank}.", "ciwidth", param=param, required=True))
        else:
            without_intervals.append(param)
    if without_intervals:
        names = ", ".join(without_intervals)
        section.notes.append(f"No interval maps for {names} in this fit (estimates only).")


def _diagnostics_section(fit: LoadedFit, section: Section, output_dir: Path) -> None:
    """Hyperparameters, evidence surface, Newton traces, calibration check, input QC."""
    first = fit.params[0]
    records = list(hemisphere_records(fit.sidecars[first]))
    convergence_keys: list[str] = []
    for _, record in records:
        for key, value in (record.get("Convergence") or {}).items():
            if not isinstance(value, (list, dict)) and key not in convergence_keys:
                convergence_keys.append(key)
    section.convergence_header = ["hemisphere", "κ (1/mm)", "τ²", "noise AR(1) φ",
                                  "log evidence", *convergence_keys]
    confounds = _figure(output_dir, fit, "Framewise displacement (dashed: the censoring "
                        "threshold) and the confound regressors removed, z-scored; frames "
                        "shaded grey were not analysed.", "confounds")
    spectra: list[Figure] = []
    carpets: list[Figure] = []
    for label, record in records:
        hemi = hemi_entity(label)
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
        found = [
            (spectra, _figure(
                output_dir, fit, f"Log band spectra of the data ({label}; red: median and "
                "5–95 % of vertices) against spectra the surrogate simulates at the "
                "estimates under its nuisance prior (blue): where red leaves blue, the "
                "model does not describe the data.", "spectrum", hemi, wide=False)),
            (carpets, _figure(
                output_dir, fit, f"Carpet plot of the cleaned series, {label}: sampled "
                "vertices in mesh order, each z-scored (±2 sd black to white).", "carpet",
                hemi)),
            (section.evidence_figures, _figure(
                output_dir, fit, f"Laplace log evidence over the (κ, τ²) grid, {label}: "
                "nats below the best cell.", "evidence", hemi, wide=False)),
            (section.convergence_figures, _figure(
                output_dir, fit, f"Newton traces, {label}.", "newton", hemi, wide=False)),
        ]
        for where, figure in found:
            if figure is not None:
                where.append(figure)
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
        bias = record.get("SimulatedBiasCorrection") or {}
        if bias.get("Method") == "none" and (record.get("Bootstrap") or {}).get("B"):
            section.notes.append(
                f"{label}: no simulated bias correction ({bias.get('Reason')}); the "
                "intervals hold the estimate's random error only, not the learned "
                "likelihood's bias under this run's nuisance (docs/limitations.md).")
        traces = numeric_series(check) if isinstance(check, Mapping) else {}
        rows = [[_label(k), format_value(v)] for k, v in check.items() if k not in traces]
        section.calibration.append({"label": label, "rows": rows})
    section.input_figures = [*([confounds] if confounds else []), *spectra, *carpets]
    _identifiability_rows(fit, section)


def _identifiability_rows(fit: LoadedFit, section: Section) -> None:
    """One readable row per parameter and hemisphere: identified or why not."""
    for param in fit.params:
        for label, record in hemisphere_records(fit.sidecars.get(param, {})):
            entry = record.get("Identifiability")
            if not isinstance(entry, Mapping):
                continue
            identified = entry.get("Identified")
            section.identifiability.append({
                "cells": [param, label, "yes" if identified else "NO",
                          format_value(entry.get("RegionalInformationFraction")),
                          format_value(entry.get("MedianVertexInformationFraction")),
                          entry.get("Reason") or ""],
                "ok": bool(identified)})
            if identified is False:
                section.notes.append(
                    f"{param} ({label}) is not identified: "
                    f"{entry.get('Reason') or 'its map mostly reflects the prior'}.")


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
            section.quality_rows.append([label, _label(name), format_value(check.get("Value")),
                                         format_value(check.get("Threshold")),
                                         "yes" if check.get("Pass") else "NO",
                                         check.get("Description") or ""])


def _label(key: str) -> str:
    """``OnGridBoundary`` → ``on grid boundary`` (sidecar keys as words)."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|_", " ", key).split()
    text = " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in words)
    return text[:1].upper() + text[1:]


def record_rows(record: Mapping[str, Any], prefix: str = "") -> list[list[str]]:
    """A sidecar record as readable rows: nested records become "Parent › child" rows,
    empty values read "none", long numeric lists their length."""
    rows = []
    for key, value in record.items():
        name = f"{prefix} › {_label(key)}" if prefix else _label(key)
        if isinstance(value, Mapping) and value and not _is_per_hemisphere(value):
            rows += record_rows(value, name)
        elif value in ({}, [], None, ""):
            rows.append([name, "none"])
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            paths = any("/" in v for v in value)  # one file a line; names in a row
            rows.append([name, ("\n" if paths else ", ").join(value)])
        else:
            rows.append([name, format_value(value)])
    return rows


def _summary_rows(record: Mapping[str, Any]) -> list[list[str]]:
    surrogate = record.get("Surrogate") or {}
    shown = {"Model": (record.get("Model") or {}).get("Name"),
             "Surrogate": surrogate.get("Id"), "SurrogateSha256": surrogate.get("Sha256"),
             "Bootstrap": record.get("Bootstrap"), "Sources": record.get("Sources")}
    rest = {k: v for k, v in record.items() if k not in _SHOWN_ELSEWHERE}
    return record_rows({**shown, **rest})


def build_section(files: list[MapFile], output_dir: Path) -> Section:
    """The report section of one fit, from its maps, sidecars and figure files."""
    fit = load_fit(files)
    title = fit_title(fit.entities)
    section = Section(title=title, anchor=re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-"))
    first = next(iter(fit.sidecars[fit.params[0]].values()))
    section.summary = _summary_rows(first)
    _quality_section(fit, section)
    _map_section(fit, section, output_dir)
    _diagnostics_section(fit, section, output_dir)
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


def write_participant_report(output_dir: Path | str, subject: str) -> Path:
    """Write ``OUTPUT_DIR/sub-<subject>.html`` from the participant's maps, sidecars and
    figure files (``sub-<subject>/figures/``, drawn by the participant level); nothing is
    refitted or redrawn, so ``--reports-only`` runs this alone."""
    output_dir = Path(output_dir)
    files = find_maps(output_dir, subject)
    if not files:
        raise MissingInputError(
            f"no parameter maps for sub-{subject} under {output_dir}; run the participant "
            "level first"
        )
    if not figures_dir(output_dir, subject).is_dir():
        raise MissingInputError(
            f"{figures_dir(output_dir, subject)} is missing; rerun the participant level "
            "(with --overwrite) to draw the report's figures")
    groups: dict[tuple, list[MapFile]] = defaultdict(list)
    for item in files:
        groups[item.fit_key].append(item)
    ordered = sorted(groups.items(), key=lambda kv: ("run" in dict(kv[0]), kv[0]))
    sections = [build_section(group, output_dir) for _, group in ordered]
    first = next(f for f in files if f.entities["stat"] == "estimate")
    context = methods_context(read_map(first.path).metadata)
    html = render("participant.html.j2", subject=subject, sections=sections, **context)
    return write_text(output_dir / f"sub-{subject}.html", html)
