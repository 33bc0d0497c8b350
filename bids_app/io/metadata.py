"""Repetition time of a surface BOLD run, from the most trustworthy source available.

Order (DESIGN §7): the JSON sidecar's ``RepetitionTime``; then the CIFTI series step;
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
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputValidationError(f"sidecar {path} is not valid JSON ({err.msg})") from err
    if "RepetitionTime" not in meta:
        return None
    return _check(float(meta["RepetitionTime"]), str(path))


def _cifti_tr(path: Path) -> float | None:
    axis = nib.load(path).header.get_axis(0)
    if not isinstance(axis, nib.cifti2.SeriesAxis) or axis.unit.upper() != "SECOND":
        return None
    LOGGER.warning("TR of %s taken from the CIFTI series step (%.4g s)", path, axis.step)
    return _check(float(axis.step), f"the CIFTI series step of {path}")


def _gifti_tr(path: Path) -> float | None:
    image = nib.load(path)
    if not image.darrays or "TimeStep" not in image.darrays[0].meta:
        return None
    step = float(image.darrays[0].meta["TimeStep"])
    # fMRIPrep writes milliseconds; a TR below 10 is seconds, above 50 milliseconds.
    tr = step / 1000.0 if step > 50 else step
    LOGGER.warning("TR of %s taken from GIFTI TimeStep %s (read as %.4g s)", path, step, tr)
    return _check(tr, f"the GIFTI TimeStep of {path}")
