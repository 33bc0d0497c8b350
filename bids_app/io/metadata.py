"""Repetition time of a surface BOLD run, from the most trustworthy source available.

Order (docs/method.md §7): the JSON sidecar's ``RepetitionTime``; then the CIFTI series step;
then the GIFTI ``TimeStep`` metadata, which fMRIPrep writes in milliseconds but other
tools in seconds, so its unit is inferred from the value. Anything else is exit 66.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import nibabel as nib

from bids_app.errors import InputValidationError, MissingInputError

LOGGER = logging.getLogger(__name__)
# Plausible repetition times in seconds; outside this a value is in the wrong unit.
TR_RANGE = (0.1, 10.0)


def repetition_time(bold: Path, sidecars: Iterable[Path] = ()) -> float:
    """Return the TR of ``bold`` in seconds.

    Parameters
    ----------
    bold : Path
        A ``.func.gii`` or ``.dtseries.nii`` file.
    sidecars : iterable of Path
        JSON sidecars to consult first, most specific first (derivative, then raw).

    Raises
    ------
    InputValidationError
        A sidecar states an implausible TR (e.g. in ms): exit 16.
    MissingInputError
        No source states the TR: exit 66.
    """
    for sidecar in sidecars:
        tr = _sidecar_tr(Path(sidecar))
        if tr is not None:
            return tr
    name = "".join(Path(bold).suffixes[-2:])
    tr = _cifti_tr(bold) if name == ".dtseries.nii" else _gifti_tr(bold)
    if tr is None:
        raise MissingInputError(
            f"no RepetitionTime for {bold}: add it (in seconds) to the JSON sidecar "
            f"{_sidecar_name(bold)}"
        )
    return tr


def check_sidecars(sidecars: Iterable[Path]) -> None:
    """Read every sidecar of a run, not only the first with a TR: a malformed one or a
    non-numeric RepetitionTime anywhere is exit 16 naming the file."""
    for sidecar in sidecars:
        _sidecar_tr(Path(sidecar))


def _sidecar_name(bold: Path) -> str:
    name = Path(bold).name
    for ext in (".func.gii", ".dtseries.nii"):
        if name.endswith(ext):
            return name[: -len(ext)] + ".json"
    return name + ".json"


def _check(tr: float, source: str) -> float:
    if not TR_RANGE[0] <= tr <= TR_RANGE[1]:
        raise InputValidationError(
            f"RepetitionTime {tr} in {source} is not in seconds; fix it to the TR in seconds"
        )
    return tr


def _sidecar_tr(path: Path) -> float | None:
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f"line {err.lineno}: {err.msg}" if isinstance(err, json.JSONDecodeError) else err
        raise InputValidationError(
            f"sidecar {path} is not valid JSON ({where}); fix the JSON or delete the file"
        ) from err
    if not isinstance(meta, dict) or "RepetitionTime" not in meta:
        return None
    value = meta["RepetitionTime"]
    # bool is an int to Python, and float() would take "2.0": only JSON numbers are TRs.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputValidationError(
            f"RepetitionTime {json.dumps(value)} in {path} is not a number; "
            "write the TR in seconds as a JSON number, e.g. 2.0"
        )
    return _check(float(value), str(path))


def _cifti_tr(path: Path) -> float | None:
    axis = nib.load(path).header.get_axis(0)
    if not isinstance(axis, nib.cifti2.SeriesAxis) or axis.unit.upper() != "SECOND":
        return None
    LOGGER.warning("TR of %s taken from the CIFTI series step (%.4g s)", path, axis.step)
    return _check(float(axis.step), f"the CIFTI series step of {path}")


def _gifti_step(path: Path) -> tuple[str, float] | None:
    """The GIFTI ``TimeStep`` as written and read in seconds, or None when absent."""
    image = nib.load(path)
    if not image.darrays or "TimeStep" not in image.darrays[0].meta:
        return None
    text = image.darrays[0].meta["TimeStep"]
    try:
        step = float(text)
    except ValueError as err:
        raise InputValidationError(
            f"GIFTI TimeStep {text!r} of {path} is not a number; re-export the file or give "
            f"RepetitionTime in {_sidecar_name(path)}") from err
    # fMRIPrep writes milliseconds; a TR below 10 is seconds, above 50 milliseconds.
    return text, (step / 1000.0 if step > 50 else step)


def _gifti_tr(path: Path) -> float | None:
    found = _gifti_step(path)
    if found is None:
        return None
    text, tr = found
    LOGGER.warning("TR of %s taken from GIFTI TimeStep %s (read as %.4g s)", path, text, tr)
    return _check(tr, f"the GIFTI TimeStep of {path}")


# Relative disagreement between the sidecar TR and the image's own time step that is
# worth a warning (rounding in either file stays far below it).
TR_TOLERANCE = 0.01


def tr_disagreement(bold: Path, tr: float) -> str | None:
    """A one-line warning when ``bold``'s own time step (GIFTI TimeStep, CIFTI series
    step) differs from ``tr`` by more than TR_TOLERANCE; None when they agree or the
    image states none. ``tr`` (the sidecar's) is still the one used."""
    bold = Path(bold)
    if "".join(bold.suffixes[-2:]) == ".dtseries.nii":
        axis = nib.load(bold).header.get_axis(0)
        if not isinstance(axis, nib.cifti2.SeriesAxis) or axis.unit.upper() != "SECOND":
            return None
        own, what = float(axis.step), f"CIFTI series step {axis.step:g} s"
    else:
        found = _gifti_step(bold)
        if found is None:
            return None
        own, what = found[1], f"GIFTI TimeStep {found[0]} (read as {found[1]:.4g} s)"
    if own > 0 and abs(own - tr) <= TR_TOLERANCE * tr:
        return None
    return (f"{bold.name}: {what} disagrees with the sidecar RepetitionTime {tr:g} s by more "
            f"than {TR_TOLERANCE:.0%}; using {tr:g} s: fix whichever file is wrong")
