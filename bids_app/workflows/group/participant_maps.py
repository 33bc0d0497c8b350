"""One participant's maps: which fits it contributes and their values on the group axis.

A participant contributes one map per parameter: its map combined over runs when present
(maps without a ``run`` entity), else the vertex-wise mean of its per-run maps; several
sessions are averaged the same way. Repeated sessions (else runs) are its test–retest
measurements.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bids_app.group.descriptive import nanmean
from bids_app.group.latent import latent_estimate
from bids_app.io.derivatives import MapFile, read_map, split_hemispheres
from bids_app.workflows.group.layout import VertexLayout


@dataclass
class SubjectMaps:
    """One participant's contribution: parameter → hemisphere → full-length estimate."""

    subject: str
    values: dict[str, dict[str, np.ndarray]]
    how: str
    sources: list[str]


def read_fit(files: list[MapFile], stat: str = "estimate") -> dict[str, dict[str, np.ndarray]]:
    """One statistic per parameter and hemisphere (full length) of one fit."""
    values: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for item in files:
        if item.entities["stat"] != stat:
            continue
        loaded = read_map(item.path)
        if loaded.brain_models is not None:
            per_hemi = split_hemispheres(loaded.values, loaded.brain_models)
        else:
            per_hemi = {item.entities["hemi"]: loaded.values}
        values[item.entities["param"]].update(per_hemi)
    return dict(values)


def fits(files: list[MapFile]) -> dict[tuple, list[MapFile]]:
    """A participant's files by fit (the entities that name one participant-level fit)."""
    out: dict[tuple, list[MapFile]] = defaultdict(list)
    for item in files:
        out[item.fit_key].append(item)
    return out


def chosen_fits(by_fit: Mapping[tuple, list[MapFile]]) -> dict[tuple, list[MapFile]]:
    """The most combined fits: those whose entities include no other fit's."""
    return {k: v for k, v in by_fit.items() if not any(set(o) < set(k) for o in by_fit)}


def repeat_fits(files: list[MapFile]) -> list[list[MapFile]]:
    """A participant's repeated measurements for test–retest, in name order.

    Per-session maps (``ses`` without ``run``) when there are two sessions or more, else
    per-run maps when there are two runs or more; empty when nothing repeats.
    """
    by_fit = fits(files)
    sessions = sorted(k for k in by_fit if "ses" in dict(k) and "run" not in dict(k))
    runs = sorted(k for k in by_fit if "run" in dict(k))
    for keys in (sessions, runs):
        if len(keys) >= 2:
            return [by_fit[k] for k in keys]
    return []


def subject_maps(subject: str, files: list[MapFile], output_dir: Path) -> SubjectMaps:
    """Combine one participant's fits, preferring the most combined maps.

    A fit whose entities include another fit's (``run-1`` beside the run-less map
    combined over runs; per-session maps beside a map over sessions) is left out; the
    remaining fits are averaged vertex-wise (several runs without a combined map).
    """
    by_fit = fits(files)
    chosen = chosen_fits(by_fit)
    per_run = all("run" in dict(k) for k in chosen)
    if len(chosen) == 1:
        only = "per-run map" if per_run else "participant map"
        how = "combined map" if len(by_fit) > 1 else only
    else:
        how = f"mean of {len(chosen)} {'per-run ' if per_run else ''}maps"
        how += " (no combined map)" if per_run else ""
    loaded = [read_fit(group) for group in chosen.values()]
    values: dict[str, dict[str, np.ndarray]] = {}
    for param in loaded[0]:
        values[param] = {}
        for hemi in loaded[0][param]:
            arrays = [fit.get(param, {}).get(hemi) for fit in loaded]
            if any(a is None for a in arrays) or len({a.shape for a in arrays}) != 1:
                continue  # reported as incomplete by the exclusions
            values[param][hemi] = nanmean(np.stack(arrays))
    root = output_dir.resolve()
    sources = sorted(
        f"bids::{item.path.resolve().relative_to(root).as_posix()}"
        for group in chosen.values()
        for item in group
        if item.entities["stat"] == "estimate"
    )
    return SubjectMaps(subject, values, how, sources)


def reference_lengths(estimates: Mapping[str, list[MapFile]]) -> dict[str, int]:
    """Vertex count per hemisphere: the most common among participants' first maps."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for files in estimates.values():
        seen = set()
        for item in files:
            if item.entities["param"] in seen:
                continue
            seen.add(item.entities["param"])
            fit = [f for f in files if f.fit_key == item.fit_key and f.entities["param"]
                   == item.entities["param"]]
            for hemi, values in read_fit(fit).get(item.entities["param"], {}).items():
                counts[hemi][values.shape[0]] += 1
            break
    return {h: c.most_common(1)[0][0] for h, c in sorted(counts.items()) if c}


def read_joined(files: list[MapFile], stat: str, param: str, layout: VertexLayout
                ) -> np.ndarray | None:
    """One statistic of one parameter on the joined axis; None when a hemisphere is
    missing or has another vertex count."""
    per_hemi = read_fit(files, stat).get(param, {})
    if set(per_hemi) != set(layout.lengths):
        return None
    if any(per_hemi[h].shape[0] != n for h, n in layout.lengths.items()):
        return None
    return layout.join(per_hemi)


def latent_row(
    model: str, param: str, chosen: Sequence[list[MapFile]], layout: VertexLayout
) -> tuple[np.ndarray, np.ndarray]:
    """A participant's latent estimate and variance, averaged over its chosen fits."""
    ys, vs = [], []
    for files in chosen:
        estimate = read_joined(files, "estimate", param, layout)
        if estimate is None:
            continue
        y, v = latent_estimate(
            model,
            param,
            estimate,
            read_joined(files, "se", param, layout),
            read_joined(files, "cilower", param, layout),
            read_joined(files, "ciupper", param, layout),
        )
        ys.append(y)
        vs.append(v)
    y_stack, v_stack = np.stack(ys), np.stack(vs)
    count = np.isfinite(y_stack).sum(axis=0)
    y = nanmean(y_stack)
    complete = (np.isfinite(v_stack) | ~np.isfinite(y_stack)).all(axis=0)
    total = np.where(np.isfinite(v_stack), v_stack, 0.0).sum(axis=0)
    v = np.where(complete & (count > 0), total / np.maximum(count, 1) ** 2, np.nan)
    return y, v
