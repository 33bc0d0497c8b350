"""Group level on participant outputs written by the derivatives writer."""

from __future__ import annotations

import json
import logging
import warnings

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
from bids_app.report.group import write_group_report
from bids_app.workflows.group import group_level, log_report_warnings
from bids_app.workflows.group.participant_maps import subject_maps

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
    no_se = "; no theta SE or interval maps (no bootstrap): not in the random-effects maps"
    assert table.loc["sub-01", "reason"] == "combined map" + no_se
    assert table.loc["sub-03", "reason"] == "mean of 2 per-run maps (no combined map)" + no_se
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
    # 2 params x mean/SD/N + 2 population modes of theta (3 participants; no SE, so no
    # random-effects maps)
    assert html.count("data:image/svg+xml;base64,") == 8
    assert "sub-04" in html and "no theta map for hemi-R" in html
    assert str(root) not in html  # a shared report does not reveal where it was made
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
    with pytest.raises(NothingSelectedError, match="participant-label 99"):
        group_level(root, participants=["99"], report=False)
    with pytest.raises(NothingSelectedError):
        group_level(root, space="fsaverage5", report=False)
    with pytest.raises(MissingInputError, match="participant level first"):
        group_level(tmp_path_factory.mktemp("empty"))


def test_group_label_matching_nobody_exits_18_and_makes_no_work_folder(study, tmp_path_factory):
    from bids_app.cli.run import main

    root, _ = study
    elsewhere = tmp_path_factory.mktemp("group_cli")
    (elsewhere / "bids").mkdir()
    work = elsewhere / "work"
    assert main([str(elsewhere / "bids"), str(root), "group", "-w", str(work),
                 "--participant-label", "99", "--no-report"]) == 18
    assert not work.exists()


def test_group_label_list_with_an_unknown_label_exits_18(study, tmp_path_factory):
    from bids_app.cli.run import main

    root, _ = study
    elsewhere = tmp_path_factory.mktemp("group_cli_mixed")
    (elsewhere / "bids").mkdir()
    work = elsewhere / "work"
    known = sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())[0]
    assert main([str(elsewhere / "bids"), str(root), "group", "-w", str(work),
                 "--participant-label", known, "99", "--no-report"]) == 18
    assert not work.exists()


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


# --------------------------------------------------------------------------- group model


def _meta(identified=True, qc_pass=True):
    ident = {"Identified": identified, "RegionalInformationFraction": 0.9 if identified else 0.3}
    qc = {"Pass": qc_pass, "Reasons": [] if qc_pass else ["tSNR 12 below 20"], "Checks": {}}
    return FitMetadata(
        surrogate=META.surrogate, kappa=1e-2, tau2=1e2, log_evidence=-3.0,
        convergence={"Converged": True}, random_seed=0, sources=META.sources,
        bootstrap={"Mode": "double"},
        identifiability={"theta": ident, "timetopeak": ident},
        extra={"QualityControl": {"L": qc, "R": qc}},
    )


def _with_intervals(theta_latent: np.ndarray, se_latent: np.ndarray) -> dict[str, StatArrays]:
    """θ maps whose 95% interval is the latent normal interval mapped to θ."""
    from bids_app.group.latent import Z975, to_natural

    theta = to_natural("1p", "theta", theta_latent)
    lower = to_natural("1p", "theta", theta_latent - Z975 * se_latent)
    upper = to_natural("1p", "theta", theta_latent + Z975 * se_latent)
    return {
        "theta": StatArrays(theta, (upper - lower) / (2 * Z975), lower, upper),
        "timetopeak": StatArrays(5 / theta, None, 5 / upper, 5 / lower),
    }


@pytest.fixture
def model_study(tmp_path):
    """Six participants with intervals; sub-05 fails quality control, sub-06 is weakly
    identified; participants.tsv has age (with a copy ``age2``) and sex."""
    rng = np.random.default_rng(3)
    out, bids = tmp_path / "out", tmp_path / "bids"
    bids.mkdir()
    truth = {}
    for k, sub in enumerate(["01", "02", "03", "04", "05", "06"]):
        meta = _meta(identified=sub != "06", qc_pass=sub != "05")
        truth[sub] = {}
        for hemi in "LR":
            latent = -0.5 + 0.02 * (20 + 5 * k) + rng.normal(0, 0.1, N)
            se = rng.uniform(0.05, 0.2, N)
            truth[sub][hemi] = (latent, se)
            ents = {"sub": sub, "task": "rest", "hemi": hemi, "space": "tiny"}
            write_parameter_maps(out, ParameterMaps(ents, "1p", _with_intervals(latent, se), meta))
        finish(out, sub)
    ages = [20 + 5 * k for k in range(6)]
    pd.DataFrame({
        "participant_id": [f"sub-0{k + 1}" for k in range(6)],
        "age": ages, "age2": [2 * a for a in ages], "sex": list("FMFMFM"),
    }).to_csv(bids / "participants.tsv", sep="\t", index=False)
    return bids, out, truth


def _run(bids, out, *extra):
    from bids_app.cli.run import main

    return main([str(bids), str(out), "group", "-w", str(out.parent / "work"), "--no-report",
                 *extra])


