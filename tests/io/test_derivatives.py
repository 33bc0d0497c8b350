"""Derivative names, GIFTI/CIFTI map round trips, sidecars and the dataset-level files."""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nilearn.surface import load_surf_data

from bids_app import __version__
from bids_app.errors import InputValidationError, OutputError
from bids_app.io import dataset_description as dd
from bids_app.io.derivatives import (
    FitMetadata,
    ParameterMaps,
    StatArrays,
    bids_uri,
    cortex_models,
    derivative_name,
    find_maps,
    map_path,
    merge_hemispheres,
    parse_name,
    read_map,
    sidecar_path,
    split_hemispheres,
    write_parameter_maps,
)
from bids_app.models import DERIVED_UNITS

DOCUMENTED_KEYS = {
    "Units",
    "Description",
    "Model",
    "Surrogate",
    "Kappa",
    "Tau2",
    "LogEvidence",
    "Convergence",
    "Bootstrap",
    "CalibrationCheck",
    "Identifiability",
    "RandomSeed",
    "Sources",
    "SoftwareVersion",
}


def _metadata(bootstrap: bool = True) -> FitMetadata:
    return FitMetadata(
        surrogate={"Id": "1p-test", "Sha256": "ab" * 32},
        kappa=1e-3,
        tau2=np.float64(1e3),
        log_evidence=-1234.5,
        convergence={"Converged": True, "Iterations": 3, "GradientNorm": [1.0, 0.1, 1e-6]},
        random_seed=7,
        sources=[
            "bids:fmriprep:sub-01/func/sub-01_task-rest_hemi-L_space-fsaverage5_bold.func.gii"
        ],
        bootstrap=(
            {
                "Mode": "double",
                "B": 20,
                "R": 5,
                "BlockLengthSeconds": 72.0,
                "CalibratedAlpha": 0.031,
            }
            if bootstrap
            else {"Mode": "none"}
        ),
        calibration_check={"Passed": True},
        identifiability={"theta": {"Identified": True}, "timetopeak": {"Identified": True}},
        evidence_grid={"Kappa": [1e-3, 1e-2], "Tau2": [1e2, 1e3], "LogEvidence": [[1, 2], [3, 4]]},
        hyperparameter_selection={"Method": "Laplace evidence grid",
                                  "OnGridBoundary": {"kappa": "upper", "tau2": "upper"},
                                  "LogEvidenceGap": 1.0},
    )


def _stats(rng: np.random.Generator, n: int, nan: np.ndarray, bootstrap: bool) -> StatArrays:
    est = rng.uniform(0.6, 2.0, n)
    est[nan] = np.nan
    if not bootstrap:
        return StatArrays(estimate=est)
    se = np.full(n, 0.1)
    se[nan] = np.nan
    return StatArrays(estimate=est, se=se, cilower=est - 0.2, ciupper=est + 0.2)


def _one_param(rng, n, nan, bootstrap=True) -> dict[str, StatArrays]:
    theta = _stats(rng, n, nan, bootstrap)
    ttp = StatArrays(
        *(None if a is None else 5.0 / a for a in (theta.estimate, theta.se, None, None))
    )
    ttp.cilower = None if theta.ciupper is None else 5.0 / theta.ciupper
    ttp.ciupper = None if theta.cilower is None else 5.0 / theta.cilower
    return {"theta": theta, "timetopeak": ttp}


ENTS = {
    "subject": "01",
    "session": "A",
    "task": "rest",
    "run": "1",
    "hemi": "L",
    "space": "fsaverage5",
    "extension": ".func.gii",
    "suffix": "bold",
}


def test_names_follow_entity_order_and_parse_back():
    unordered = {"hemi": "L", "param": "timetopeak", "sub": "01", "stat": "estimate"}
    name = derivative_name(unordered | {"space": "fsaverage5", "task": "rest"})
    assert name == (
        "sub-01_task-rest_hemi-L_space-fsaverage5_param-timetopeak_stat-estimate_boldmap.func.gii"
    )
    path = map_path("/out", ENTS, "theta", "se", ".dscalar.nii")
    assert path == Path(
        "/out/sub-01/ses-A/func/"
        "sub-01_ses-A_task-rest_run-1_hemi-L_space-fsaverage5_param-theta_stat-se_boldmap.dscalar.nii"
    )
    entities, suffix, ext = parse_name(path.name)
    assert entities["param"] == "theta" and entities["run"] == "1"
    assert (suffix, ext) == ("boldmap", ".dscalar.nii")
    assert sidecar_path(path).name.endswith("_stat-se_boldmap.json")
    # group outputs have no subject and live at the root
    group = map_path("/out", {"space": "fsLR", "den": "32k", "hemi": "R"}, "theta", "mean")
    assert group == Path("/out/hemi-R_space-fsLR_den-32k_param-theta_stat-mean_boldmap.func.gii")


