"""Check every input of a participant before anything is fitted.

A bad file found after the first hemisphere's fit wastes the fit and, worse, used to
depend on the order of the work. Here every run is read once up front: series and frame
counts, every JSON sidecar, the TR (warning when the image's own time step disagrees
with the sidecar's), the confounds (non-numeric cells, rows, columns of the strategy),
the meshes, the surrogate's coverage of the protocol, and each hemisphere.

Hemisphere rule (one rule for missing and dead): a run must have both hemispheres with
data. A missing hemisphere file (exit 66) and a hemisphere where no vertex has a finite,
non-constant series (exit 16) both fail the participant before any fit, naming the file;
the fix for both is to supply the hemisphere or to ask for one hemisphere explicitly
with ``{"bold": {"hemi": "L"}}`` in ``--bids-filter-file`` (GIFTI input), which is then
the only case where a one-hemisphere result is written.
"""

from __future__ import annotations

import logging

import numpy as np

from bids_app.config import Config
from bids_app.errors import InputValidationError, MissingInputError
from bids_app.io.bids import SurfaceRun, load_mesh, read_run
from bids_app.io.confounds import select_frames
from bids_app.io.metadata import check_sidecars, tr_disagreement

LOGGER = logging.getLogger(__name__)
HEMISPHERES = ("L", "R")


def validate_participant(subject: str, runs: list[SurfaceRun], config: Config) -> None:
    """Raise the first input problem of any run of ``subject`` (one line: file and fix)."""
    for run in runs:
        check_hemispheres(run, config)
        check_sidecars(run.sidecars)
        data = read_run(run)
        series = run.cifti or next(iter(run.gifti.values()))
        if run.sidecars and (warning := tr_disagreement(series, data.tr)):
            LOGGER.warning("%s", warning)
        selection = select_frames(run.confounds, data.n_frames, config.confounds,
                                  config.fd_threshold, config.dummy_scans, run=run.prefix)
        for hemi in run.hemispheres:
            block = data.blocks[hemi]
            load_mesh(run, hemi, block.n_vertices)
            check_alive(block.data[:, selection.start:selection.stop],
                        run.cifti or run.gifti[hemi], hemi, run.cifti is not None)
        from bids_app.surrogate import load_surrogate

        load_surrogate(config.model, data.tr, selection.n_frames, config.lowpass)
    LOGGER.info("sub-%s: every input of %d run(s) checked", subject, len(runs))


def requested_hemispheres(config: Config) -> tuple[str, ...]:
    """Hemispheres the ``--bids-filter-file`` asks for (both when it does not say)."""
    wanted = config.bids_filters.get("bold", {}).get("hemi")
    if wanted is None:
        return HEMISPHERES
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    return tuple(h for h in HEMISPHERES if h in wanted)


def check_hemispheres(run: SurfaceRun, config: Config) -> None:
    """A GIFTI run must have every requested hemisphere (see the module's rule)."""
    if run.cifti is not None:
        return
    missing = [h for h in requested_hemispheres(config) if h not in run.gifti]
    if missing:
        present = next(iter(run.gifti.values()))
        expected = present.name.replace(f"hemi-{next(iter(run.gifti))}", f"hemi-{missing[0]}")
        raise MissingInputError(
            f"{present.parent / expected} is missing (only hemi-{'/'.join(run.gifti)} of "
            f"{run.prefix}); add it, or fit one hemisphere with "
            f'{{"bold": {{"hemi": "{next(iter(run.gifti))}"}}}} in --bids-filter-file')


def check_alive(y: np.ndarray, path, hemi: str, cifti: bool) -> None:
    """Some vertex of the hemisphere must have a finite, non-constant series."""
    from bids_app.preprocess import usable_rows

    if usable_rows(np.asarray(y, dtype=np.float64))[0].any():
        return
    fix = ("re-export the run from fMRIPrep" if cifti else
           f'supply a valid file, or fit the other hemisphere with {{"bold": {{"hemi": '
           f'"{"R" if hemi == "L" else "L"}"}}}} in --bids-filter-file')
    raise InputValidationError(
        f"{path}: hemi-{hemi} is dead (no vertex has a finite, non-constant series); {fix}")
