"""Participant level: surface BOLD runs in, HRF parameter maps with intervals out.

Per run and hemisphere (a CIFTI run is split into its left and right cortex):

1. read the series, TR and confounds; keep the analysed frames (dummy scans dropped,
   longest low-motion segment when censoring);
2. mask vertices with non-finite or constant series (medial wall) and clean the rest
   with the surrogate's own recipe (:func:`bids_app.preprocess.clean`);
3. summarise, build the per-vertex log-likelihood, and fit the MAP under the SPDE prior
   on the hemisphere's mesh with (κ, τ²) chosen by Laplace evidence;
4. remove the MAP's bias under the run's own noise regime, estimated by simulating
   runs at the estimate (``--bias-correction``; :mod:`bids_app.bootstrap.simulated_bias`);
5. bootstrap intervals (``--bootstrap``), moved with the estimate; then write maps,
   sidecars and the report.

Several runs of a participant get per-run maps and one combined map: runs are
independent given θ, so their log-likelihoods are summed vertex-wise and fitted in one
MAP (with its own evidence-selected κ, τ²) on the vertices every run observed. The
combined map has no bootstrap intervals (resampling is defined within a run); it is moved
by the mean of its runs' simulated bias.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bids_app.config import Config
from bids_app.errors import HemocouplingError, InputValidationError
from bids_app.io.bids import RunData, SurfaceRun, discover, fmriprep_root, load_mesh, read_run
from bids_app.io.confounds import FrameSelection, select_frames
from bids_app.preprocess import clean

if TYPE_CHECKING:
    from bids_app.bootstrap.refit import MapRefit

LOGGER = logging.getLogger(__name__)


@dataclass
class HemisphereFit:
    """The MAP fit of one hemisphere (of one run, or combined over runs).

    Attributes
    ----------
    n_vertices : int
        Vertices of the hemisphere's full mesh.
    fitted : array (n,) int
        Mesh indices of the vertices estimated (the rest are NaN in the maps).
    theta_t : array (n, P)
        Latent estimate: the MAP less ``bias_shift``.
    intervals : dict or None
        ``bids_app.bootstrap.natural_intervals`` output, None without bootstrap.
    record : dict
        Sidecar values (κ, τ², evidence, convergence, calibration, exclusions, ...).
    loglik_parts : list
        (surrogate, summaries (n, P), tr, n_frames, n_regressors, noise_ar) per run, for
        combining runs (each run's likelihood is conditioned on its own confound count
        and selected noise colour).
    mesh : tuple
        (vertices, faces) used by the prior, for the report.
    deconvolved : array (n, T) or None
        Wiener-deconvolved neural series (``--write-deconvolved``).
    bias_shift : array (n, P)
        Simulated latent bias removed from the MAP (zeros where no correction ran).
    """

    n_vertices: int
    fitted: np.ndarray
    theta_t: np.ndarray
    intervals: dict | None
    record: dict[str, Any]
    loglik_parts: list = field(default_factory=list)
    mesh: tuple = ()
    deconvolved: np.ndarray | None = None
    bias_shift: np.ndarray | None = None


def run_participants(config: Config) -> None:
    """Analyse every selected participant; raise the first failure after trying all."""
    from bids_app.io.dataset_description import (
        clear_finished,
        is_finished,
        write_bidsignore,
        write_dataset_description,
    )

    selected = discover(config)
    write_dataset_description(config.output_dir, {"fmriprep": fmriprep_root(config)})
    write_bidsignore(config.output_dir)
    failures: list[HemocouplingError] = []
    for subject, runs in selected.items():
        if not config.overwrite and is_finished(config.output_dir, subject, settings(config)):
            LOGGER.warning("sub-%s already finished with these settings: skipped "
                           "(--overwrite to redo)", subject)
            continue
        clear_finished(config.output_dir, subject)
        try:
            run_participant(subject, runs, config)
        except HemocouplingError as err:
            if len(selected) > 1:
                LOGGER.warning("sub-%s failed: %s", subject, err)
            failures.append(err)
    if failures:
        raise failures[0]


def settings(config: Config) -> dict[str, Any]:
    """Options that change the outputs: a finished participant is redone when they differ."""
    keys = ("model", "space", "confounds", "fd_threshold", "dummy_scans", "lowpass", "kappas",
            "tau2s", "bootstrap", "n_boot", "n_inner", "block_length", "bias_correction",
            "random_seed", "task_id", "session_labels", "bids_filters", "write_deconvolved",
            "resampling")
    full = config.to_dict()
    return {key: full[key] for key in keys}


def run_participant(subject: str, runs: list[SurfaceRun], config: Config) -> list[Path]:
    """Fit every run (and their combination), then write all outputs or none."""
    from bids_app.io.dataset_description import mark_finished

    LOGGER.info("sub-%s: %d run(s)", subject, len(runs))
    fits = {run.prefix: fit_run(run, config) for run in runs}
    combined = combine_runs(runs, fits, config) if len(runs) > 1 else None
    written = write_participant(subject, runs, fits, combined, config)
    mark_finished(config.output_dir, subject, written, settings(config))
    return written


# --------------------------------------------------------------------------- fitting


def fit_run(run: SurfaceRun, config: Config) -> dict[str, HemisphereFit]:
    """Fit both hemispheres of one run."""
    from bids_app.surrogate import load_surrogate

    data = read_run(run)
    selection = select_frames(run.confounds, data.n_frames, config.confounds,
                              config.fd_threshold, config.dummy_scans, run=run.prefix)
    meshes = {hemi: load_mesh(run, hemi, data.blocks[hemi].n_vertices)
              for hemi in run.hemispheres}
    surrogate = load_surrogate(config.model, data.tr, selection.n_frames, config.lowpass)
    return {hemi: fit_hemisphere(run, hemi, data, selection, meshes[hemi], surrogate, config)
            for hemi in run.hemispheres}


def fit_hemisphere(run: SurfaceRun, hemi: str, data: RunData, selection: FrameSelection,
                   mesh: tuple, surrogate, config: Config) -> HemisphereFit:
    """Mask → clean → summarise → MAP with evidence → simulated bias → bootstrap, for one
    hemisphere."""
    from bids_app.bootstrap.refit import MapRefit

    block = data.blocks[hemi]
    vertices, faces, mesh_source = mesh
    y_clean, fitted, fem, excluded = clean_usable_vertices(
        block, selection, data.tr, surrogate.preprocessing, (vertices, faces),
        where=f"{run.prefix} hemi-{hemi}")
    n_reg = selection.n_regressors
    summaries = surrogate.summarize(y_clean, data.tr, n_reg)
    noise_ars, logliks = surrogate.candidate_logliks(summaries, data.tr, selection.n_frames,
                                                     n_reg)
    theta_t, record = fit_map_with_evidence(logliks, fem, summaries, config,
                                            where=f"{run.prefix} hemi-{hemi}",
                                            noise_ars=surrogate.noise_ar_candidates)
    chosen = record.pop("candidate")
    noise_ar, loglik = noise_ars[chosen], logliks[chosen]
    record.update(
        identifiability=identifiability(loglik, theta_t, surrogate.model, record["kappa"],
                                        fem),
        calibration_check=surrogate.check_calibration(y_clean, data.tr, n_reg),
        surrogate={"Id": surrogate.card.get("id"), "Sha256": surrogate.card.get("sha256")},
        extra={"RepetitionTime": data.tr, **selection.summary(),
               "ConfoundStrategy": config.confounds,
               "Preprocessing": surrogate.preprocessing.to_dict(),
               "Mesh": mesh_source, "FittedVertices": len(fitted),
               "ExcludedVertices": excluded},
    )
    refit = MapRefit(surrogate, record.pop("precision"), theta_t, data.tr, n_regressors=n_reg,
                     noise_ar=noise_ar)
    shift, record["bias_correction"] = bias_correction(
        refit, theta_t, y_clean, selection.regressors, config, f"{run.prefix} hemi-{hemi}")
    intervals = None
    if config.bootstrap != "none":
        intervals, record["bootstrap"] = bootstrap_intervals(
            y_clean, refit, shift, config,
            cache=config.work_dir / "bootstrap" / f"{run.prefix}_hemi-{hemi}")
    theta_t = theta_t - shift
    deconvolved = None
    if config.write_deconvolved:
        theta = surrogate.model.to_theta(theta_t)
        deconvolved = wiener_deconvolve(y_clean, theta, surrogate.model, data.tr)
    return HemisphereFit(block.n_vertices, fitted, theta_t, intervals, record,
                         [(surrogate, summaries, data.tr, selection.n_frames, n_reg,
                           noise_ar)],
                         (vertices, faces), deconvolved, shift)


def clean_usable_vertices(block, selection: FrameSelection, tr: float, preprocessing,
                          mesh: tuple, where: str):
    """Cleaned series of the vertices that can be fitted, their mesh indices, the FEM on
    them, and how many vertices each exclusion rule removed.

    Excluded: non-finite or constant series (medial wall), series with no variance left
    after confound regression, and vertices in no triangle of the remaining mesh.
    """
    y = np.asarray(block.data[:, selection.start:selection.stop], dtype=np.float64)
    usable, excluded = usable_rows(y)
    if not usable.any():
        raise InputValidationError(
            f"{where}: no vertex has a finite, non-constant series; check the BOLD file")
    y_clean = clean(y[usable], tr, preprocessing, selection.regressors)
    alive = np.abs(y_clean).max(axis=1) > 0
    excluded["NoVarianceAfterCleaning"] = int((~alive).sum())
    rows = np.flatnonzero(usable)[alive]
    fem, keep = mesh_prior_support(*mesh, block.vertices[rows], block.n_vertices)
    excluded["IsolatedOnMesh"] = int((~keep).sum())
    fitted = block.vertices[rows[keep]]
    LOGGER.info("%s: %d of %d vertices fitted (%s excluded)", where, len(fitted),
                block.n_vertices, excluded)
    return y_clean[alive][keep], fitted, fem, excluded


def usable_rows(y: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Rows with finite, non-constant series, and counts of each exclusion reason."""
    finite = np.isfinite(y).all(axis=1)
    constant = np.zeros(len(y), dtype=bool)
    constant[finite] = np.ptp(y[finite], axis=1) <= 1e-6 * (np.abs(y[finite]).max(axis=1) + 1e-12)
    return finite & ~constant, {"NonFinite": int((~finite).sum()),
                                "Constant": int(constant.sum())}