def test_bids_uri(tmp_path):
    f = tmp_path / "sub-01" / "func" / "x_bold.func.gii"
    assert bids_uri(f, tmp_path) == "bids:fmriprep:sub-01/func/x_bold.func.gii"


def test_gifti_round_trip_with_nan_and_sidecar(tmp_path):
    rng = np.random.default_rng(0)
    n = 50
    nan = np.zeros(n, bool)
    nan[:5] = True
    params = _one_param(rng, n, nan)
    maps = ParameterMaps(ENTS, "1p", params, _metadata())
    written = write_parameter_maps(tmp_path, maps)
    assert len(written) == 8
    for path in written:
        entities, _, _ = parse_name(path.name)
        expected = getattr(params[entities["param"]], entities["stat"])
        got = load_surf_data(str(path))
        np.testing.assert_allclose(got, expected.astype(np.float32), equal_nan=True)
        assert np.isnan(got[:5]).all()
        loaded = read_map(path)
        assert loaded.brain_models is None
        side = loaded.metadata
        assert DOCUMENTED_KEYS <= set(side)
        assert side["Units"] == DERIVED_UNITS["1p"][entities["param"]]
        assert side["SoftwareVersion"] == __version__
        assert side["Bootstrap"]["B"] == 20
        assert side["Surrogate"]["Sha256"] == "ab" * 32
        assert side["Identifiability"] == {"Identified": True}
        assert side["HyperparameterSelection"]["OnGridBoundary"] == {"kappa": "upper",
                                                                      "tau2": "upper"}
        assert side["HyperparameterSelection"]["LogEvidenceGap"] == 1.0
        if entities["stat"] == "cilower":
            assert "double-bootstrap calibrated 95%" in side["Description"]
        img = nib.load(path)
        assert img.meta["AnatomicalStructurePrimary"] == "CortexLeft"
    found = find_maps(tmp_path, "01")
    assert sorted(f.path for f in found) == sorted(written)
    assert len({f.fit_key for f in found}) == 1 and find_maps(tmp_path, "02") == []
    # nothing but maps and sidecars in the folder: no temporary files
    names = os.listdir(written[0].parent)
    assert len(names) == 16 and not any(n.startswith(".") for n in names)


def test_no_bootstrap_writes_estimates_only(tmp_path):
    rng = np.random.default_rng(1)
    nan = np.zeros(10, bool)
    maps = ParameterMaps(ENTS, "1p", _one_param(rng, 10, nan, False), _metadata(False))
    written = write_parameter_maps(tmp_path, maps)
    assert sorted(parse_name(p.name)[0]["stat"] for p in written) == ["estimate", "estimate"]
    assert read_map(written[0]).metadata["Bootstrap"] == {"Mode": "none"}


def test_cifti_round_trip_both_hemispheres(tmp_path):
    rng = np.random.default_rng(2)
    n = 40
    masks = {h: np.ones(n, bool) for h in "LR"}
    masks["L"][:6] = False  # medial wall: absent from the file
    masks["R"][-4:] = False
    axis = nib.cifti2.BrainModelAxis.from_mask(
        masks["L"], name="CortexLeft"
    ) + nib.cifti2.BrainModelAxis.from_mask(masks["R"], name="CortexRight")
    per_hemi = {h: _one_param(rng, n, ~masks[h]) for h in "LR"}
    merged = merge_hemispheres(per_hemi["L"], per_hemi["R"], axis)
    assert merged["theta"].estimate.shape == (n - 6 + n - 4,)
    assert not np.isnan(merged["theta"].estimate).any()
    ents = {k: v for k, v in ENTS.items() if k != "hemi"} | {"space": "fsLR", "density": "91k"}
    maps = ParameterMaps(ents, "1p", merged, _metadata(), brain_models=axis)
    written = write_parameter_maps(tmp_path, maps)
    assert len(written) == 8
    assert all("_space-fsLR_den-91k_param-" in p.name for p in written)
    assert all(p.name.endswith("_boldmap.dscalar.nii") for p in written)
    loaded = read_map(map_path(tmp_path, ents, "theta", "estimate", ".dscalar.nii"))
    assert loaded.brain_models == axis
    np.testing.assert_allclose(loaded.values, merged["theta"].estimate, rtol=1e-6)
    split = split_hemispheres(loaded.values, loaded.brain_models)
    for hemi in "LR":
        expected = np.where(masks[hemi], per_hemi[hemi]["theta"].estimate, np.nan)
        np.testing.assert_allclose(split[hemi], expected, rtol=1e-6)