def test_random_effects_maps_match_the_model_and_flagged_are_excluded(model_study):
    from bids_app.group.random_effects import random_effects

    bids, out, truth = model_study
    assert _run(bids, out) == 0
    table = pd.read_csv(out / "group_participants.tsv", sep="\t").set_index("participant_id")
    assert list(table["status"]) == ["included"] * 4 + ["excluded"] * 2
    assert "failed quality control in hemi-L (tSNR 12 below 20)" in table.loc["sub-05", "reason"]
    assert "theta weakly identified" in table.loc["sub-06", "reason"]
    assert table.loc["sub-06", "identifiability"] == pytest.approx(0.3)
    for hemi in "LR":
        y = np.stack([truth[s][hemi][0] for s in ("01", "02", "03", "04")])
        v = np.stack([truth[s][hemi][1] for s in ("01", "02", "03", "04")]) ** 2
        first = random_effects(y, v, np.ones((4, 1)))
        both = np.concatenate([random_effects(
            np.stack([truth[s][h][0] for s in ("01", "02", "03", "04")]),
            np.stack([truth[s][h][1] for s in ("01", "02", "03", "04")]) ** 2,
            np.ones((4, 1))).tau2 for h in "LR"])  # the median is over both hemispheres
        fit = random_effects(y, v, np.ones((4, 1)), 0.5 * first.tau2 + 0.5 * np.median(both))
        stem = f"task-rest_hemi-{hemi}_space-tiny_desc-mean_param-theta_stat-"
        effect = read_map(out / f"{stem}effect_boldmap.func.gii")
        from bids_app.group.latent import to_natural

        np.testing.assert_allclose(effect.values, to_natural("1p", "theta", fit.beta[0]),
                                   rtol=1e-4)
        assert effect.metadata["GroupModel"]["Formula"] == "1"
        between = read_map(out / f"task-rest_hemi-{hemi}_space-tiny_desc-re_param-theta_"
                                 "stat-betweensd_boldmap.func.gii")
        assert np.isfinite(between.values).all() and (between.values >= 0).all()
        ttp = read_map(out / f"task-rest_hemi-{hemi}_space-tiny_desc-mean_param-timetopeak_"
                             "stat-effect_boldmap.func.gii")
        np.testing.assert_allclose(ttp.values, 5 / effect.values, rtol=1e-4)
    scores = pd.read_csv(out / "task-rest_space-tiny_desc-modes_param-theta_boldmodes.tsv",
                         sep="\t")
    assert list(scores["participant_id"]) == ["sub-01", "sub-02", "sub-03", "sub-04"]
    assert "*_boldmodes.tsv" in (out / ".bidsignore").read_text()
    html = write_group_report(out, meshes=lambda s, h: sphere_mesh()).read_text()
    assert "Random-effects model <code>1</code>" in html
    assert "Lowest regional information fraction of each participant" in html  # histogram
    assert "theta mean effect" in html and "theta re betweensd" in html
    assert "sub-05" in html and "failed quality control" in html

    assert _run(bids, out, "--include-flagged", "--group-model", "~ age",
                "--contrast", "age=2") == 0
    table = pd.read_csv(out / "group_participants.tsv", sep="\t").set_index("participant_id")
    assert (table["status"] == "included").all() and "flagged" in table.loc["sub-05", "reason"]
    stem = "task-rest_hemi-L_space-tiny_desc-{}_param-theta_stat-{}_boldmap.func.gii"
    age_z = read_map(out / stem.format("age", "z"))
    contrast_z = read_map(out / stem.format("contrast", "z"))
    np.testing.assert_allclose(contrast_z.values, age_z.values, rtol=1e-4)
    # latent mean rises 0.02 per year: in θ at the average participant (age 32.5) that is
    # 0.02 · dθ/dθ̃(−0.5 + 0.02 · 32.5); t with 4 df gives a modest z
    from bids_app.group.latent import slope_factor

    age_effect = read_map(out / stem.format("age", "effect")).values
    expected = 0.02 * slope_factor("1p", "theta", np.array(-0.5 + 0.02 * 32.5))
    assert np.median(age_effect) == pytest.approx(expected, rel=0.2)
    assert np.median(age_z.values) > 1.5
    assert age_z.metadata["GroupModel"]["Columns"] == ["Intercept", "age"]


def test_group_sidecars_name_participants_tsv_without_its_absolute_path(model_study):
    bids, out, _ = model_study
    table = pd.read_csv(bids / "participants.tsv", sep="\t")
    table[table["participant_id"] != "sub-04"].to_csv(bids / "participants.tsv", sep="\t",
                                                      index=False)
    assert _run(bids, out, "--group-model", "~ age") == 0
    effect = read_map(out / "task-rest_hemi-L_space-tiny_desc-age_param-theta_stat-effect_"
                            "boldmap.func.gii")
    assert effect.metadata["GroupModel"]["LeftOut"] == {"sub-04": "not listed in "
                                                                  "participants.tsv"}
    assert not [p for p in out.glob("*.json") if str(bids.parent) in p.read_text()]


