"""Fit one hemisphere from arrays: the whole method without files.

This is the public, file-free API. It runs after the stages it composes (preprocess →
surrogate → prior → inference → bootstrap) and before the workflows, which only add
file handling around it. Per hemisphere: mask vertices with non-finite or constant
series (medial wall) and clean the rest with the surrogate's recipe; summarise, build
the per-vertex log-likelihood and fit the MAP under the SPDE prior on the mesh with
(κ, τ², noise colour) chosen by Laplace evidence; remove the MAP's simulated bias under
the run's own noise regime; bootstrap intervals moved with the estimate.
:func:`combine_runs` fits one map from several runs' summed log-likelihoods.

Example
-------
>>> import numpy as np
>>> from bids_app.fit import FitOptions, fit_hemisphere
>>> from bids_app.prior import icosphere
>>> from bids_app.surrogate import load_surrogate
>>> mesh = icosphere(3, 50.0)                      # (vertices (V, 3) mm, faces (F, 3))
>>> series = np.random.default_rng(0).normal(size=(len(mesh[0]), 200))  # (V, T) BOLD
>>> surrogate = load_surrogate("1p", tr=2.0, n_frames=200)
>>> result = fit_hemisphere(series, mesh, 2.0, surrogate,
...                         FitOptions(bias_correction="none"))
>>> sorted(result.maps())                          # full-mesh maps, NaN where not fitted
['theta', 'timetopeak']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bids_app.bias.simulated import correct_bias
from bids_app.bootstrap.combined import CombinedRefit
from bids_app.bootstrap.intervals import (
    BootstrapOptions,
    bootstrap_intervals,
    combined_intervals,
)
from bids_app.bootstrap.natural import MapInterval
from bids_app.config import DEFAULT_KAPPAS, DEFAULT_TAU2S, default
from bids_app.errors import InputValidationError
from bids_app.inference.deconvolve import wiener_deconvolve
from bids_app.inference.evidence import SEARCHES
from bids_app.inference.hemisphere import (
    RunLikelihood,
    fit_map_with_evidence,
    flag_degenerate_intervals,
    identifiability,
    summed_loglik,
)
from bids_app.inference.refit import MapRefit
from bids_app.models import HRFModel
from bids_app.preprocess import clean, usable_rows
from bids_app.prior import FEM, mesh_prior_support
from bids_app.quality import quality_control
from bids_app.surrogate.features import periodogram

LOGGER = logging.getLogger(__name__)
# Rows of the carpet plot kept per hemisphere (a screen's height of them).
CARPET_ROWS = 800


@dataclass(frozen=True)
class FitOptions:
    """How to fit: the (κ, τ²) grid and how evidence searches it, the bias correction
    ("simulation" or "none"), the bootstrap, the seed of every stochastic step, and
    whether to return Wiener-deconvolved neural series."""

    kappas: tuple[float, ...] = DEFAULT_KAPPAS
    tau2s: tuple[float, ...] = DEFAULT_TAU2S
    search: str = SEARCHES[0]
    bias_correction: str = default("bias_correction")
    bootstrap: BootstrapOptions = field(default_factory=BootstrapOptions)
    random_seed: int = default("random_seed")
    deconvolve: bool = default("write_deconvolved")


@dataclass
class HemisphereResult:
    """The fit of one hemisphere (of one run, or combined over runs).

    Attributes
    ----------
    model : HRFModel
        The HRF model fitted.
    n_vertices : int
        Vertices of the full mesh.
    fitted : array (n,) int
        Mesh indices of the vertices estimated (the rest are NaN in :meth:`maps`).
    theta_t : array (n, P)
        Latent estimate: the MAP less ``bias_shift``.
    bias_shift : array (n, P)
        Simulated latent bias removed from the MAP (zeros where no correction ran).
    kappa, tau2, log_evidence : float
        Evidence-selected SPDE hyperparameters and their Laplace log evidence (nats).
    intervals : dict of MapInterval or None
        Bootstrap estimate, SE and bounds per reported map; None without bootstrap.
    mesh : tuple
        (vertices, faces) the prior was built on.
    deconvolved : array (n, T) or None
        Wiener-deconvolved neural series (``FitOptions.deconvolve``).
    carpet : array (k, T) float32 or None
        z-scored cleaned series of up to :data:`CARPET_ROWS` evenly spaced fitted
        vertices, for the report's carpet plot; None for a combined fit.
    likelihood : RunLikelihood or None
        For :func:`combine_runs`; None for a combined fit.
    refit : MapRefit or None
        Refits resampled or simulated cleaned series exactly as the estimate was made
        (κ, τ², φ fixed), for bootstrap studies; None for a combined fit.
    surrogate, evidence_grid, convergence, hyperparameter_selection, identifiability,
    bias_correction, bootstrap, calibration_check, quality_control, extra : dict
        Sidecar records (JSON-ready); ``bootstrap`` is None when none ran,
        ``quality_control`` the quality gate's verdict (:mod:`bids_app.quality`), ``extra``
        the caller's provenance plus the vertices fitted and excluded.
    """

    model: HRFModel
    n_vertices: int
    fitted: np.ndarray
    theta_t: np.ndarray
    bias_shift: np.ndarray
    kappa: float
    tau2: float
    log_evidence: float
    intervals: dict[str, MapInterval] | None
    mesh: tuple
    surrogate: dict[str, Any]
    evidence_grid: dict[str, Any]
    convergence: dict[str, Any]
    hyperparameter_selection: dict[str, Any]
    identifiability: dict[str, Any]
    bias_correction: dict[str, Any]
    bootstrap: dict[str, Any] | None = None
    calibration_check: dict[str, Any] | None = None
    quality_control: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    deconvolved: np.ndarray | None = None
    carpet: np.ndarray | None = None
    likelihood: RunLikelihood | None = None
    refit: MapRefit | None = None

    @property
    def theta(self) -> np.ndarray:
        """Natural parameters (n, P) of the fitted vertices."""
        return self.model.to_theta(self.theta_t)

    def full(self, values: np.ndarray) -> np.ndarray:
        """Per-fitted-vertex ``values`` on the full mesh, NaN elsewhere."""
        out = np.full(self.n_vertices, np.nan)
        out[self.fitted] = values
        return out

    def maps(self) -> dict[str, np.ndarray]:
        """Every reported map (e.g. theta, timetopeak) on the full mesh."""
        return {name: self.full(values)
                for name, values in self.model.derived(self.theta).items()}


def fit_hemisphere(series: np.ndarray, mesh: tuple, tr: float, surrogate,
                   options: FitOptions = FitOptions(), *, confounds: np.ndarray | None = None,
                   vertex_index: np.ndarray | None = None, provenance: dict | None = None,
                   cache_dir: Path | None = None, where: str = "hemisphere"
                   ) -> HemisphereResult:
    """Mask → clean → summarise → MAP with evidence → simulated bias → bootstrap.

    Parameters
    ----------
    series : array (n, T)
        BOLD series of the analysed frames, one row per vertex in ``vertex_index``.
    mesh : (vertices (V, 3) in mm, faces (F, 3))
        The hemisphere's surface.
    tr : float
        Repetition time in s.
    surrogate : Surrogate
        From :func:`bids_app.surrogate.load_surrogate` for this TR and frame count.
    options : FitOptions
    confounds : array (T, k), optional
        Regressors removed with the surrogate's cleaning.
    vertex_index : array (n,) int, optional
        Mesh vertex of each row (default: row i is vertex i).
    provenance : dict, optional
        Sidecar values describing the input, first in ``extra``.
    cache_dir : Path, optional
        Where bootstrap refits are kept (a rerun resumes).
    where : str
        Names the hemisphere in log messages and errors.
    """
    vertices, faces = mesh[0], mesh[1]
    n_vertices = len(vertices)
    vertex_index = np.arange(len(series)) if vertex_index is None else np.asarray(vertex_index)
    n_frames = series.shape[1]
    n_reg = 0 if confounds is None else int(confounds.shape[1])
    y_clean, fitted, fem, excluded = clean_usable_vertices(
        series, vertex_index, n_vertices, tr, surrogate.preprocessing, (vertices, faces),
        confounds, where)
    summaries = surrogate.summarize(y_clean, tr, n_reg)
    noise_ars, logliks = surrogate.candidate_logliks(summaries, tr, n_frames, n_reg)
    # The summary's first P outputs are E[θ̃ | y] (extra outputs follow): the MAP's start.
    start = summaries[:, :surrogate.model.n_params]
    evidence = fit_map_with_evidence(logliks, fem, start, options.kappas, options.tau2s,
                                     where=where, noise_ars=surrogate.noise_ar_candidates,
                                     search=options.search)
    noise_ar, loglik = noise_ars[evidence.candidate], logliks[evidence.candidate]
    theta_t = evidence.theta_t
    identified = identifiability(loglik, theta_t, surrogate.model, evidence.kappa, fem,
                                 evidence.convergence["Iterations"])
    calibration = surrogate.check_calibration(y_clean, tr, n_reg)
    refit = MapRefit(surrogate, evidence.precision, theta_t, tr, n_regressors=n_reg,
                     noise_ar=noise_ar)
    shift, bias_record = correct_bias(refit, theta_t, y_clean, confounds,
                                      options.bias_correction, options.random_seed, where)
    intervals = bootstrap_record = power = None
    if options.bootstrap.mode != "none":
        if options.bootstrap.resampling == "local":  # kept for the combined map's intervals
            power = periodogram(y_clean).astype(np.float32)
        intervals, bootstrap_record = bootstrap_intervals(
            y_clean, refit, shift, options.bootstrap, options.random_seed, cache_dir)
        flag_degenerate_intervals(identified, intervals)
    theta_t = theta_t - shift
    quality = quality_control(y_clean, theta_t, surrogate, tr, n_reg, calibration,
                              evidence.convergence["Converged"], options.random_seed)
    if not quality.passed:
        LOGGER.warning("%s: QUALITY GATE FAILED, the maps are written but flagged and left out "
                       "of the group level (--include-flagged keeps them): %s", where,
                       "; ".join(quality.reasons))
    caveat = surrogate.card.get("caveat")
    deconvolved = None
    if options.deconvolve:
        deconvolved = wiener_deconvolve(y_clean, surrogate.model.to_theta(theta_t),
                                        surrogate.model, tr)
    return HemisphereResult(
        model=surrogate.model, n_vertices=n_vertices, fitted=fitted, theta_t=theta_t,
        bias_shift=shift, kappa=evidence.kappa, tau2=evidence.tau2,
        log_evidence=evidence.log_evidence, intervals=intervals, mesh=(vertices, faces),
        surrogate={"Id": surrogate.card.get("id"), "Sha256": surrogate.card.get("sha256")},
        evidence_grid=evidence.evidence_grid, convergence=evidence.convergence,
        hyperparameter_selection=evidence.hyperparameter_selection,
        identifiability=identified, bias_correction=bias_record, bootstrap=bootstrap_record,
        calibration_check=calibration, quality_control=quality.sidecar(),
        extra={**(provenance or {}), "FittedVertices": len(fitted),
               "ExcludedVertices": excluded, **({"ModelCaveat": caveat} if caveat else {})},
        deconvolved=deconvolved, carpet=carpet_rows(y_clean),
        likelihood=RunLikelihood(surrogate, summaries, tr, n_frames, n_reg, noise_ar, power),
        refit=refit)


def carpet_rows(y_clean: np.ndarray) -> np.ndarray:
    """Evenly spaced rows (mesh order) of the cleaned series, z-scored, as float32: what a
    carpet plot shows without keeping every vertex's series."""
    rows = y_clean[:: max(1, len(y_clean) // CARPET_ROWS)][:CARPET_ROWS]
    scale = rows.std(axis=1, keepdims=True)
    return ((rows - rows.mean(axis=1, keepdims=True)) / np.where(scale > 0, scale, 1.0)
            ).astype(np.float32)


def combined_quality(records: list[dict[str, Any] | None]) -> dict[str, Any]:
    """A map combined over runs passes the gate when every run did; it carries their
    reasons (a run without a record counts as passed)."""
    failed = [record for record in records if record and not record["Pass"]]
    return {"Pass": not failed,
            "Reasons": [f"run {k + 1} of {len(records)}: {reason}"
                        for k, record in enumerate(records) if record and not record["Pass"]
                        for reason in record["Reasons"]],
            "Checks": {}, "Note": "combined over runs: passes when every run passed"}


def clean_usable_vertices(series: np.ndarray, vertex_index: np.ndarray, n_vertices: int,
                          tr: float, preprocessing, mesh: tuple,
                          confounds: np.ndarray | None, where: str
                          ) -> tuple[np.ndarray, np.ndarray, FEM, dict[str, int]]:
    """Cleaned series of the vertices that can be fitted, their mesh indices, the FEM on
    them, and how many vertices each exclusion rule removed.

    Excluded: non-finite or constant series (medial wall), series with no variance left
    after confound regression, and vertices in no triangle of the remaining mesh.
    """
    y = np.asarray(series, dtype=np.float64)
    usable, excluded = usable_rows(y)
    if not usable.any():
        raise InputValidationError(
            f"{where}: no vertex has a finite, non-constant series; check the BOLD file")
    y_clean = clean(y[usable], tr, preprocessing, confounds)
    alive = np.abs(y_clean).max(axis=1) > 0
    excluded["NoVarianceAfterCleaning"] = int((~alive).sum())
    rows = np.flatnonzero(usable)[alive]
    fem, keep = mesh_prior_support(*mesh, vertex_index[rows], n_vertices)
    excluded["IsolatedOnMesh"] = int((~keep).sum())
    fitted = vertex_index[rows[keep]]
    LOGGER.info("%s: %d of %d vertices fitted (%s excluded)", where, len(fitted), n_vertices,
                excluded)
    return y_clean[alive][keep], fitted, fem, excluded


def combine_runs(parts: list[HemisphereResult], options: FitOptions = FitOptions(), *,
                 provenance: dict | None = None, cache_dir: Path | None = None,
                 where: str = "combined") -> HemisphereResult:
    """One MAP (with its own evidence-selected κ, τ²) from the summed log-likelihoods of
    independent runs of one hemisphere, on the vertices every run fitted; moved by the
    mean of the runs' simulated bias. Its intervals (when ``options.bootstrap`` asks for
    them, local scheme only) resample every run on its own and refit the summed
    likelihood (:mod:`bids_app.bootstrap.combined`); ``cache_dir`` keeps those refits."""
    common = parts[0].fitted
    for part in parts[1:]:
        common = np.intersect1d(common, part.fitted)
    fem, keep = mesh_prior_support(*parts[0].mesh, common, parts[0].n_vertices)
    common = common[keep]
    pairs = [(part, np.searchsorted(part.fitted, common)) for part in parts]
    loglik = summed_loglik([part.likelihood.on(rows) for part, rows in pairs])
    start = np.mean([part.likelihood.summaries[rows] for part, rows in pairs], axis=0)
    evidence = fit_map_with_evidence([loglik], fem, start, options.kappas, options.tau2s,
                                     where=where, search=options.search)
    shift = np.mean([part.bias_shift[rows] for part, rows in pairs], axis=0)
    theta_t = evidence.theta_t - shift
    model = parts[0].model
    intervals, bootstrap_record = combined_map_intervals(
        [part.likelihood.at(rows) for part, rows in pairs], evidence, shift, model, options,
        cache_dir, where)
    return HemisphereResult(
        model=model, n_vertices=parts[0].n_vertices, fitted=common, theta_t=theta_t,
        bias_shift=shift, kappa=evidence.kappa, tau2=evidence.tau2,
        log_evidence=evidence.log_evidence, intervals=intervals, mesh=parts[0].mesh,
        surrogate=parts[0].surrogate, evidence_grid=evidence.evidence_grid,
        convergence=evidence.convergence,
        hyperparameter_selection=evidence.hyperparameter_selection,
        identifiability=identifiability(loglik, theta_t, model, evidence.kappa, fem,
                                        evidence.convergence["Iterations"]),
        bias_correction={"Method": "mean of the runs' simulated shifts",
                         "MeanShift": [float(v) for v in shift.mean(axis=0)]}
        if np.any(shift) else {"Method": "none", "Reason": "no run was corrected"},
        bootstrap=bootstrap_record,
        quality_control=combined_quality([part.quality_control for part in parts]),
        extra={**(provenance or {}),
               "Combination": "per-run log-likelihoods summed (runs independent given "
                              "theta), one MAP with evidence-selected kappa, tau2",
               "FittedVertices": len(common)})


def combined_map_intervals(runs: list[RunLikelihood], evidence, shift: np.ndarray,
                           model: HRFModel, options: FitOptions, cache_dir: Path | None,
                           where: str
                           ) -> tuple[dict[str, MapInterval] | None, dict[str, Any] | None]:
    """Intervals and sidecar record of a combined MAP (``evidence``), from its ``runs``
    restricted to its vertices; (None, None) without bootstrap, (None, a note) with the
    block scheme, which the combination does not offer."""
    boot = options.bootstrap
    if boot.mode == "none":
        return None, None
    if boot.resampling != "local" or any(run.power is None for run in runs):
        LOGGER.warning("%s: no intervals for the map combined over runs: it is resampled "
                       "with --resampling local only (the per-run maps have theirs)", where)
        return None, {"Mode": "none", "Note": "combined over runs: intervals are computed "
                                              "with --resampling local only"}
    refit = CombinedRefit(runs, evidence.precision, evidence.theta_t)
    return combined_intervals(refit, shift, boot, options.random_seed, cache_dir, model)
