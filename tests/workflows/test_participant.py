"""Participant level through ``hemocoupling``: bad inputs give their exit code, one line,
and no map; good inputs give maps that follow the data."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.gifti import GiftiDataArray, GiftiImage

from bids_app.cli.run import main
from bids_app.io.bids_validator import validator_command
from bids_app.io.surface_files import SurfaceBlock, save_cifti_series, save_func_gifti
from bids_app.prior import icosphere
from bids_app.simulate.dataset import DatasetSpec, simulate_dataset

FUNC = "sub-01/func/sub-01_task-rest_hemi-{hemi}_space-fsaverage5_bold"


@pytest.fixture
def copy(dataset, tmp_path) -> Path:
    """A private copy of the dataset to damage."""
    return Path(shutil.copytree(dataset, tmp_path / "fmriprep"))


def run(bids: Path, out: Path, *extra: str) -> int:
    return main([str(bids), str(out), "participant", "-w", str(out.parent / "work"),
                 "--bootstrap", "none", "--no-report", "--kappa", "0.05", "--tau2", "100",
                 *extra])


def maps_in(out: Path) -> list[Path]:
    return sorted(out.rglob("*_boldmap.*")) if out.exists() else []


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    message = [line for line in err if line.startswith("hemocoupling: error:")]
    assert len(message) == 1, err
    return message[0]


def test_label_matching_nobody_exits_18_and_creates_no_folder(dataset, tmp_path, capsys):
    assert run(dataset, tmp_path / "out", "--participant-label", "01", "99") == 18
    assert "99" in one_line_error(capsys)
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_no_surface_bold_exits_66(copy, tmp_path, capsys):
    for path in (copy / "sub-01" / "func").glob("*_bold.func.gii"):
        path.unlink()
    assert run(copy, tmp_path / "out", "--participant-label", "01") == 66
    assert "sub-01" in one_line_error(capsys)
    assert maps_in(tmp_path / "out") == []


def test_missing_tr_exits_66_naming_the_file(copy, tmp_path, capsys):
    for hemi in "LR":
        stem = copy / FUNC.format(hemi=hemi)
        Path(f"{stem}.json").unlink()
        image = nib.load(f"{stem}.func.gii")
        arrays = [GiftiDataArray(a.data, intent=a.intent) for a in image.darrays]
        nib.save(GiftiImage(darrays=arrays), f"{stem}.func.gii")
    assert run(copy, tmp_path / "out") == 66
    assert "RepetitionTime" in one_line_error(capsys)
    assert maps_in(tmp_path / "out") == []


def test_mesh_with_other_vertex_count_exits_16(copy, tmp_path, capsys):
    vertices, faces = icosphere(2, radius_mm=50.0)
    points = GiftiDataArray(vertices.astype(np.float32), intent="NIFTI_INTENT_POINTSET")
    triangles = GiftiDataArray(faces.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE")
    mesh = copy / "sub-01" / "anat" / "sub-01_hemi-L_space-fsaverage5_midthickness.surf.gii"
    nib.save(GiftiImage(darrays=[points, triangles]), mesh)
    assert run(copy, tmp_path / "out") == 16
    assert "vertices" in one_line_error(capsys)
    assert maps_in(tmp_path / "out") == []


def test_unwritable_output_exits_73(dataset, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    assert run(dataset, blocker / "out") == 73
    assert "OUTPUT_DIR" in one_line_error(capsys)


def test_read_only_output_exits_73(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        if _can_write(out):
            pytest.skip("running as a user who ignores permissions (root)")
        assert run(dataset, out) == 73
        one_line_error(capsys)
    finally:
        out.chmod(0o700)


def _can_write(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def test_run_shorter_than_the_surrogate_allows_exits_16(dataset, tmp_path, capsys):
    assert run(dataset, tmp_path / "out", "--dummy-scans", "120") == 16
    assert "frames" in one_line_error(capsys)
    assert maps_in(tmp_path / "out") == []


def test_nan_and_constant_vertices_are_excluded_and_reported(copy, tmp_path):
    stem = copy / FUNC.format(hemi="L")
    image = nib.load(f"{stem}.func.gii")
    data = np.column_stack([a.data for a in image.darrays])
    data[:5] = np.nan
    data[5:12] = 1000.0
    save_func_gifti(f"{stem}.func.gii", data, tr=1.0, hemi="L")
    out = tmp_path / "out"
    assert run(copy, out) == 0
    estimate = out / "sub-01" / "func" / \
        "sub-01_task-rest_hemi-L_space-fsaverage5_param-theta_stat-estimate_boldmap"
    values = np.asarray(nib.load(f"{estimate}.func.gii").darrays[0].data)
    assert np.isnan(values[:12]).all() and np.isfinite(values[12:]).all()
    record = json.loads(Path(f"{estimate}.json").read_text())
    excluded = record["ExcludedVertices"]
    assert (excluded["NonFinite"], excluded["Constant"]) == (5, 7)
    # κ and τ² fixed: nothing searched, so no boundary and no evidence gap
    assert record["HyperparameterSelection"]["OnGridBoundary"] == {}
    assert record["HyperparameterSelection"]["LogEvidenceGap"] is None


def test_selection_on_a_grid_edge_is_logged_and_recorded(dataset, tmp_path):
    """A two-value κ axis always selects an edge: one warning per hemisphere, and the
    sidecar names the edge; the fixed τ² axis is never flagged."""
    out = tmp_path / "out"
    assert run(dataset, out, "--kappa", "0.02", "0.2") == 0
    log = next((out / "logs").glob("*.log")).read_text().splitlines()
    for hemi in "LR":
        warnings = [line for line in log if f"hemi-{hemi}: selected κ at the" in line]
        assert len(warnings) == 1 and "pass a wider --kappa list" in warnings[0]
        assert "WARNING" in warnings[0] and "τ²" not in warnings[0]
        sidecar = out / "sub-01" / "func" / (f"sub-01_task-rest_hemi-{hemi}_space-fsaverage5"
                                             "_param-theta_stat-estimate_boldmap.json")
        record = json.loads(sidecar.read_text())
        selection = record["HyperparameterSelection"]
        edge = "lower" if record["Kappa"] == 0.02 else "upper"
        assert selection["OnGridBoundary"] == {"kappa": edge}
        surface = np.asarray(record["EvidenceGrid"]["LogEvidence"]).ravel()
        assert selection["LogEvidenceGap"] == pytest.approx(abs(surface[0] - surface[1]))
        assert "NoiseAR" not in selection  # the shipped 1p flow is not told φ


def test_simulated_bias_correction_is_recorded_and_can_be_turned_off(dataset, tmp_path):
    """By default the estimate is moved by the simulated bias and the sidecar records the
    matched noise regime; ``--bias-correction none`` reports the MAP itself."""
    name = "sub-01_task-rest_hemi-L_space-fsaverage5_param-theta_stat-estimate_boldmap"
    maps = {}
    for mode in ("simulation", "none"):
        out = tmp_path / mode
        assert run(dataset, out, "--bias-correction", mode) == 0
        func = out / "sub-01" / "func"
        sidecar = json.loads((func / f"{name}.json").read_text())
        record = sidecar["SimulatedBiasCorrection"]
        assert record["Method"] == mode
        assert sidecar["RandomSeed"] == 0  # the quality gate's simulations are seeded too
        assert sidecar["QualityControl"]["Pass"] in (True, False)
        maps[mode] = nib.load(func / f"{name}.func.gii").agg_data()
    assert set(record) == {"Method", "Reason"} and "none" in record["Reason"]
    moved = maps["simulation"] - maps["none"]
    assert np.isfinite(moved).any() and np.nanmax(np.abs(moved)) > 1e-4


def test_cifti_input_gives_cifti_maps(copy, tmp_path):
    """A dtseries over both hemispheres' cortex (medial wall absent) → one dscalar per map."""
    func, anat = copy / "sub-01" / "func", copy / "sub-01" / "anat"
    blocks = {}
    for hemi in "LR":
        stem = copy / FUNC.format(hemi=hemi)
        data = np.column_stack([a.data for a in nib.load(f"{stem}.func.gii").darrays])
        keep = np.arange(20, data.shape[0])  # vertices 0-19: "medial wall", not in the file
        blocks[hemi] = SurfaceBlock(data[keep], keep, data.shape[0])
        for path in (Path(f"{stem}.func.gii"), Path(f"{stem}.json")):
            path.unlink()
        (anat / f"sub-01_hemi-{hemi}_midthickness.surf.gii").rename(
            anat / f"sub-01_hemi-{hemi}_space-fsLR_den-32k_midthickness.surf.gii")
    save_cifti_series(func / "sub-01_task-rest_space-fsLR_den-91k_bold.dtseries.nii", blocks,
                      tr=1.0)
    out = tmp_path / "out"
    assert run(copy, out) == 0
    maps = sorted(p.name for p in maps_in(out) if p.name.endswith(".dscalar.nii"))
    assert maps == [f"sub-01_task-rest_space-fsLR_den-91k_param-{p}_stat-estimate_boldmap"
                    ".dscalar.nii" for p in ("theta", "timetopeak")]
    image = nib.load(out / "sub-01" / "func" / maps[0])
    assert image.shape == (1, 2 * (642 - 20))
    assert np.isfinite(image.get_fdata()).all()