def test_group_model_errors_exit_16(model_study, capsys):
    bids, out, _ = model_study
    assert _run(bids, out, "--group-model", "~ age + weight") == 16
    assert "has no column weight used by --group-model" in capsys.readouterr().err
    assert _run(bids, out, "--group-model", "~ age + age2") == 16
    assert "is rank-deficient over the 4 participants" in capsys.readouterr().err


def test_all_excluded_exits_18_and_lists_why(model_study, capsys):
    bids, out, _ = model_study
    assert _run(bids, out, "--participant-label", "05", "06") == 18
    assert "no participant could be included" in capsys.readouterr().err
    table = pd.read_csv(out / "group_participants.tsv", sep="\t")
    assert list(table["status"]) == ["excluded", "excluded"]


def test_one_participant_gives_its_own_map(model_study, capsys):
    bids, out, truth = model_study
    assert _run(bids, out, "--participant-label", "02") == 0
    assert "1 participant(s) for 1 design column(s): the between-participant SD is not " \
        "estimable" in capsys.readouterr().err
    stem = "task-rest_hemi-R_space-tiny_desc-{}_param-theta_stat-{}_boldmap.func.gii"
    between = read_map(out / stem.format("re", "betweensd"))
    assert np.isnan(between.values).all()
    se = read_map(out / stem.format("mean", "se"))
    from bids_app.group.latent import slope_factor

    latent, se_latent = truth["02"]["R"]
    np.testing.assert_allclose(se.values, se_latent * slope_factor("1p", "theta", latent),
                               rtol=1e-4)


def test_fsnative_only_participants_get_an_error_naming_space(tmp_path, capsys):
    bids, out = tmp_path / "bids", tmp_path / "out"
    bids.mkdir()
    _write(out, "01", {"L": np.full(N, 1.2), "R": np.full(N, 1.1)}, space="fsnative")
    assert _run(bids, out) == 16
    err = capsys.readouterr().err
    assert "sub-01" in err and "fsnative" in err and "--space" in err and err.count("\n") == 1


def test_sessions_give_test_retest_maps(tmp_path):
    rng = np.random.default_rng(8)
    for sub in ("01", "02", "03", "04", "05"):
        level = rng.uniform(0.9, 1.5)
        for ses in ("A", "B"):
            for hemi in "LR":
                theta = level + rng.normal(0, 0.02, N)
                ents = {"sub": sub, "ses": ses, "task": "rest", "hemi": hemi, "space": "tiny"}
                maps = ParameterMaps(ents, "1p", _with_intervals(
                    np.full(N, 0.0) + (theta - 1.0), np.full(N, 0.05)), META)
                write_parameter_maps(tmp_path, maps)
        finish(tmp_path, sub)
    atlas = {h: (np.repeat([1, 2], N // 2), {1: "front", 2: "back"}) for h in "LR"}
    group_level(tmp_path, parcellations={"toy": atlas}, report=False)
    stem = "task-rest_hemi-L_space-tiny_desc-retest_param-theta_stat-{}_boldmap.func.gii"
    icc = read_map(tmp_path / stem.format("icc"))
    assert np.median(icc.values) > 0.9 and icc.metadata["Repeats"] == 2
    assert (read_map(tmp_path / stem.format("n")).values == 5).all()
    parcels = pd.read_csv(tmp_path / "task-rest_space-tiny_seg-toy_desc-retest_boldparcels.tsv",
                          sep="\t")
    assert len(parcels) == 8 and (parcels["icc"] > 0.9).all()  # 2 hemis x 2 parcels x 2 params


def test_dask_cluster_writes_the_same_files(model_study, dask_scheduler):
    import shutil

    from distributed import Client

    bids, out, _ = model_study
    on_cluster = out.parent / "out-dask"
    shutil.copytree(out, on_cluster)
    model = ("--group-model", "~ age + sex", "--contrast", "age=2", "--include-flagged")
    assert _run(bids, out, *model) == 0
    assert _run(bids, on_cluster, *model, "--dask-scheduler", dask_scheduler) == 0
    with Client(dask_scheduler) as client:  # the vertex blocks did run there
        ran = client.run_on_scheduler(lambda dask_scheduler: set(dask_scheduler.task_prefixes))
    assert {"tau2_task", "random_effects_task", "stats_task"} <= ran
    written = sorted(p.name for p in out.iterdir() if p.is_file())
    assert any("desc-age_param-theta_stat-q" in name for name in written)
    assert written == sorted(p.name for p in on_cluster.iterdir() if p.is_file())
    for name in written:
        assert (out / name).read_bytes() == (on_cluster / name).read_bytes(), name


def test_a_warning_the_report_repeats_is_logged_once_with_its_count(caplog):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            np.nanmax(np.full(4, np.nan))  # numpy's "All-NaN slice encountered"
        warnings.warn("another", UserWarning, stacklevel=1)
    with caplog.at_level(logging.INFO, logger="bids_app.workflows.group"):
        log_report_warnings(caught)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["group report: RuntimeWarning: All-NaN slice encountered (3 times)",
                     "group report: UserWarning: another"]
