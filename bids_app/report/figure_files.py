"""Where report figures live: ``OUTPUT_DIR/sub-<label>/figures/`` (as fMRIPrep), one
SVG per figure named by the fit's entities plus ``hemi``/``param`` and a ``desc`` saying
what it shows. The participant level draws them; the report, and ``--reports-only``,
assemble the HTML from them and the maps' sidecars without refitting."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bids_app.io.derivatives import derivative_name, normalize_entities

FIGURES = "figures"
FIGURE_SUFFIX = "figure"


def figures_dir(output_dir: Path | str, subject: str) -> Path:
    return Path(output_dir) / f"sub-{subject}" / FIGURES


def figure_path(output_dir: Path | str, entities: Mapping[str, str], desc: str,
                hemi: str | None = None, param: str | None = None) -> Path:
    """The SVG of one figure of the fit with ``entities`` (which include ``sub``)."""
    ents = {**normalize_entities(entities), "desc": desc,
            **({"hemi": hemi} if hemi else {}), **({"param": param} if param else {})}
    return figures_dir(output_dir, ents["sub"]) / derivative_name(ents, FIGURE_SUFFIX, ".svg")