def test_two_runs_give_per_run_and_combined_maps_and_deconvolved_series(tmp_path):
    mesh = icosphere(2, radius_mm=40.0)
    bids = simulate_dataset(tmp_path / "fmriprep", DatasetSpec(n_frames=160, tr=1.0, seed=5,
                                                               n_runs=2),
                            meshes={"L": mesh, "R": mesh})
    out = tmp_path / "out"
    assert run(bids, out, "--write-deconvolved") == 0
    func = out / "sub-01" / "func"
    estimates = sorted(p.name for p in func.glob("*hemi-L*param-theta_stat-estimate*.func.gii"))
    assert estimates == [
        f"sub-01_task-rest{run}_hemi-L_space-fsaverage5_param-theta_stat-estimate_boldmap"
        ".func.gii" for run in ("", "_run-1", "_run-2")]
    combined = json.loads((func / estimates[0].replace(".func.gii", ".json")).read_text())
    assert combined["CombinedRuns"] == ["sub-01_task-rest_run-1", "sub-01_task-rest_run-2"]
    deconvolved = func / "sub-01_task-rest_run-2_hemi-R_space-fsaverage5_desc-deconvolved_bold"
    series = np.column_stack([a.data for a in nib.load(f"{deconvolved}.func.gii").darrays])
    assert series.shape == (162, 160) and np.isfinite(series).all()
    assert Path(f"{deconvolved.parent / deconvolved.name.replace('_hemi-R', '')}.json").is_file()