def mesh_prior_support(vertices: np.ndarray, faces: np.ndarray, observed: np.ndarray,
                       n_vertices: int):
    """FEM on the observed vertices; also which of them the prior keeps (in a triangle)."""
    from bids_app.prior import fem_matrices

    mask = np.zeros(n_vertices, dtype=bool)
    mask[observed] = True
    fem = fem_matrices(vertices, faces, mask)
    return fem, np.isin(observed, fem.vertex_index)


def fit_map_with_evidence(logliks: list, fem, theta_t0: np.ndarray, config: Config,
                          where: str = "", noise_ars: list | None = None
                          ) -> tuple[np.ndarray, dict[str, Any]]:
    """MAP under the SPDE prior with (κ, τ²), and the likelihood among ``logliks`` (one per
    noise AR(1) candidate in ``noise_ars``, or one), maximising the Laplace evidence;
    warns (naming ``where``) when a selection sits on the edge of a searched axis.

    The record's "candidate" is the index of the selected likelihood."""
    from bids_app.inference.evidence import evidence_gap, grid_boundary
    from bids_app.inference.likelihood_choice import select_likelihood
    from bids_app.prior import SPDEPrior

    prior = SPDEPrior(fem)
    choice = select_likelihood(logliks, prior, np.asarray(theta_t0, dtype=float),
                               config.kappas, config.tau2s)
    evidence = choice.evidence
    best = evidence.map_result
    record = {
        "candidate": choice.index,
        "kappa": float(evidence.kappa),
        "tau2": float(evidence.tau2),
        "log_evidence": float(evidence.log_evidence),
        "evidence_grid": {"Kappa": list(config.kappas), "Tau2": list(config.tau2s),
                          "LogEvidence": np.asarray(evidence.grid).tolist()},
        "convergence": convergence_record(best),
        "precision": prior.precision(evidence.kappa, evidence.tau2),
        "hyperparameter_selection": {"Method": "Laplace evidence, line search on the grid",
                                     "OnGridBoundary": grid_boundary(evidence),
                                     "LogEvidenceGap": evidence_gap(evidence)},
    }
    edges = record["hyperparameter_selection"]["OnGridBoundary"]
    if edges:
        LOGGER.warning("%s: %s", where, boundary_warning(edges, record))
    if noise_ars is not None:
        record["hyperparameter_selection"]["NoiseAR"] = noise_ar_record(choice, noise_ars)
        if choice.index == len(noise_ars) - 1:
            LOGGER.warning("%s: the noise is at least as autocorrelated (AR(1) φ %.3g) as the "
                           "most the surrogate was trained for; θ may read slow", where,
                           noise_ars[-1])
    return np.asarray(best.theta_t, dtype=float), record


