"""Jinja2 rendering of the report templates shipped in ``bids_app/report/templates``."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2

from bids_app import __version__


def format_value(value: Any) -> str:
    """Compact text for a JSON value in a table: 4 significant digits, ``k: v`` pairs."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {format_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if len(value) > 8:
            return f"[{len(value)} values]"
        return ", ".join(format_value(v) for v in value)
    return str(value)


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bids_app.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = format_value
    return env


def render(template: str, **context: Any) -> str:
    """Render a report template with the version and a UTC timestamp added."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        _environment()
        .get_template(template)
        .render(version=__version__, generated=stamp, **context)
    )
