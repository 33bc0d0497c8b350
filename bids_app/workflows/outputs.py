"""What a participant's fits become on disk: maps, sidecars, deconvolved series, report.

Assembly only: :class:`bids_app.fit.HemisphereResult` values are laid out as
:class:`bids_app.io.derivatives.ParameterMaps` (one per hemisphere for GIFTI, one for both
for CIFTI) and written through :mod:`bids_app.io`.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from bids_app.config import Config
from bids_app.fit import HemisphereResult
from bids_app.inference.deconvolve import NOISE_TO_SIGNAL
from bids_app.io.atomic import write_json
from bids_app.io.bids import SurfaceRun, fmriprep_root
from bids_app.io.confounds import read_confounds, select_frames
from bids_app.io.derivatives import (
    FitMetadata,
    ParameterMaps,
    StatArrays,
    bids_uri,
    cortex_models,
    derivative_folder,
    derivative_name,
    map_path,
    merge_hemispheres,
    sidecar_path,
    write_parameter_maps,
)
from bids_app.io.surface_files import SurfaceBlock, save_cifti_series, save_func_gifti
from bids_app.io.templates import template_mesh
from bids_app.report.participant import write_participant_report
from bids_app.report.participant_figures import write_input_figures, write_map_figures
from bids_app.report.surfaces import surface_shading

Fits = dict[str, HemisphereResult]  # hemi -> fit


def write_participant(subject: str, runs: list[SurfaceRun], fits: dict[str, Fits],
                      combined: Fits | None, config: Config) -> list[Path]:
    """Write maps (+ sidecars) and the report; on any failure remove what was written."""
    planned = [(run.entities, fits[run.prefix], run) for run in runs]
    if combined:
        shared = {k: v for k, v in runs[0].entities.items()
                  if all(r.entities.get(k) == v for r in runs)}
        shared.pop("run", None)
        planned.append((shared, combined, runs[0]))
    maps = [item for entities, hemi_fits, run in planned
            for item in parameter_maps(entities, hemi_fits, run, config)]
    targets = [map_path(config.output_dir, m.entities, param, stat, m.extension)
               for m in maps for param, stats in m.params.items() for stat, _ in stats.items()]
    written: list[Path] = []
    try:
        for item in maps:
            written += write_parameter_maps(config.output_dir, item)
        if config.write_deconvolved:
            for run in runs:
                written += write_deconvolved(run, fits[run.prefix], config)
        if config.report:
            written += write_figures(subject, planned, config)
            written.append(write_participant_report(config.output_dir, subject))
    except BaseException:
        for path in [*targets, *written]:
            path.unlink(missing_ok=True)
            sidecar_path(path).unlink(missing_ok=True)
        raise
    return written


def output_entities(entities: dict, run: SurfaceRun) -> dict:
    """``entities`` with the run's space split into BIDS ``space`` and ``den``."""
    space, _, den = run.space.partition("_den-")
    return {**entities, "space": space, **({"den": den} if den else {})}


def write_deconvolved(run: SurfaceRun, hemi_fits: Fits, config: Config) -> list[Path]:
    """``desc-deconvolved_bold`` series (GIFTI per hemisphere or one CIFTI) + sidecar."""
    first = next(iter(hemi_fits.values())).extra
    entities = {**output_entities(run.entities, run), "desc": "deconvolved"}
    folder = derivative_folder(config.output_dir, entities)
    sidecar = {"RepetitionTime": first["RepetitionTime"], "FirstFrame": first["FirstFrame"],
               "Description": "Wiener deconvolution of the cleaned series with each vertex's "
                              f"estimated HRF (noise-to-signal {NOISE_TO_SIGNAL} of peak "
                              "kernel power), z-scored; vertices not fitted are NaN/absent"}
    written = []
    if run.cifti is not None:
        blocks = {hemi: SurfaceBlock(fit.deconvolved, fit.fitted, fit.n_vertices)
                  for hemi, fit in hemi_fits.items()}
        path = folder / derivative_name(entities, "bold", ".dtseries.nii")
        written.append(save_cifti_series(path, blocks, first["RepetitionTime"]))
    else:
        for hemi, fit in hemi_fits.items():
            series = np.full((fit.n_vertices, fit.deconvolved.shape[1]), np.nan, np.float32)
            series[fit.fitted] = fit.deconvolved
            path = folder / derivative_name({**entities, "hemi": hemi}, "bold", ".func.gii")
            written.append(save_func_gifti(path, series, first["RepetitionTime"], hemi))
    written.append(write_json(folder / derivative_name(entities, "bold", ".json"), sidecar))
    return written