def noise_ar_record(choice, noise_ars: list) -> dict[str, Any]:
    """Sidecar values of the noise-colour selection (null: the flow not told φ)."""
    return {"Selected": noise_ars[choice.index],
            "Candidates": list(noise_ars),
            "LogEvidence": [float(v) for v in choice.profile],
            "Kappa": [float(v) for v in choice.kappas],
            "Tau2": [float(v) for v in choice.tau2s],
            "Method": "Laplace evidence, each candidate at its own selected kappa, tau2; "
                      "null: the likelihood averaged over the surrogate's trained range"}


_AXIS_LABELS = {"kappa": ("κ", " /mm", "--kappa"), "tau2": ("τ²", "", "--tau2")}


def boundary_warning(edges: dict[str, str], selected: dict[str, Any]) -> str:
    """One line naming each axis whose selected value (in ``selected``) is a grid edge,
    and what to pass instead."""
    parts, flags = [], []
    for axis, edge in edges.items():
        symbol, unit, flag = _AXIS_LABELS[axis]
        extreme = "smallest" if edge == "lower" else "largest"
        parts.append(f"{symbol} at the {extreme} grid value {selected[axis]:.3g}{unit}")
        flags.append(flag)
    return (f"selected {' and '.join(parts)}: the evidence may peak outside the grid; pass a "
            f"wider {'/'.join(flags)} list or fix --kappa/--tau2")