def test_cortex_models_drop_subcortex():
    cortex = nib.cifti2.BrainModelAxis.from_mask(np.ones(5, bool), name="CortexLeft")
    vox = nib.cifti2.BrainModelAxis.from_mask(
        np.ones((2, 1, 1), bool), name="thalamus_left", affine=np.eye(4)
    )
    assert len(cortex_models(cortex + vox)) == 5


def test_parameter_maps_validate_inputs():
    rng = np.random.default_rng(3)
    good = _one_param(rng, 10, np.zeros(10, bool))
    with pytest.raises(ValueError, match="reports"):
        ParameterMaps(ENTS, "2p", good, _metadata())
    with pytest.raises(ValueError, match="hemi"):
        ParameterMaps({"sub": "01", "space": "fsaverage5"}, "1p", good, _metadata())
    bad = dict(good)
    bad["theta"] = StatArrays(estimate=np.zeros(9))
    with pytest.raises(ValueError, match="one length"):
        ParameterMaps(ENTS, "1p", bad, _metadata())


def test_unwritable_output_raises_output_error(tmp_path):
    blocker = tmp_path / "a_file"  # a folder cannot be created under a file, even by root
    blocker.write_text("")
    rng = np.random.default_rng(4)
    maps = ParameterMaps(ENTS, "1p", _one_param(rng, 5, np.zeros(5, bool)), _metadata())
    with pytest.raises(OutputError, match="writable"):
        write_parameter_maps(blocker / "out", maps)
    with pytest.raises(OutputError, match="writable"):
        dd.write_dataset_description(blocker / "out")


# --------------------------------------------------------------------------- dataset files


def _describe(args: tuple[str, int]) -> str:
    output_dir, i = args
    dd.write_dataset_description(output_dir, {"fmriprep": f"/data/fmriprep{i % 2}"})
    dd.write_bidsignore(output_dir)
    return (Path(output_dir) / "dataset_description.json").read_text()


def test_concurrent_dataset_description_writers(tmp_path):
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        texts = pool.map(_describe, [(str(tmp_path), i) for i in range(8)])
    for text in texts:  # every process saw a whole, valid file
        json.loads(text)
    final = json.loads((tmp_path / "dataset_description.json").read_text())
    assert final["DatasetType"] == "derivative"
    generated = dict(final["GeneratedBy"][0])
    assert generated.pop("Container", None) == dd.detect_container()  # this machine's
    assert dd.python_environment() in generated.pop("Description")
    assert generated == {"Name": "hemocoupling", "Version": __version__, "CodeURL": dd.CODE_URL}
    assert set(final["DatasetLinks"]) == {"fmriprep"}
    assert final["SourceDatasets"] == [{"URL": "bids:fmriprep:"}]
    assert sorted(os.listdir(tmp_path)) == [".bidsignore", "dataset_description.json"]
    ignore = (tmp_path / ".bidsignore").read_text().splitlines()
    assert ignore == list(dd.BIDSIGNORE_PATTERNS)


def test_dataset_description_merges_links_and_refuses_foreign(tmp_path):
    dd.write_dataset_description(tmp_path, container={"Type": "docker", "Tag": "x:1"})
    first = json.loads((tmp_path / "dataset_description.json").read_text())
    assert first["GeneratedBy"][0]["Container"] == {"Type": "docker", "Tag": "x:1"}
    assert "DatasetLinks" not in first
    dd.write_dataset_description(tmp_path, {"fmriprep": tmp_path.parent / "in"})
    merged = json.loads((tmp_path / "dataset_description.json").read_text())
    assert merged["DatasetLinks"] == {"fmriprep": "../in"}  # relative: moves with the data
    assert merged["SourceDatasets"] == [{"URL": "bids:fmriprep:"}]
    dd.write_dataset_description(tmp_path, {"fmriprep": "/elsewhere", "raw": tmp_path / "raw"})
    merged = json.loads((tmp_path / "dataset_description.json").read_text())
    assert merged["DatasetLinks"] == {"fmriprep": "../in", "raw": "raw"}
    assert merged["SourceDatasets"] == [{"URL": "bids:fmriprep:"}, {"URL": "bids:raw:"}]
    other = tmp_path / "other"
    other.mkdir()
    (other / "dataset_description.json").write_text('{"Name": "x", "DatasetType": "raw"}')
    with pytest.raises(OutputError, match="another dataset"):
        dd.write_dataset_description(other)
    (other / "dataset_description.json").write_text("{broken")
    with pytest.raises(OutputError, match="not valid JSON"):
        dd.write_dataset_description(other)


