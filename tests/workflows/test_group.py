"""Group level on participant outputs written by the derivatives writer."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.surface import load_surf_data
from scipy.spatial import ConvexHull

from bids_app.errors import MissingInputError, NothingSelectedError
from bids_app.io.dataset_description import mark_finished
from bids_app.io.derivatives import (
    FitMetadata,
    ParameterMaps,
    StatArrays,
    find_maps,
    merge_hemispheres,
    read_map,
    write_parameter_maps,
)
from bids_app.workflows.group import group_level, subject_maps, vertex_stats

N = 80


def sphere_mesh(n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """A small closed triangle mesh (Fibonacci points on a 50 mm sphere)."""
    i = np.arange(n) + 0.5
    polar, azimuth = np.arccos(1 - 2 * i / n), np.pi * (1 + 5**0.5) * i
    unit = np.column_stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)]
    )
    return 50.0 * unit, ConvexHull(unit).simplices


META = FitMetadata(
    surrogate={"Id": "1p-demo", "Sha256": "ef" * 32},
    kappa=1e-2,
    tau2=1e2,
    log_evidence=-3.0,
    convergence={"Converged": True},
    random_seed=0,
    sources=["bids:fmriprep:sub-01/func/x_bold.func.gii"],
)


def _theta_maps(theta: np.ndarray) -> dict[str, StatArrays]:
    return {"theta": StatArrays(theta), "timetopeak": StatArrays(5.0 / theta)}


def _write(root, sub, theta_by_hemi, run=None, space="tiny"):
    paths = []
    for hemi, theta in theta_by_hemi.items():
        ents = {"sub": sub, "task": "rest", "run": run, "hemi": hemi, "space": space}
        paths += write_parameter_maps(root, ParameterMaps(ents, "1p", _theta_maps(theta), META))
    finish(root, sub)
    return paths


def finish(root, sub):
    """The finished record the participant level writes last, over all the subject's maps."""
    mark_finished(root, sub, [item.path for item in find_maps(root, sub)])


@pytest.fixture
def study(tmp_path):
    """Four participants: combined maps, per-run only, one with a hemisphere missing."""
    rng = np.random.default_rng(0)
    truth = {}
    for sub in ("01", "02"):
        truth[sub] = {h: rng.uniform(0.8, 1.6, N) for h in "LR"}
        truth[sub]["L"][:3] = np.nan  # not estimated there
        _write(tmp_path, sub, {h: rng.uniform(0.8, 1.6, N) for h in "LR"}, run="1")  # ignored
        paths = _write(tmp_path, sub, truth[sub])  # combined over runs: preferred
        mark_finished(tmp_path, sub, paths)
    runs = [{h: rng.uniform(0.8, 1.6, N) for h in "LR"} for _ in range(2)]
    for run, theta in enumerate(runs, start=1):
        _write(tmp_path, "03", theta, run=str(run))
    truth["03"] = {h: (runs[0][h] + runs[1][h]) / 2 for h in "LR"}
    # time to peak is averaged over runs as reported, not recomputed from the mean rate
    truth["03-timetopeak"] = {h: (5 / runs[0][h] + 5 / runs[1][h]) / 2 for h in "LR"}
    _write(tmp_path, "04", {"L": rng.uniform(0.8, 1.6, N)})
    return tmp_path, truth