IDENTIFIED_FRACTION = 0.5


def identifiability(loglik, theta_t: np.ndarray, model, kappa: float, fem
                    ) -> dict[str, dict[str, Any]]:
    """How much the data inform each parameter, per reported map.

    At the MAP, a vertex's likelihood curvature c = −∂²log q/∂θ̃² against the unit
    curvature of the surrogate's N(0, 1) latent prior gives the fraction of prior
    variance its data remove, c / (c + 1). Single vertices are weakly informed; the
    prior pools vertices within its correlation range ρ = √8/κ (mm), so the regional
    fraction uses the information of the n = min(V, πρ²/mean vertex area) vertices in
    one such disc, n·c / (n·c + 1). A parameter is flagged when that is below 0.5.
    """
    _, _, hess = loglik(theta_t)
    curvature = np.clip(-np.diagonal(np.asarray(hess), axis1=1, axis2=2), 0.0, None)
    per_vertex = np.median(curvature / (curvature + 1.0), axis=0)
    n_region = min(fem.n_vertices, np.pi * (np.sqrt(8.0) / kappa) ** 2 / np.mean(fem.C))
    regional_info = n_region * np.median(curvature, axis=0)
    regional = regional_info / (regional_info + 1.0)
    names = list(model.derived(model.to_theta(theta_t[:1])))
    index = {name: (0 if model.n_params == 1 else k) for k, name in enumerate(names)}
    return {name: {"Identified": bool(regional[k] >= IDENTIFIED_FRACTION),
                   "RegionalInformationFraction": float(regional[k]),
                   "MedianVertexInformationFraction": float(per_vertex[k]),
                   "VerticesPerCorrelationRegion": float(n_region),
                   "Note": "fraction of the N(0,1) latent prior variance removed by the data "
                           "(likelihood curvature c/(c+1)), per vertex and pooled over one "
                           f"prior correlation region; flagged below {IDENTIFIED_FRACTION}"}
            for name, k in index.items()}


def convergence_record(result) -> dict[str, Any]:
    """The Newton record of a MapResult, as sidecar values."""
    return {"Converged": bool(result.converged), "Iterations": int(result.n_iter),
            "Objective": [float(v) for v in result.objective_trace],
            "GradientNorm": [float(v) for v in result.grad_norm_trace]}


