"""Synthetic fMRIPrep-style derivatives datasets with known HRF parameter maps.

Layout (``--mesh fsaverage5``; fsLR32k writes ``space-fsLR_den-32k`` instead)::

    dataset_description.json                      DatasetType derivative, GeneratedBy
    sub-01/anat/sub-01_hemi-L_midthickness.surf.gii
    sub-01/func/sub-01_task-rest_hemi-L_space-fsaverage5_bold.func.gii   (+ .json)
    sub-01/func/sub-01_task-rest_desc-confounds_timeseries.tsv
    sub-01/func/sub-01_task-rest_space-fsLR_den-91k_bold.dtseries.nii    (--cifti, fsLR)
    sourcedata/truth/truth.json                   κ, τ², seed, nuisance settings
    sourcedata/truth/sub-01/sub-01_hemi-L_space-fsaverage5_desc-truth_theta.func.gii

Per subject, θ̃ maps are drawn from the SPDE prior on the template midthickness mesh
(one field per parameter), θ = link⁻¹(θ̃); every run then simulates BOLD at each vertex
from those θ, adds a per-vertex mix of simulated head motion, and scales to a scanner-
like baseline (≈1000, 1% signal sd). The "subject" meshes are the template meshes, so
the truth lives on the mesh the data live on.

Medial wall: the template meshes carry no mask here (TemplateFlow's offline copy has
none), so every vertex carries data. Passing ``cortex_masks`` mimics fMRIPrep: data
are zero and truth NaN outside the mask, and the CIFTI omits those vertices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bids_app import __version__
from bids_app.errors import UsageError
from bids_app.io.atomic import write_json, write_text
from bids_app.io.spaces import SIMULATOR_MESHES
from bids_app.io.surface_files import (
    SurfaceBlock,
    save_cifti_series,
    save_func_gifti,
    save_scalar_gifti,
    save_surface,
)
from bids_app.io.templates import template_mesh
from bids_app.models import DEFAULT_MODEL, MODELS, ONE_PARAM, TWO_PARAM
from bids_app.prior import SPDEPrior, fem_matrices
from bids_app.simulate.bold import HCP_1P, HCP_2P, NuisancePrior, sample_nuisance, simulate_bold
from bids_app.simulate.hrf import default_kernel_duration
from bids_app.simulate.motion import confounds_table, contaminate, simulate_motion

# Mesh option → BIDS space entities of the GIFTI series and meshes.
SPACE_ENTITIES = {mesh: f"space-{label}" for mesh, label in SIMULATOR_MESHES.items()}
# Model name → its published HCP calibration (the simulator's default nuisance).
DEFAULT_NUISANCE = {ONE_PARAM.name: HCP_1P, TWO_PARAM.name: HCP_2P}
BASELINE_RANGE = (800.0, 1200.0)  # scanner-like mean intensity per vertex
SIGNAL_PERCENT = 1.0  # sd of the simulated fluctuation, % of baseline


@dataclass(frozen=True)
class DatasetSpec:
    """What to simulate; every field is recorded in ``sourcedata/truth/truth.json``.

    ``kappa`` is in 1/mm (the mesh is in mm), ``tr`` in s; ``n_sessions`` 0 means no
    session level and ``n_runs`` 1 means no run entity. ``nuisance`` defaults to the
    published HCP calibration of ``model``.
    """

    mesh: str = "fsaverage5"
    n_subjects: int = 1
    tr: float = 0.72
    n_frames: int = 300
    model: str = DEFAULT_MODEL
    seed: int = 0
    kappa: float = 5e-3
    tau2: float = 1e4
    n_sessions: int = 0
    n_runs: int = 1
    cifti: bool = False
    motion_strength: float = 0.5
    task: str = "rest"
    nuisance: NuisancePrior | None = field(default=None)

    def __post_init__(self) -> None:
        if self.mesh not in SPACE_ENTITIES:
            raise UsageError(f"--mesh must be one of {', '.join(SPACE_ENTITIES)}")
        if self.model not in MODELS:
            raise UsageError(f"--model must be one of {', '.join(MODELS)}")
        if self.cifti and self.mesh != "fsLR32k":
            raise UsageError("--cifti needs --mesh fsLR32k (fMRIPrep's CIFTI is fsLR)")
        if not (self.tr > 0 and self.n_frames >= 2 and self.n_subjects >= 1
                and self.n_runs >= 1 and self.n_sessions >= 0):
            raise UsageError("need --tr > 0, --frames ≥ 2, --subjects ≥ 1, --runs ≥ 1, "
                             "--sessions ≥ 0")
        if not (self.kappa > 0 and self.tau2 > 0 and self.motion_strength >= 0):
            raise UsageError("need --kappa > 0, --tau2 > 0 and motion strength ≥ 0")

    @property
    def nuisance_prior(self) -> NuisancePrior:
        return self.nuisance or DEFAULT_NUISANCE[self.model]


def subject_label(index: int, n_subjects: int) -> str:
    """Zero-padded labels: 01, 02, … (wider when there are ≥ 100 subjects)."""
    return f"{index + 1:0{max(2, len(str(n_subjects)))}d}"


def simulate_dataset(
    out_dir: str | Path,
    spec: DatasetSpec,
    meshes: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    cortex_masks: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write a synthetic fMRIPrep derivatives dataset to ``out_dir`` (see module doc).

    Parameters
    ----------
    out_dir : path
    spec : DatasetSpec
    meshes : {"L": (vertices mm, faces), "R": ...}, optional
        Default: the template midthickness of ``spec.mesh``.
    cortex_masks : {"L": bool (V,), "R": ...}, optional
        True on cortex; outside, data are zero and truth NaN (fMRIPrep's medial wall).

    Returns
    -------
    Path of the dataset root.
    """
    root = Path(out_dir)
    meshes = meshes or {hemi: template_mesh(spec.mesh, hemi) for hemi in ("L", "R")}
    priors = {hemi: SPDEPrior(fem_matrices(*meshes[hemi], (cortex_masks or {}).get(hemi)))
              for hemi in meshes}
    write_json(root / "dataset_description.json", _description(spec))
    subjects = []
    for index, seed_seq in enumerate(np.random.SeedSequence(spec.seed).spawn(spec.n_subjects)):
        label = subject_label(index, spec.n_subjects)
        _simulate_subject(root, label, spec, meshes, priors, np.random.default_rng(seed_seq))
        subjects.append(f"sub-{label}")
    write_json(root / "sourcedata" / "truth" / "truth.json", _truth_record(spec, priors,
                                                                           subjects))
    return root


