"""Participant level: surface BOLD runs in, HRF parameter maps with intervals out.

Per run and hemisphere (a CIFTI run is split into its left and right cortex):

1. read the series, TR and confounds; keep the analysed frames (dummy scans dropped,
   longest low-motion segment when censoring);
2. fit the hemisphere from arrays with :func:`bids_app.fit.fit_hemisphere` (masking,
   cleaning, evidence-selected MAP, simulated bias correction, bootstrap intervals);
3. write maps, sidecars and the report (:mod:`bids_app.workflows.outputs`).

Several runs of a participant get per-run maps and one combined map: runs are
independent given θ, so their log-likelihoods are summed vertex-wise and fitted in one
MAP (with its own evidence-selected κ, τ²) on the vertices every run observed. The
combined map has no bootstrap intervals (resampling is defined within a run); it is moved
by the mean of its runs' simulated bias.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bids_app.bootstrap.intervals import BootstrapOptions
from bids_app.config import Config
from bids_app.errors import HemocouplingError
from bids_app.fit import FitOptions, HemisphereResult, fit_hemisphere
from bids_app.fit import combine_runs as combine_hemisphere
from bids_app.io.bids import SurfaceRun, discover, fmriprep_root, load_mesh, read_run
from bids_app.io.confounds import select_frames
from bids_app.io.derivatives import bids_uri
from bids_app.resources import worker_count
from bids_app.surrogate import load_surrogate
from bids_app.workflows.outputs import Fits, write_participant

LOGGER = logging.getLogger(__name__)


def run_participants(config: Config,
                     selected: dict[str, list[SurfaceRun]] | None = None) -> None:
    """Analyse every selected participant (``selected``: :func:`discover`'s answer, found
    anew when None); raise the first failure after trying all, or at once with
    ``--stop-on-first-crash``.

    Each participant runs under its lock (a second job on the same OUTPUT_DIR waits, then
    skips); it is skipped when its finished record matches these settings and inputs."""
    from bids_app.io.dataset_description import (
        finished_state,
        source_datasets,
        write_bidsignore,
        write_dataset_description,
    )
    from bids_app.io.input_fingerprint import input_fingerprint
    from bids_app.io.participant_lock import participant_lock

    selected = discover(config) if selected is None else selected
    write_dataset_description(config.output_dir, source_datasets(config.bids_dir,
                                                                 fmriprep_root(config)))
    write_bidsignore(config.output_dir)
    failures: list[Exception] = []
    for subject, runs in selected.items():
        with participant_lock(config.output_dir, subject):
            done, why = finished_state(config.output_dir, subject, settings(config),
                                       input_fingerprint(runs, config.bids_dir))
            if done and not config.overwrite:
                LOGGER.warning("sub-%s already finished with %s: skipped (--overwrite to redo)",
                               subject, why)
                continue
            LOGGER.info("sub-%s: running (%s)", subject, "--overwrite" if done else why)
            try:
                run_participant(subject, runs, config)
            except Exception as err:  # a bug in one participant's data must not stop all
                if config.stop_on_first_crash or len(selected) == 1:
                    raise
                LOGGER.warning("sub-%s failed: %s", subject, err,
                               exc_info=not isinstance(err, HemocouplingError))
                failures.append(err)
    if failures:
        LOGGER.warning("%d of %d participant(s) failed; the first failure decides the exit "
                       "code", len(failures), len(selected))
        raise failures[0]


def settings(config: Config) -> dict[str, Any]:
    """Options that change the outputs: a finished participant is redone when they differ."""
    keys = ("model", "space", "confounds", "fd_threshold", "dummy_scans", "lowpass", "kappas",
            "tau2s", "bootstrap", "n_boot", "n_inner", "block_length", "bias_correction",
            "random_seed", "task_id", "session_labels", "bids_filters", "write_deconvolved",
            "resampling", "surrogate")
    full = config.to_dict()
    return {key: full[key] for key in keys}


def run_participant(subject: str, runs: list[SurfaceRun], config: Config) -> list[Path]:
    """Check every input, fit every run (and their combination), write all outputs to a
    staging folder and swap them in (:mod:`bids_app.io.staging`: a failure leaves the
    previous result untouched); the finished record names the inputs read."""
    from dataclasses import replace

    from bids_app.io.dataset_description import mark_finished
    from bids_app.io.input_fingerprint import input_fingerprint
    from bids_app.io.staging import promote, staged
    from bids_app.workflows.participant_inputs import validate_participant

    inputs = input_fingerprint(runs, config.bids_dir)
    validate_participant(subject, runs, config)
    LOGGER.info("sub-%s: %d run(s)", subject, len(runs))
    with staged(config.output_dir, subject) as folder:
        fits = {run.prefix: fit_run(run, config) for run in runs}
        combined = combine_runs(runs, fits, config) if len(runs) > 1 else None
        write_participant(subject, runs, fits, combined, replace(config, output_dir=folder))
        written = promote(folder, config.output_dir, subject)
    mark_finished(config.output_dir, subject, written, settings(config), inputs)
    return written


# --------------------------------------------------------------------------- fitting


def fit_options(config: Config, n_jobs: int | None = None) -> FitOptions:
    """The fitting options a configuration asks for, with ``n_jobs`` bootstrap workers
    (default ``--nprocs``)."""
    return FitOptions(
        kappas=config.kappas, tau2s=config.tau2s, bias_correction=config.bias_correction,
        bootstrap=BootstrapOptions(mode=config.bootstrap, n_boot=config.n_boot,
                                   n_inner=config.n_inner, resampling=config.resampling,
                                   block_length=config.block_length,
                                   n_jobs=n_jobs or config.nprocs,
                                   dask_scheduler=config.dask_scheduler,
                                   progress=config.verbose > 0),
        random_seed=config.random_seed, deconvolve=config.write_deconvolved)


def fit_run(run: SurfaceRun, config: Config) -> Fits:
    """Fit both hemispheres of one run."""
    data = read_run(run)
    selection = select_frames(run.confounds, data.n_frames, config.confounds,
                              config.fd_threshold, config.dummy_scans, run=run.prefix)
    meshes = {hemi: load_mesh(run, hemi, data.blocks[hemi].n_vertices)
              for hemi in run.hemispheres}
    root = fmriprep_root(config)
    surrogate = load_surrogate(config.model, data.tr, selection.n_frames, config.lowpass,
                               card_path=config.surrogate)
    if caveat := surrogate.card.get("caveat"):
        LOGGER.warning("%s: --model %s: %s", run.prefix, config.model, caveat)
    largest = max(block.n_vertices for block in data.blocks.values())
    options = fit_options(config, worker_count(config.nprocs, config.mem_mb, largest,
                                               selection.n_frames))
    fits = {}
    for hemi in run.hemispheres:
        block = data.blocks[hemi]
        vertices, faces, mesh_source = meshes[hemi]
        provenance = {"RepetitionTime": data.tr, **selection.summary(),
                      "ConfoundStrategy": config.confounds,
                      "Preprocessing": surrogate.preprocessing.to_dict(),
                      "Mesh": mesh_source if mesh_source.startswith("template:")
                      else bids_uri(mesh_source, root)}
        fits[hemi] = fit_hemisphere(
            block.data[:, selection.start:selection.stop], (vertices, faces), data.tr,
            surrogate, options, confounds=selection.regressors, vertex_index=block.vertices,
            provenance=provenance,
            cache_dir=config.work_dir / "bootstrap" / f"{run.prefix}_hemi-{hemi}",
            where=f"{run.prefix} hemi-{hemi}")
    return fits


def combine_runs(runs: list[SurfaceRun], fits: dict[str, Fits], config: Config) -> Fits:
    """One MAP per hemisphere from the summed log-likelihoods of every run."""
    combined = {}
    for hemi in runs[0].hemispheres:
        parts: list[HemisphereResult] = [fits[run.prefix][hemi] for run in runs
                                         if hemi in fits[run.prefix]]
        provenance = {"CombinedRuns": [run.prefix for run in runs],
                      "Mesh": parts[0].extra["Mesh"]}
        combined[hemi] = combine_hemisphere(parts, fit_options(config), provenance=provenance,
                                            where=f"{runs[0].prefix} combined hemi-{hemi}")
    return combined