def test_finished_participant_is_skipped_unless_overwrite(dataset, tmp_path):
    out = tmp_path / "out"
    assert run(dataset, out) == 0
    finished = out / "logs" / "sub-01_finished.json"
    first = finished.stat().st_mtime_ns
    assert run(dataset, out) == 0
    assert finished.stat().st_mtime_ns == first
    assert run(dataset, out, "--overwrite") == 0
    assert finished.stat().st_mtime_ns > first


def test_noise_colour_candidates_are_selected_and_recorded(tmp_path, caplog):
    """With one likelihood per noise candidate (here Gaussian ones that differ in noise
    level, the data's being the third), the workflow keeps the best by evidence, records
    every candidate's evidence and (κ, τ²), and warns when the most coloured one wins."""
    from bids_app.inference.analytic import GaussianLoglik
    from bids_app.inference.hemisphere import fit_map_with_evidence
    from bids_app.prior import SPDEPrior, fem_matrices, icosphere

    vertices, faces = icosphere(3, 50.0)
    fem = fem_matrices(vertices, faces)
    rng = np.random.default_rng(3)
    truth = SPDEPrior(fem).sample(0.1, 100.0, rng, 1)
    S = truth + rng.normal(0.0, 0.5, truth.shape)
    candidates = [None, 0.0, 0.1]
    logliks = [GaussianLoglik(S, p) for p in (1.0, 16.0, 4.0)]
    fit = fit_map_with_evidence(logliks, fem, S, (0.01, 0.1, 1.0), (1.0, 100.0, 1e4),
                                where="test", noise_ars=candidates)
    noise = fit.hyperparameter_selection["NoiseAR"]
    assert fit.candidate == 2 and noise["Selected"] == 0.1
    assert noise["Candidates"] == candidates and int(np.argmax(noise["LogEvidence"])) == 2
    assert (noise["Kappa"][2], noise["Tau2"][2]) == (fit.kappa, fit.tau2)
    assert "at least as autocorrelated" in caplog.text