def bias_correction(refit: MapRefit, theta_t: np.ndarray, y_clean: np.ndarray,
                    confounds: np.ndarray | None, config: Config, where: str
                    ) -> tuple[np.ndarray, dict[str, Any]]:
    """The simulated bias of the MAP (``bids_app.bootstrap.simulated_bias``) and its
    sidecar record; a zero shift where it is off or cannot run."""
    from bids_app.bootstrap.simulated_bias import simulated_bias, skip_reason

    surrogate = refit.surrogate
    reason = ("--bias-correction none" if config.bias_correction == "none" else
              skip_reason(surrogate.model.name))
    if reason is not None:
        LOGGER.info("%s: no simulation bias correction (%s)", where, reason)
        return np.zeros_like(theta_t, dtype=float), {"Method": "none", "Reason": reason}
    bias = simulated_bias(refit, theta_t, y_clean, confounds, config.random_seed)
    noise = bias.match.prior
    if bias.skipped is not None:
        LOGGER.warning("%s: no simulation bias correction: %s (matched noise AR(1) %.3f, "
                       "event rate %.3g-%.3g /s)", where, bias.skipped, noise.ar_coef[0],
                       *noise.rate)
        return bias.shift, bias.sidecar()
    LOGGER.info("%s: simulation bias correction: matched noise sd %.3g, AR(1) %.3f, event "
                "rate %.3g-%.3g /s; mean latent shift %+.3f", where, noise.noise_sd[0],
                noise.ar_coef[0], *noise.rate, float(bias.shift.mean()))
    return bias.shift, bias.sidecar()


def bootstrap_intervals(y_clean: np.ndarray, refit: MapRefit, shift: np.ndarray,
                        config: Config, cache: Path):
    """Single or double block bootstrap of the latent map, mapped to reported parameters.

    Every resample is refitted by ``refit`` (κ, τ² and any noise colour fixed at the
    point estimate's), around its warm start, the MAP; the intervals are then moved by
    −``shift`` with the estimate (the simulated bias)."""
    from bids_app.bootstrap import double_bootstrap, natural_intervals
    from bids_app.bootstrap.simulated_bias import shift_result

    theta_t, tr = refit.theta_t0, refit.tr
    options = dict(mode=config.bootstrap, B=config.n_boot, R=config.n_inner,
                   block_s=config.block_length, resampling=config.resampling,
                   seed=config.random_seed, n_jobs=config.nprocs,
                   cache_dir=cache, progress=config.verbose > 0)
    if config.dask_scheduler:
        from distributed import Client

        with Client(config.dask_scheduler) as client:
            result = double_bootstrap(y_clean, refit, theta_t, tr, client=client, **options)
    else:
        result = double_bootstrap(y_clean, refit, theta_t, tr, **options)
    return (natural_intervals(shift_result(result, shift), theta_t - shift, refit.surrogate.model),
            result.sidecar())


