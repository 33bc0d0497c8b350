"""Random-effects maps of the group design: the design from participants.tsv, the
vertex-wise fit (:mod:`~bids_app.group.vertexwise`) and one set of maps per
term and contrast (:mod:`bids_app.group.summaries`)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bids_app.errors import NothingSelectedError
from bids_app.group.blocks import BlockRunner
from bids_app.group.design import build_design, parse_contrast
from bids_app.group.latent import analysed_params
from bids_app.group.summaries import term_maps
from bids_app.group.vertexwise import fit_random_effects
from bids_app.io.spill import SpillReader
from bids_app.models import DERIVED_UNITS
from bids_app.workflows.group.layout import VertexLayout
from bids_app.workflows.group.options import GroupOptions
from bids_app.workflows.group.selection import GroupKey
from bids_app.workflows.group.writing import sidecar, write_group_maps

LOGGER = logging.getLogger(__name__)

_TERM_TEXT = {
    "effect": "Random-effects estimate of {what} for {param}",
    "se": "Standard error of the random-effects estimate of {what} for {param}",
    "z": "Normal-equivalent z of the Knapp-Hartung t test of {what} for {param} against "
    "{null}, in the latent probit scale",
    "p": "Two-sided p-value (t with participants minus design columns degrees of freedom) "
    "of {what} for {param}",
    "q": "Benjamini-Hochberg adjusted p-value (FDR over all vertices) of {what} for {param}",
    "cilower": "Lower bound of the 95% t interval (latent scale, mapped) of {what}",
    "ciupper": "Upper bound of the 95% t interval (latent scale, mapped) of {what}",
    "betweensd": "Between-participant SD of {param} (REML tau, delta method at the average "
    "participant)",
    "n": "Participants in the random-effects model with an estimate and SE of {param}",
}


def _term_units(stat: str, unit: str, column: str, mean_like: bool) -> str:
    if stat in ("z", "p", "q"):
        return "arbitrary"
    if stat == "n":
        return "participants"
    return unit if mean_like else f"{unit} per unit of {column}"


def random_effects_outputs(
    output_dir: Path,
    key: GroupKey,
    runner: BlockRunner,
    reader: SpillReader,
    layout: VertexLayout,
    blocks: list[slice],
    labels: Sequence[str],
    rows: list[dict[str, Any]],
    options: GroupOptions,
    record: Mapping[str, Any],
) -> list[Path]:
    """Random-effects maps per term of the design (and contrast) for each parameter.

    ``labels`` are the included participants in store order; participants the design
    leaves out get the reason appended to their ``rows`` entry.
    """
    design = build_design(
        options.formula, labels, options.participants_table, options.participants_source
    )
    if not design.participants:
        raise NothingSelectedError(
            f"no included participant has the --group-model columns in "
            f"{options.participants_source}; fill them in or change the formula"
        )
    if options.contrast:
        design.contrasts["contrast"] = parse_contrast(options.contrast, design.columns)
    for row in rows:
        why = design.dropped.get(row["participant_id"][4:])
        if why and row["status"] == "included":
            row["reason"] += f"; left out of the group model: {why}"
    store_rows = np.array([list(labels).index(p) for p in design.participants])
    units = DERIVED_UNITS[key.model]
    outputs: list[Path] = []
    for param in analysed_params(key.model):
        fit = fit_random_effects(runner, reader, param, store_rows, design.matrix, blocks)
        if not (fit.n > 0).any():
            LOGGER.warning("group %s: no participant has %s SE maps; random-effects maps "
                           "skipped (run the participant level with a bootstrap)", key.label, param)
            continue
        methods = Counter(str(m) for m in fit.method)
        if methods.get("", 0) == layout.total or not np.isfinite(fit.tau2).any():
            LOGGER.warning(
                "group %s: %d participant(s) for %d design column(s): the between-participant "
                "SD is not estimable and the maps are fixed-effect", key.label,
                len(design.participants), len(design.columns))
        model_record = {
            **record,
            "GroupModel": {
                "Formula": design.formula,
                "Columns": design.columns,
                "Contrasts": {k: v.tolist() for k, v in design.contrasts.items()},
                "Participants": [f"sub-{p}" for p in design.participants],
                "LeftOut": {f"sub-{k}": v for k, v in design.dropped.items()},
                "Scale": "latent probit θ̃ of bids_app.models; participant variances from "
                "their interval bounds (else delta method)",
                "Tau2Estimator": {"REML": methods.get("REML", 0), "DerSimonianLaird":
                                  methods.get("DL", 0), "NotEstimable": methods.get("", 0)},
                "Weights": "1/(SE² + τ²), τ² moderated halfway toward its median over "
                "vertices; inference: Knapp-Hartung t with participants minus columns df",
            },
        }
        masks = layout.split(fit.n > 0)
        masks = {h: m.astype(bool) for h, m in masks.items()}
        names = {v: k for k, v in design.labels().items()}
        for desc, per_param in term_maps(key.model, param, fit, design).items():
            column = names.get(desc, "")
            mean_like = desc in ("mean", "intercept", "re")
            what = {"mean": "the group mean", "intercept": "the intercept"}.get(
                desc, f"the {column} effect" if column else "")
            null = "the canonical HRF" if mean_like else "zero"
            for reported, stats in per_param.items():
                maps = {stat: layout.split(values) for stat, values in stats.items()}
                sidecars = {
                    stat: sidecar(
                        reported, stat,
                        _term_units(stat, units[reported], column, mean_like),
                        _TERM_TEXT[stat].format(what=what, param=reported, null=null) + ".",
                        {**model_record, "Term": column or desc},
                    )
                    for stat in stats
                }
                outputs += write_group_maps(output_dir, key, reported, maps, sidecars, masks,
                                            desc)
    return outputs