@pytest.mark.filterwarnings("ignore:Degrees of freedom:RuntimeWarning")  # numpy's reference SD
def test_group_maps_table_and_report(study):
    root, truth = study
    atlas = {h: (np.repeat([1, 2], N // 2), {1: "front", 2: "back"}) for h in "LR"}
    results = group_level(root, parcellations={"toy": atlas}, meshes=lambda s, h: sphere_mesh())
    assert len(results) == 1 and [m.subject for m in results[0].included] == ["01", "02", "03"]
    for hemi in "LR":
        stack = np.stack([truth[s][hemi] for s in ("01", "02", "03")])
        mean = load_surf_data(
            str(root / f"task-rest_hemi-{hemi}_space-tiny_param-theta_stat-mean_boldmap.func.gii")
        )
        n = load_surf_data(
            str(root / f"task-rest_hemi-{hemi}_space-tiny_param-theta_stat-n_boldmap.func.gii")
        )
        np.testing.assert_allclose(mean, np.nanmean(stack, axis=0), rtol=1e-6)
        np.testing.assert_array_equal(n, np.isfinite(stack).sum(axis=0))
        assert (n[:3] == (1 if hemi == "L" else 3)).all()  # sub-01/02 left out 3 vertices
        sd = read_map(
            root / f"task-rest_hemi-{hemi}_space-tiny_param-timetopeak_stat-sd_boldmap.func.gii"
        )
        ttp = np.stack([5 / truth["01"][hemi], 5 / truth["02"][hemi], truth["03-timetopeak"][hemi]])
        np.testing.assert_allclose(sd.values, np.nanstd(ttp, axis=0, ddof=1), rtol=1e-5)
        assert sd.metadata["Units"] == "s" and sd.metadata["NParticipants"] == 3
    side = json.loads(
        (root / "task-rest_hemi-L_space-tiny_param-theta_stat-n_boldmap.json").read_text()
    )
    assert side["Units"] == "participants" and side["ParcelTables"]
    assert any(s.startswith("bids::sub-03/func/") and "run-2" in s for s in side["Sources"])

    table = pd.read_csv(root / "group_participants.tsv", sep="\t").set_index("participant_id")
    columns = json.loads((root / "group_participants.json").read_text())
    assert set(columns) == {"participant_id", *table.columns}
    assert list(table["status"]) == ["included"] * 3 + ["excluded"]
    assert table.loc["sub-01", "reason"] == "combined map"
    assert table.loc["sub-03", "reason"] == "mean of 2 per-run maps (no combined map)"
    assert table.loc["sub-04", "reason"] == "no theta map for hemi-R"
    assert (table["finished"] == "yes").all()
    both = np.concatenate([truth["02"]["L"], truth["02"]["R"]])
    assert table.loc["sub-02", "theta_median"] == pytest.approx(np.nanmedian(both), rel=1e-5)
    assert np.isnan(table.loc["sub-04", "theta_median"])
    assert columns["timetopeak_median"]["Units"] == "s"

    parcels = pd.read_csv(root / "task-rest_space-tiny_seg-toy_boldparcels.tsv", sep="\t")
    row = parcels.query("participant_id == 'sub-02' and hemi == 'R' and parcel == 'back'")
    assert row["theta_mean"].item() == pytest.approx(truth["02"]["R"][N // 2 :].mean(), rel=1e-5)

    html = (root / "group.html").read_text()
    assert html.count("data:image/png;base64,") == 6  # 2 params x mean/SD/N
    assert "sub-04" in html and "no theta map for hemi-R" in html
    hidden = {p.name for p in root.rglob(".*")}
    assert hidden == {".bidsignore"}  # no temporary files left behind


def test_without_parcellation_the_report_says_so(study):
    root, _ = study
    group_level(root, participants=["01", "02"], parcellations={})
    html = (root / "group.html").read_text()
    assert "per-parcel tables were skipped" in html and "histograms shown" in html
    table = pd.read_csv(root / "group_participants.tsv", sep="\t")
    assert list(table["participant_id"]) == ["sub-01", "sub-02"]


def test_cifti_group(tmp_path):
    rng = np.random.default_rng(1)
    keep = np.ones(N, bool)
    keep[:4] = False
    axis = nib.cifti2.BrainModelAxis.from_mask(keep, name="CortexLeft") + (
        nib.cifti2.BrainModelAxis.from_mask(keep, name="CortexRight")
    )
    thetas = []
    for sub in ("01", "02"):
        theta = {h: rng.uniform(0.8, 1.6, N) for h in "LR"}
        thetas.append(theta)
        merged = merge_hemispheres(_theta_maps(theta["L"]), _theta_maps(theta["R"]), axis)
        ents = {"sub": sub, "task": "rest", "space": "fsLR", "den": "91k"}
        write_parameter_maps(tmp_path, ParameterMaps(ents, "1p", merged, META, axis))
        finish(tmp_path, sub)
    group_level(tmp_path, space="fsLR_den-91k", parcellations={}, report=False)
    mean = read_map(
        tmp_path / "task-rest_space-fsLR_den-91k_param-theta_stat-mean_boldmap.dscalar.nii"
    )
    expected = np.concatenate([(thetas[0][h] + thetas[1][h])[keep] / 2 for h in "LR"])
    np.testing.assert_allclose(mean.values, expected, rtol=1e-6)
    assert len(mean.brain_models) == 2 * (N - 4)


def test_selection_errors(study, tmp_path_factory):
    root, _ = study
    with pytest.raises(NothingSelectedError, match="participant_label"):
        group_level(root, participants=["99"], report=False)
    with pytest.raises(NothingSelectedError):
        group_level(root, space="fsaverage5", report=False)
    with pytest.raises(MissingInputError, match="participant level first"):
        group_level(tmp_path_factory.mktemp("empty"))


def test_vertex_stats_handles_missing_values():
    stack = np.array([[1.0, np.nan, np.nan], [3.0, 2.0, np.nan]])
    stats = vertex_stats(stack)
    np.testing.assert_array_equal(stats["n"], [2, 1, 0])
    np.testing.assert_allclose(stats["mean"], [2, 2, np.nan])
    np.testing.assert_allclose(stats["sd"], [np.sqrt(2), np.nan, np.nan])


def test_two_parameter_model_groups_separately(study):
    root, _ = study
    rng = np.random.default_rng(5)
    for sub in ("01", "02"):
        for hemi in "LR":
            params = {
                "amplitude": StatArrays(rng.uniform(0.5, 1.5, N)),
                "latency": StatArrays(rng.uniform(-1, 1, N)),
            }
            ents = {"sub": sub, "task": "rest", "hemi": hemi, "space": "tiny"}
            write_parameter_maps(root, ParameterMaps(ents, "2p", params, META))
        finish(root, sub)
    results = group_level(root, parcellations={})
    assert sorted(r.key.model for r in results) == ["1p", "2p"]
    latency = read_map(
        root / "task-rest_hemi-R_space-tiny_param-latency_stat-mean_boldmap.func.gii"
    )
    assert latency.metadata["Units"] == "s" and latency.metadata["NParticipants"] == 2
    table = pd.read_csv(root / "group_participants.tsv", sep="\t")
    assert sorted(table.query("model == '2p'")["participant_id"]) == ["sub-01", "sub-02"]
    assert "model-2p" in (root / "group.html").read_text()


def test_subject_maps_prefer_the_most_combined_fit(tmp_path):
    rng = np.random.default_rng(6)
    theta = {label: {h: rng.uniform(0.8, 1.6, N) for h in "LR"} for label in ("A", "B", "all")}
    for ses in ("A", "B"):
        for hemi in "LR":
            ents = {"sub": "01", "ses": ses, "task": "rest", "hemi": hemi, "space": "tiny"}
            maps = ParameterMaps(ents, "1p", _theta_maps(theta[ses][hemi]), META)
            write_parameter_maps(tmp_path, maps)
    files = [f for f in find_maps(tmp_path) if f.entities["stat"] == "estimate"]
    sessions = subject_maps("01", files, tmp_path)
    assert sessions.how == "mean of 2 maps"
    expected = (theta["A"]["L"] + theta["B"]["L"]) / 2
    np.testing.assert_allclose(sessions.values["theta"]["L"], expected, rtol=1e-6)
    _write(tmp_path, "01", theta["all"])  # a map over both sessions
    files = [f for f in find_maps(tmp_path) if f.entities["stat"] == "estimate"]
    overall = subject_maps("01", files, tmp_path)
    assert overall.how == "combined map"
    np.testing.assert_allclose(overall.values["theta"]["R"], theta["all"]["R"], rtol=1e-6)