def combine_runs(runs: list[SurfaceRun], fits: dict[str, dict[str, HemisphereFit]],
                 config: Config) -> dict[str, HemisphereFit]:
    """One MAP per hemisphere from the summed log-likelihoods of every run."""
    combined = {}
    for hemi in runs[0].hemispheres:
        parts = [fits[run.prefix][hemi] for run in runs if hemi in fits[run.prefix]]
        common = parts[0].fitted
        for part in parts[1:]:
            common = np.intersect1d(common, part.fitted)
        vertices, faces = parts[0].mesh
        fem, keep = mesh_prior_support(vertices, faces, common, parts[0].n_vertices)
        common = common[keep]
        logliks = []
        for part in parts:
            surrogate, summaries, tr, n_frames, n_reg, noise_ar = part.loglik_parts[0]
            rows = np.searchsorted(part.fitted, common)
            logliks.append(surrogate.loglik(summaries[rows], tr, n_frames, n_reg, noise_ar))
        start = np.mean([part.loglik_parts[0][1][np.searchsorted(part.fitted, common)]
                         for part in parts], axis=0)
        loglik = summed_loglik(logliks)
        theta_t, record = fit_map_with_evidence([loglik], fem, start, config,
                                                where=f"{runs[0].prefix} combined hemi-{hemi}")
        record.pop("precision")
        record.pop("candidate")
        first = parts[0].record
        shift = np.mean([part.bias_shift[np.searchsorted(part.fitted, common)]
                         for part in parts], axis=0)
        theta_t = theta_t - shift
        record.update(
            bias_correction={"Method": "mean of the runs' simulated shifts",
                             "MeanShift": [float(v) for v in shift.mean(axis=0)]}
            if np.any(shift) else {"Method": "none", "Reason": "no run was corrected"},
            identifiability=identifiability(loglik, theta_t, parts[0].loglik_parts[0][0].model,
                                            record["kappa"], fem),
            surrogate=first["surrogate"], calibration_check=None,
            bootstrap={"Mode": "none", "Note": "combined over runs: no resampling across runs"},
            extra={"CombinedRuns": [run.prefix for run in runs], "Mesh": first["extra"]["Mesh"],
                   "Combination": "per-run log-likelihoods summed (runs independent given "
                                  "theta), one MAP with evidence-selected kappa, tau2",
                   "FittedVertices": len(common)},
        )
        combined[hemi] = HemisphereFit(parts[0].n_vertices, common, theta_t, None, record,
                                       [], parts[0].mesh, None, shift)
    return combined


def summed_loglik(logliks: list):
    """Log-likelihood callable of independent runs: values, gradients, Hessians add up."""
    def total(theta_t: np.ndarray):
        value, grad, hess = logliks[0](theta_t)
        for other in logliks[1:]:
            v, g, h = other(theta_t)
            value, grad, hess = value + v, grad + g, hess + h
        return value, grad, hess

    return total


NOISE_TO_SIGNAL = 0.1  # Wiener regulariser, as a fraction of each kernel's peak power


def wiener_deconvolve(y_clean: np.ndarray, theta: np.ndarray, model, tr: float
                      ) -> np.ndarray:
    """Neural series estimate per vertex, deconvolving each vertex's own estimated HRF.

    Wiener filter Ŝ = conj(H)·Y / (|H|² + λ) with λ = NOISE_TO_SIGNAL · max|H|², computed
    with zero padding (no wrap-around); the result is z-scored over time (units are
    arbitrary: only the timing is identified).
    """
    from bids_app.simulate.hrf import hrf_kernels

    kernels = hrf_kernels(model, theta, tr)
    n_frames = y_clean.shape[1]
    n_fft = int(2 ** np.ceil(np.log2(n_frames + kernels.shape[1])))
    h = np.fft.rfft(kernels, n_fft, axis=1)
    power = np.abs(h) ** 2
    lam = NOISE_TO_SIGNAL * power.max(axis=1, keepdims=True)
    s = np.fft.irfft(np.conj(h) * np.fft.rfft(y_clean, n_fft, axis=1) / (power + lam), n_fft,
                     axis=1)[:, :n_frames]
    s -= s.mean(axis=1, keepdims=True)
    sd = s.std(axis=1, keepdims=True)
    return (s / np.where(sd > 0, sd, 1.0)).astype(np.float32)


# --------------------------------------------------------------------------- outputs


def write_participant(subject: str, runs: list[SurfaceRun],
                      fits: dict[str, dict[str, HemisphereFit]],
                      combined: dict[str, HemisphereFit] | None, config: Config) -> list[Path]:
    """Write maps (+ sidecars) and the report; on any failure remove what was written."""
    from bids_app.io.derivatives import map_path, sidecar_path, write_parameter_maps

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
            written.append(write_report(subject, planned, config))
    except BaseException:
        for path in [*targets, *written]:
            path.unlink(missing_ok=True)
            sidecar_path(path).unlink(missing_ok=True)
        raise
    return written


def write_deconvolved(run: SurfaceRun, hemi_fits: dict[str, HemisphereFit],
                      config: Config) -> list[Path]:
    """``desc-deconvolved_bold`` series (GIFTI per hemisphere or one CIFTI) + sidecar."""
    from bids_app.io.atomic import write_json
    from bids_app.io.derivatives import derivative_folder, derivative_name
    from bids_app.io.surface_files import SurfaceBlock, save_cifti_series, save_func_gifti

    first = next(iter(hemi_fits.values())).record["extra"]
    space, _, den = run.space.partition("_den-")
    entities = {**run.entities, "space": space, **({"den": den} if den else {}),
                "desc": "deconvolved"}
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