def _description(spec: DatasetSpec) -> dict:
    return {
        "Name": f"hemocoupling simulated resting-state BOLD ({spec.model}, {spec.mesh})",
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "hemocoupling-simulate", "Version": __version__,
                         "Description": "Synthetic fMRIPrep-style surface BOLD with known "
                                        "HRF parameter maps in sourcedata/truth"}],
    }


def _simulate_subject(root: Path, label: str, spec: DatasetSpec, meshes: dict,
                      priors: dict[str, SPDEPrior], rng: np.random.Generator) -> None:
    model = MODELS[spec.model]
    space = SPACE_ENTITIES[spec.mesh]
    truth_dir = root / "sourcedata" / "truth" / f"sub-{label}"
    theta = {}
    for hemi, prior in priors.items():
        latent = prior.sample(spec.kappa, spec.tau2, rng, model.n_params).reshape(
            prior.n_vertices, model.n_params)
        theta[hemi] = model.to_theta(latent)
        _write_truth(truth_dir / f"sub-{label}_hemi-{hemi}_{space}_desc-truth", model,
                     prior, latent, theta[hemi], hemi)
        mesh_space = "" if spec.mesh == "fsaverage5" else f"_{space}"
        save_surface(root / f"sub-{label}" / "anat"
                     / f"sub-{label}_hemi-{hemi}{mesh_space}_midthickness.surf.gii",
                     *meshes[hemi], hemi=hemi)
    sessions = [f"ses-{s + 1}" for s in range(spec.n_sessions)] or [None]
    for session in sessions:
        for run in range(spec.n_runs):
            prefix = "_".join(filter(None, [f"sub-{label}", session, f"task-{spec.task}",
                                            f"run-{run + 1}" if spec.n_runs > 1 else None]))
            func_dir = root / f"sub-{label}" / (session or "") / "func"
            _simulate_run(func_dir, prefix, spec, priors, theta, rng)