def test_sidecars_name_inputs_without_absolute_paths_and_mem_bounds_workers(dataset, tmp_path):
    """Mesh and Sources are bids: URIs, DatasetLinks a path relative to OUTPUT_DIR; --mem
    below two workers' estimate runs one, and the log says so."""
    out = tmp_path / "out"
    assert run(dataset, out, "--bootstrap", "single", "--n-boot", "2", "--nprocs", "2",
               "--mem", "1000") == 0
    description = json.loads((out / "dataset_description.json").read_text())
    link = description["DatasetLinks"]["fmriprep"]
    assert not Path(link).is_absolute() and (out / link).resolve() == dataset.resolve()
    assert description["SourceDatasets"] == [{"URL": "bids:fmriprep:"}]
    sidecar = json.loads(next(out.rglob("*_stat-estimate_boldmap.json")).read_text())
    dataset_name, _, inside = sidecar["Mesh"].removeprefix("bids:").partition(":")
    assert dataset_name == "fmriprep" and inside.startswith("sub-01/anat/")
    assert inside.endswith("_midthickness.surf.gii") and (out / link / inside).is_file()
    texts = [p.read_text() for p in out.rglob("*.json") if "logs" not in p.parts]
    assert texts and not any(str(tmp_path) in text for text in texts)
    log = next((out / "logs").glob("hemocoupling_*.log")).read_text()
    assert "--mem 1000 MB: 1 worker process(es)" in log
    # The BIDS validator accepts the derivatives dataset (relative links, bids: URLs).
    done = subprocess.run([validator_command(), str(out), "--format", "json"],
                          capture_output=True, text=True, check=False)
    issues = json.loads(done.stdout)["issues"]["issues"]
    assert [i for i in issues if i["severity"] == "error"] == []


@pytest.fixture(scope="module")
def two_subjects(tmp_path_factory) -> Path:
    """Two subjects on the 642-vertex sphere; sub-01 has no repetition time anywhere."""
    mesh = icosphere(3, radius_mm=50.0)
    root = tmp_path_factory.mktemp("two") / "fmriprep"
    simulate_dataset(root, DatasetSpec(n_subjects=2, n_frames=200, tr=1.0, seed=4),
                     meshes={"L": mesh, "R": mesh})
    _drop_repetition_time(root / FUNC.format(hemi="{hemi}"))
    return root


def _drop_repetition_time(stem_pattern: Path) -> None:
    for hemi in "LR":
        stem = str(stem_pattern).format(hemi=hemi)
        Path(f"{stem}.json").unlink()
        image = nib.load(f"{stem}.func.gii")
        arrays = [GiftiDataArray(a.data, intent=a.intent) for a in image.darrays]
        nib.save(GiftiImage(darrays=arrays), f"{stem}.func.gii")


@pytest.mark.parametrize("stop", [False, True])
def test_a_failing_participant_stops_the_run_only_with_stop_on_first_crash(two_subjects,
                                                                           tmp_path, stop):
    out = tmp_path / "out"
    extra = ["--stop-on-first-crash"] if stop else []
    assert run(two_subjects, out, *extra) == 66  # sub-01's failure decides the exit code
    assert not list(out.glob("sub-01/func/*_boldmap.*"))
    assert bool(list(out.glob("sub-02/func/*_boldmap.*"))) is not stop


def test_raw_bids_dir_is_validated_unless_skipped(dataset, make_raw, tmp_path, capsys):
    raw = make_raw(tmp_path / "raw")
    (raw / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz").write_bytes(b"")
    out = tmp_path / "out"
    args = [str(raw), str(out), "participant", "-w", str(tmp_path / "work"), "--bootstrap",
            "none", "--no-report", "--kappa", "0.05", "--tau2", "100", "--derivatives",
            f"fmriprep={dataset}"]
    assert main(args) == 16
    assert "sub-01_task-rest_bold.nii.gz" in one_line_error(capsys)
    assert "EMPTY_FILE" in next((out / "logs").glob("hemocoupling_*.log")).read_text()
    assert maps_in(out) == []
    assert main([*args, "--skip-bids-validation"]) == 0
    links = json.loads((out / "dataset_description.json").read_text())["DatasetLinks"]
    assert (out / links["raw"]).resolve() == raw.resolve()