def parameter_maps(entities: dict, hemi_fits: dict[str, HemisphereFit], run: SurfaceRun,
                   config: Config) -> list:
    """ParameterMaps for one fit: one per hemisphere (GIFTI) or one for both (CIFTI)."""
    import nibabel as nib

    from bids_app.io.derivatives import ParameterMaps, cortex_models, merge_hemispheres

    space, _, den = run.space.partition("_den-")
    entities = {**entities, "space": space, **({"den": den} if den else {})}
    per_hemi = {hemi: stat_arrays(fit, config) for hemi, fit in hemi_fits.items()}
    if run.cifti is None:
        return [ParameterMaps({**entities, "hemi": hemi}, config.model, per_hemi[hemi],
                              fit_metadata({hemi: fit}, run, config))
                for hemi, fit in hemi_fits.items()]
    axis = cortex_models(nib.load(run.cifti).header.get_axis(1))
    params = merge_hemispheres(per_hemi["L"], per_hemi["R"], axis)
    return [ParameterMaps(entities, config.model, params, fit_metadata(hemi_fits, run, config),
                          brain_models=axis)]


def stat_arrays(fit: HemisphereFit, config: Config) -> dict:
    """Full-mesh maps (NaN where not fitted) of every reported parameter."""
    from bids_app.io.derivatives import StatArrays
    from bids_app.models import MODELS

    model = MODELS[config.model]
    if fit.intervals is None:
        derived = model.derived(model.to_theta(fit.theta_t))
        return {name: StatArrays(full(fit, values)) for name, values in derived.items()}
    return {name: StatArrays(full(fit, iv.estimate), full(fit, iv.se), full(fit, iv.lower),
                             full(fit, iv.upper))
            for name, iv in fit.intervals.items()}


def full(fit: HemisphereFit, values: np.ndarray) -> np.ndarray:
    out = np.full(fit.n_vertices, np.nan)
    out[fit.fitted] = values
    return out


def fit_metadata(hemi_fits: dict[str, HemisphereFit], run: SurfaceRun, config: Config):
    """Sidecar record; per-hemisphere values become {"L": ..., "R": ...} for CIFTI."""
    from bids_app.io.derivatives import FitMetadata, bids_uri

    records = {hemi: fit.record for hemi, fit in hemi_fits.items()}

    def value(key: str):
        if len(records) == 1:
            return next(iter(records.values()))[key]
        return {hemi: record[key] for hemi, record in records.items()}

    first = next(iter(records.values()))
    simulated = any((record.get("bias_correction") or {}).get("Method", "none") != "none"
                    for record in records.values())
    root = fmriprep_root(config)
    return FitMetadata(
        surrogate=first["surrogate"], kappa=value("kappa"), tau2=value("tau2"),
        log_evidence=value("log_evidence"), convergence=value("convergence"),
        random_seed=config.random_seed if first.get("bootstrap") or simulated else None,
        sources=[bids_uri(path, root) for path in run.sources],
        bootstrap=first.get("bootstrap") or {"Mode": "none"},
        calibration_check=value("calibration_check"),
        identifiability=first.get("identifiability", {}),
        evidence_grid=value("evidence_grid") if len(records) == 1 else None,
        hyperparameter_selection=value("hyperparameter_selection"),
        bias_correction=value("bias_correction"),
        extra={key: value for key, value in first["extra"].items()}
        if len(records) == 1 else {"Hemispheres": value("extra")},
    )


def write_report(subject: str, planned: list, config: Config) -> Path:
    """``sub-<label>.html`` from the maps on disk, drawn on the meshes the fits used."""
    from bids_app.io.templates import template_mesh
    from bids_app.report.participant import write_participant_report

    meshes = {(run.space.partition("_den-")[0], hemi): fit.mesh
              for _, hemi_fits, run in planned for hemi, fit in hemi_fits.items()}

    def lookup(space: str, hemi: str) -> tuple:
        return meshes.get((space, hemi)) or template_mesh(space, hemi)

    return write_participant_report(config.output_dir, subject, lookup)