def _write_truth(stem: Path, model, prior: SPDEPrior, latent: np.ndarray,
                 theta: np.ndarray, hemi: str) -> None:
    fem = prior.fem
    save_scalar_gifti(f"{stem}_theta.func.gii", fem.expand(theta), model.params, hemi)
    save_scalar_gifti(f"{stem}_latent.func.gii", fem.expand(latent), model.params, hemi)
    derived = model.derived(theta)
    save_scalar_gifti(f"{stem}_derived.func.gii",
                      fem.expand(np.column_stack(list(derived.values()))), list(derived), hemi)


def _simulate_run(func_dir: Path, prefix: str, spec: DatasetSpec,
                  priors: dict[str, SPDEPrior], theta: dict[str, np.ndarray],
                  rng: np.random.Generator) -> None:
    space = SPACE_ENTITIES[spec.mesh]
    motion = simulate_motion(spec.n_frames, spec.tr, rng)
    sidecar = {"RepetitionTime": spec.tr, "TaskName": spec.task}
    blocks: dict[str, SurfaceBlock] = {}
    for hemi, prior in priors.items():
        nuisance = sample_nuisance(spec.nuisance_prior, prior.n_vertices, rng)
        y = simulate_bold(spec.model, theta[hemi], spec.tr, spec.n_frames, nuisance, rng)
        y = contaminate(y.astype(np.float64), motion, spec.motion_strength, rng)
        baseline = rng.uniform(*BASELINE_RANGE, (prior.n_vertices, 1))
        scale = SIGNAL_PERCENT / 100.0 / np.maximum(y.std(axis=1, keepdims=True), 1e-12)
        data = (baseline * (1.0 + scale * (y - y.mean(axis=1, keepdims=True)))).astype(np.float32)
        blocks[hemi] = SurfaceBlock(data, prior.fem.vertex_index, prior.fem.n_input_vertices)
        stem = func_dir / f"{prefix}_hemi-{hemi}_{space}_bold"
        save_func_gifti(f"{stem}.func.gii", blocks[hemi].to_full(fill=0.0), spec.tr, hemi)
        write_json(f"{stem}.json", sidecar)
    global_signal = np.concatenate([b.data for b in blocks.values()]).mean(axis=0)
    table = confounds_table(motion, global_signal, rng)
    write_text(func_dir / f"{prefix}_desc-confounds_timeseries.tsv",
               table.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.8g"))
    if spec.cifti:
        stem = func_dir / f"{prefix}_space-fsLR_den-91k_bold"
        save_cifti_series(f"{stem}.dtseries.nii", blocks, spec.tr)
        write_json(f"{stem}.dtseries.json",
                   {**sidecar, "Note": "Simulated; cortex only (no subcortical grayordinates)"})


def _truth_record(spec: DatasetSpec, priors: dict[str, SPDEPrior], subjects: list) -> dict:
    model = MODELS[spec.model]
    record = {key: value for key, value in asdict(spec).items() if key != "nuisance"}
    kept = {hemi: int(p.n_vertices) for hemi, p in priors.items()}
    record.update({
        "GeneratedBy": {"Name": "hemocoupling-simulate", "Version": __version__},
        "Subjects": subjects,
        "KappaUnits": "1/mm",
        "MarginalVarianceLatent": SPDEPrior.marginal_variance(spec.kappa, spec.tau2),
        "Parameters": list(model.params),
        "ParameterUnits": list(model.units),
        "LinkBounds": [b.tolist() for b in model.link_bounds()],
        "Nuisance": spec.nuisance_prior.to_dict(),
        "NuisanceSampling": "per vertex and run: noise_sd log-uniform, rate uniform "
                            "(log-uniform if rate_log_uniform), ar_coef uniform; "
                            "event amplitudes U(amplitude)",
        "KernelDurationSeconds": default_kernel_duration(model),
        "BurnInSeconds": default_kernel_duration(model),
        "MotionStrength": "motion adds about motion_strength² of each series' variance",
        "BaselineRange": list(BASELINE_RANGE),
        "SignalPercent": SIGNAL_PERCENT,
        "VerticesWithData": kept,
        "TruthFiles": "sub-*/sub-*_hemi-{L,R}_<space>_desc-truth_{theta,latent,derived}"
                      ".func.gii; one named data array per parameter, NaN where no data",
    })
    return record