def test_detect_container(tmp_path):
    assert dd.detect_container({}, tmp_path) is None
    sif = {"APPTAINER_CONTAINER": "/images/hemocoupling.sif"}
    assert dd.detect_container(sif, tmp_path) == {"Type": "apptainer",
                                                  "URI": "file:///images/hemocoupling.sif"}
    image = {dd.IMAGE_VARIABLE: f"hemocoupling/hemocoupling:{__version__}"}
    assert dd.detect_container({**sif, **image}, tmp_path)["Tag"] == image[dd.IMAGE_VARIABLE]
    # The project's image run by an engine that leaves no marker (Podman, read-only root).
    assert dd.detect_container(image, tmp_path) == {"Type": "docker",
                                                    "Tag": image[dd.IMAGE_VARIABLE]}
    (tmp_path / ".dockerenv").write_text("")
    # A venv inside some other image: the engine is known, the image is not.
    assert dd.detect_container({}, tmp_path) == {"Type": "docker"}
    assert dd.detect_container(image, tmp_path) == {"Type": "docker",
                                                    "Tag": image[dd.IMAGE_VARIABLE]}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".containerenv").write_text(
        'engine="podman-5.0"\nimage="docker.io/hemocoupling/hemocoupling:0.1.0"\n')
    assert dd.detect_container({}, tmp_path) == {
        "Type": "podman", "Tag": "docker.io/hemocoupling/hemocoupling:0.1.0"}
    (tmp_path / "run" / ".containerenv").write_text("")  # rootless: no image name
    assert dd.detect_container(image, tmp_path)["Tag"] == image[dd.IMAGE_VARIABLE]


def test_description_outside_a_container_records_the_python_environment(tmp_path):
    dd.write_dataset_description(tmp_path, container={})
    generated = json.loads((tmp_path / "dataset_description.json").read_text())["GeneratedBy"]
    assert "Container" not in generated[0]
    assert generated[0]["Description"].startswith(f"hemocoupling {__version__} run outside a "
                                                  "container, ")
    assert platform.python_version() in generated[0]["Description"]


def test_bidsignore_keeps_user_lines(tmp_path):
    (tmp_path / ".bidsignore").write_text("mine/\n")
    dd.write_bidsignore(tmp_path, extra=["*_desc-deconvolved_bold.func.gii"])
    dd.write_bidsignore(tmp_path)
    lines = (tmp_path / ".bidsignore").read_text().splitlines()
    assert lines[0] == "mine/" and lines.count("*_boldmap.*") == 1
    assert "*_desc-deconvolved_bold.func.gii" in lines


def test_finished_records(tmp_path):
    out = tmp_path / "sub-01" / "func" / "a_boldmap.func.gii"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"x")
    settings = {"model": "1p", "space": ("fsaverage5",)}
    assert not dd.is_finished(tmp_path, "01")
    dd.mark_finished(tmp_path, "01", [out], settings)
    assert dd.is_finished(tmp_path, "01")
    assert dd.is_finished(tmp_path, "01", settings)
    assert not dd.is_finished(tmp_path, "01", {"model": "2p", "space": ("fsaverage5",)})
    out.unlink()  # an output went missing: not finished any more
    assert not dd.is_finished(tmp_path, "01")
    dd.clear_finished(tmp_path, "01")
    assert not dd.finished_path(tmp_path, "01").exists()


def test_bids_uri_keeps_linked_inputs_inside_the_dataset(tmp_path):
    """DataLad-style datasets link files from an annex: the URI names the link's place."""
    annex = tmp_path / "annex" / "blob"
    annex.parent.mkdir()
    annex.write_text("data")
    link = tmp_path / "ds" / "sub-01" / "func" / "sub-01_bold.func.gii"
    link.parent.mkdir(parents=True)
    link.symlink_to(annex)
    assert bids_uri(link, tmp_path / "ds") == "bids:fmriprep:sub-01/func/sub-01_bold.func.gii"
    with pytest.raises(InputValidationError, match="not inside"):
        bids_uri(annex, tmp_path / "ds")
