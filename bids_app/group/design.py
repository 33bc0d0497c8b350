"""The group design: a formula on participants.tsv → design matrix, term names, contrasts.

Formulas use formulaic's Wilkinson syntax (``~ age + sex``; categorical columns get
treatment coding, so ``sex[T.M]`` is M minus the reference level). Without a formula the
design is an intercept: the random-effects group mean.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix

from bids_app.errors import InputValidationError, MissingInputError

INTERCEPT = "Intercept"


@dataclass
class Design:
    """Rows = participants kept (in order), columns = coefficients."""

    formula: str
    columns: list[str]
    matrix: np.ndarray
    participants: list[str]
    dropped: dict[str, str] = field(default_factory=dict)
    contrasts: dict[str, np.ndarray] = field(default_factory=dict)

    def labels(self) -> dict[str, str]:
        """Coefficient / contrast name → alphanumeric ``desc`` label.

        The intercept of an intercept-only design is the group ``mean``; with covariates
        it is the ``intercept`` (the value where every covariate is 0 or at its reference).
        """
        out = {name: term_label(name) for name in [*self.columns, *self.contrasts]}
        if self.columns == [INTERCEPT]:
            out[INTERCEPT] = "mean"
        return out


def term_label(name: str) -> str:
    """``sex[T.M]`` → ``sexTM`` (BIDS labels are alphanumeric)."""
    if name == INTERCEPT:
        return "intercept"
    return re.sub(r"[^0-9A-Za-z]", "", name) or "term"


def _bare(label: str) -> str:
    return label[4:] if str(label).startswith("sub-") else str(label)


def build_design(
    formula: str | None,
    participants: Sequence[str],
    table: pd.DataFrame | None = None,
    source: str = "participants.tsv",
) -> Design:
    """Design matrix of ``formula`` for ``participants`` (labels without ``sub-``).

    Participants absent from ``table`` or missing a value the formula uses are dropped
    (listed with the reason). Raises InputValidationError (exit 16) for a column the
    table lacks or a rank-deficient design, MissingInputError (66) without a table.
    """
    participants = list(participants)
    if not formula:
        return Design("1", [INTERCEPT], np.ones((len(participants), 1)), participants)
    if table is None:
        raise MissingInputError(f"--group-model '{formula}' needs {source}; add it to BIDS_DIR")
    needed = sorted(Formula(formula).required_variables)
    missing = [name for name in needed if name not in table.columns]
    if missing:
        raise InputValidationError(
            f"{source} has no column {', '.join(missing)} used by --group-model "
            f"'{formula}'; add the column or change the formula"
        )
    table = table.assign(_label=table["participant_id"].map(_bare)).drop_duplicates("_label")
    rows = table.set_index("_label").reindex(participants)
    dropped: dict[str, str] = {}
    for label in participants:
        if label not in set(table["_label"]):
            dropped[label] = f"not listed in {source}"
        else:
            absent = [c for c in needed if pd.isna(rows.loc[label, c])]
            if absent:
                dropped[label] = f"no {', '.join(absent)} in {source}"
    kept = [p for p in participants if p not in dropped]
    frame = rows.loc[kept, needed].reset_index(drop=True)
    frame = frame.infer_objects()
    matrix = model_matrix(formula, frame, na_action="ignore")
    x = np.asarray(matrix, dtype=float)
    columns = [str(c) for c in matrix.columns]
    rank = np.linalg.matrix_rank(x) if x.size else 0
    if rank < len(columns):
        raise InputValidationError(
            f"--group-model '{formula}' is rank-deficient over the {len(kept)} participants "
            f"with data ({len(columns)} columns {columns}, rank {rank}); drop a term or "
            "add participants"
        )
    return Design(formula, columns, x, kept, dropped)


def parse_contrast(text: str, columns: Sequence[str]) -> np.ndarray:
    """Contrast weights from ``"0,1,-1"`` (one per column) or ``"age=1,sex[T.M]=-1"``."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        weights = np.array([float(item) for item in items])
    except ValueError:
        weights = np.zeros(len(columns))
        for item in items:
            name, sep, value = item.rpartition("=")
            if not sep or name.strip() not in columns:
                raise InputValidationError(
                    f"--contrast '{text}': '{item}' is not COLUMN=WEIGHT with a column of "
                    f"{list(columns)}"
                ) from None
            weights[list(columns).index(name.strip())] = float(value)
        return weights
    if len(weights) != len(columns):
        raise InputValidationError(
            f"--contrast '{text}' has {len(weights)} weights; the design has "
            f"{len(columns)} columns {list(columns)}"
        )
    return weights