def parameter_maps(entities: dict, hemi_fits: Fits, run: SurfaceRun, config: Config
                   ) -> list[ParameterMaps]:
    """ParameterMaps for one fit: one per hemisphere (GIFTI) or one for both (CIFTI)."""
    entities = output_entities(entities, run)
    per_hemi = {hemi: stat_arrays(fit) for hemi, fit in hemi_fits.items()}
    if run.cifti is None:
        return [ParameterMaps({**entities, "hemi": hemi}, config.model, per_hemi[hemi],
                              fit_metadata({hemi: fit}, run, config))
                for hemi, fit in hemi_fits.items()]
    axis = cortex_models(nib.load(run.cifti).header.get_axis(1))
    params = merge_hemispheres(per_hemi["L"], per_hemi["R"], axis)
    return [ParameterMaps(entities, config.model, params, fit_metadata(hemi_fits, run, config),
                          brain_models=axis)]


def stat_arrays(fit: HemisphereResult) -> dict[str, StatArrays]:
    """Full-mesh maps (NaN where not fitted) of every reported parameter."""
    if fit.intervals is None:
        return {name: StatArrays(values) for name, values in fit.maps().items()}
    return {name: StatArrays(fit.full(iv.estimate), fit.full(iv.se), fit.full(iv.lower),
                             fit.full(iv.upper))
            for name, iv in fit.intervals.items()}


def fit_metadata(hemi_fits: Fits, run: SurfaceRun, config: Config) -> FitMetadata:
    """Sidecar record; per-hemisphere values become {"L": ..., "R": ...} for CIFTI."""
    def value(key: str):
        if len(hemi_fits) == 1:
            return getattr(next(iter(hemi_fits.values())), key)
        return {hemi: getattr(fit, key) for hemi, fit in hemi_fits.items()}

    first = next(iter(hemi_fits.values()))
    simulated = any(fit.bias_correction.get("Method", "none") != "none"
                    for fit in hemi_fits.values())
    root = fmriprep_root(config)
    return FitMetadata(
        surrogate=first.surrogate, kappa=value("kappa"), tau2=value("tau2"),
        log_evidence=value("log_evidence"), convergence=value("convergence"),
        random_seed=config.random_seed if first.bootstrap or simulated
        or first.quality_control else None,
        sources=[bids_uri(path, root) for path in run.sources],
        bootstrap=first.bootstrap or {"Mode": "none"},
        calibration_check=value("calibration_check"),
        identifiability=first.identifiability,
        evidence_grid=value("evidence_grid") if len(hemi_fits) == 1 else None,
        hyperparameter_selection=value("hyperparameter_selection"),
        bias_correction=value("bias_correction"),
        quality_control=value("quality_control"),
        extra=dict(first.extra) if len(hemi_fits) == 1 else {"Hemispheres": value("extra")},
    )


def write_figures(subject: str, planned: list, config: Config) -> list[Path]:
    """The report's figures (``sub-<label>/figures/``): maps drawn on the meshes the fits
    used, shaded with the subject's or template's sulcal depth; a carpet and the
    confounds of each run."""
    meshes = {(run.space.partition("_den-")[0], hemi): fit.mesh
              for _, hemi_fits, run in planned for hemi, fit in hemi_fits.items()}
    mesh_files = {(run.space.partition("_den-")[0], hemi): run.meshes.get(hemi)
                  for _, _, run in planned for hemi in run.hemispheres}

    def lookup(space: str, hemi: str) -> tuple:
        return meshes.get((space, hemi)) or template_mesh(space, hemi)

    def shading(space: str, hemi: str, mesh: tuple) -> np.ndarray:
        return surface_shading(space, hemi, mesh, mesh_files.get((space, hemi)))

    written = write_map_figures(config.output_dir, subject, lookup, shading)
    for entities, hemi_fits, run in planned:
        carpets = {hemi: fit.carpet for hemi, fit in hemi_fits.items() if fit.carpet is not None}
        if not carpets:  # a combined fit: its runs have their own
            continue
        first = next(iter(hemi_fits.values())).extra
        written += write_input_figures(
            config.output_dir, {**output_entities(entities, run), "sub": subject}, carpets,
            first["RepetitionTime"], first["FirstFrame"], run_confounds(run, config))
    return written


def run_confounds(run: SurfaceRun, config: Config) -> dict | None:
    """What the confounds plot shows of a run: FD, the regressors removed (the same
    selection the fit made), the analysed frames and the censoring threshold."""
    if run.confounds is None:
        return None
    table = read_confounds(run.confounds)
    selection = select_frames(run.confounds, len(table), config.confounds,
                              config.fd_threshold, config.dummy_scans, run=run.prefix)
    fd = (table["framewise_displacement"].to_numpy(float)
          if "framewise_displacement" in table else None)
    return {"fd": fd, "regressors": selection.regressors, "names": selection.names,
            "kept": (selection.start, selection.stop), "fd_threshold": config.fd_threshold}
