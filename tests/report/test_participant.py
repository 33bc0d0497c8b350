"""The participant report renders from maps written by the derivatives writer."""

from __future__ import annotations

import base64
import re

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial import ConvexHull

from bids_app.errors import MissingInputError
from bids_app.io.derivatives import (
    FitMetadata,
    ParameterMaps,
    StatArrays,
    merge_hemispheres,
    write_parameter_maps,
)
from bids_app.report.figures import evidence_figure
from bids_app.report.participant import (
    hemisphere_records,
    record_rows,
    write_participant_report,
)
from bids_app.report.participant_figures import write_map_figures
from bids_app.report.render import format_value
from bids_app.report.surfaces import mesh_curvature


def sphere_mesh(n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """A small closed triangle mesh (Fibonacci points on a 50 mm sphere)."""
    i = np.arange(n) + 0.5
    polar, azimuth = np.arccos(1 - 2 * i / n), np.pi * (1 + 5**0.5) * i
    points = 50.0 * np.column_stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)]
    )
    return points, ConvexHull(points).simplices


MESH = sphere_mesh()
N = len(MESH[0])


def _metadata(hemi_values: bool = False) -> FitMetadata:
    evidence = [[1, 2], [5, 3], [0, 1]]
    grid = {"Kappa": [1e-3, 1e-2, 1e-1], "Tau2": [1e2, 1e3], "LogEvidence": evidence}
    convergence = {
        "Converged": True,
        "Iterations": 4,
        "Objective": [10.0, 5.0, 4.0, 3.9],
        "GradientNorm": [1e2, 1.0, 1e-3, 1e-7],
    }
    check = {
        "Passed": False,
        "Distance": 0.42,
        "FrequencyHz": [0.01, 0.05, 0.1],
        "DataPower": [3.0, 2.0, 1.0],
        "SurrogatePower": [2.5, 2.1, 0.9],
    }
    per = (lambda v: {"L": v, "R": v}) if hemi_values else (lambda v: v)
    return FitMetadata(
        surrogate={"Id": "1p-demo", "Sha256": "cd" * 32},
        kappa=per(1e-2),
        tau2=per(1e2),
        log_evidence=per(5.0),
        convergence=per(convergence),
        random_seed=3,
        sources=["bids:fmriprep:sub-01/func/x_bold.func.gii"],
        bootstrap={
            "Mode": "double",
            "B": 10,
            "R": 4,
            "BlockLengthSeconds": 72.0,
            "CalibratedAlpha": 0.02,
        },
        calibration_check=per(check),
        identifiability={
            "theta": {"Identified": True, "Note": "sharp likelihood"},
            "timetopeak": {"Identified": True},
        },
        evidence_grid=per(grid),
        extra={"RepetitionTime": 0.72},
        hyperparameter_selection=per(selection(0.5)),
        bias_correction=per({"Method": "simulation", "Simulations": 2, "MeanShift": [-0.09]}),
    )


def selection(gap: float, noise_ar: float = 0.025, **edges: str) -> dict:
    return {"Method": "Laplace evidence grid", "OnGridBoundary": edges, "LogEvidenceGap": gap,
            "NoiseAR": {"Selected": noise_ar,
                        "Candidates": [None, 0.0, 0.025, 0.05, 0.075, 0.1]}}


def _params(rng: np.random.Generator, n: int, hole: slice) -> dict[str, StatArrays]:
    theta = rng.uniform(0.8, 1.6, n)
    theta[hole] = np.nan
    return {
        "theta": StatArrays(theta, np.full(n, 0.05), theta - 0.1, theta + 0.1),
        "timetopeak": StatArrays(5 / theta, 0.2 + 0 * theta, 5 / (theta + 0.1), 5 / (theta - 0.1)),
    }


def _write_gifti_subject(root, rng, runs=("1", "2")):
    for run in runs:
        for hemi in "LR":
            ents = {"sub": "01", "task": "rest", "run": run, "hemi": hemi, "space": "tiny"}
            maps = ParameterMaps(ents, "1p", _params(rng, N, slice(0, 6)), _metadata())
            write_parameter_maps(root, maps)


def _images(html: str) -> list[bytes]:
    found = re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", html)
    return [base64.b64decode(s) for s in found]


def _report(root, meshes=lambda space, hemi: MESH):
    """Draw the figures as the participant level does, then assemble the report."""
    write_map_figures(root, "01", meshes, lambda space, hemi, mesh: mesh_curvature(*mesh))
    return write_participant_report(root, "01")


def test_gifti_report_has_maps_diagnostics_and_methods(tmp_path):
    _write_gifti_subject(tmp_path, np.random.default_rng(0), runs=("1",))
    path = _report(tmp_path)
    assert path == tmp_path / "sub-01.html"
    html = path.read_text()
    images = _images(html)
    # 2 params x (estimate, CI width) maps, 2 evidence, 2 Newton
    assert len(images) == 4 + 2 + 2
    assert all(b"<svg" in img[:500] for img in images)
    assert "task-rest run-1 hemi" not in html and "task-rest run-1 space-tiny" in html
    for text in (
        "arXiv:2601.00973",
        "Lindgren",
        "Durkan",
        "Politis",
        "Hall",
        "Esteban",
        "1p-demo",
        "Repetition time",
        "Distance",
    ):
        assert text in html, text
    assert "calibrated level was" in html and "0.02" in html
    assert "spectral moment" in html and "2 runs were simulated" in html
    assert not any(b"no mesh to draw on" in image for image in _images(html))
    assert "calibration check failed" in html and "not identified" not in html
    assert "selected on the grid boundary" not in html  # interior selection: no warning
    assert "noise AR(1) φ" in html and "<td>0.025</td>" in html
    assert "as autocorrelated" not in html  # φ inside the trained range: no warning
    assert "no simulated bias correction" not in html  # applied: nothing to say
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_missing_mesh_falls_back_to_histograms(tmp_path):
    _write_gifti_subject(tmp_path, np.random.default_rng(1), runs=("1",))
    small = sphere_mesh(60)  # vertex count does not match the maps
    html = _report(tmp_path, lambda s, h: small).read_text()
    assert sum(b"no mesh to draw on" in image for image in _images(html)) == 4
    assert len(_images(html)) == 4 + 2 + 2


def test_cifti_report_splits_per_hemisphere_records(tmp_path):
    rng = np.random.default_rng(2)
    keep = np.ones(N, bool)
    keep[:5] = False
    axis = nib.cifti2.BrainModelAxis.from_mask(keep, name="CortexLeft") + (
        nib.cifti2.BrainModelAxis.from_mask(keep, name="CortexRight")
    )
    merged = merge_hemispheres(_params(rng, N, slice(0, 0)), _params(rng, N, slice(0, 0)), axis)
    ents = {"sub": "01", "task": "rest", "space": "fsLR", "den": "91k"}
    meta = _metadata(True)
    meta.identifiability = {"theta": {"Identified": False}, "timetopeak": {"Identified": False}}
    meta.hyperparameter_selection = {"L": selection(0.1, kappa="lower", tau2="upper"),
                                     "R": selection(3.0, noise_ar=0.1)}
    meta.hyperparameter_selection["L"]["NoiseAR"]["Selected"] = None
    write_parameter_maps(tmp_path, ParameterMaps(ents, "1p", merged, meta, axis))
    html = _report(tmp_path).read_text()
    assert "(all runs)" in html
    assert "theta (L) is not identified" in html
    assert ("L: hyperparameters selected on the grid boundary (κ at its lower grid edge, "
            "τ² at its upper grid edge)") in html
    assert "R: hyperparameters selected" not in html
    assert "R: the noise is at least as autocorrelated" in html
    assert "L: the noise is at least" not in html and "<td>averaged</td>" in html
    # κ table has one row per hemisphere even though one sidecar holds both
    assert html.count("<td>0.01</td>") >= 2
    assert len(_images(html)) == 4 + 2 + 2


def test_hemisphere_records_and_format_value():
    records = dict(hemisphere_records({"LR": {"Kappa": {"L": 1, "R": 2}, "Model": {"Name": "1p"}}}))
    assert records["L"]["Kappa"] == 1 and records["R"]["Model"] == {"Name": "1p"}
    assert dict(hemisphere_records({"LR": {"Kappa": 1.0}})) == {"L+R": {"Kappa": 1.0}}
    assert format_value(0.000123456) == "0.0001235"
    assert format_value({"a": True, "b": None}) == "a: yes; b: –"
    assert format_value(list(range(20))) == "[20 values]"
    fixed = {"Kappa": [1e-3], "Tau2": [1e3], "LogEvidence": [[-5.0]]}
    assert evidence_figure(fixed) is None  # κ, τ² fixed: no surface to show


def test_no_maps_is_a_missing_input(tmp_path):
    with pytest.raises(MissingInputError, match="sub-01"):
        write_participant_report(tmp_path, "01")


def test_failed_quality_gate_is_a_banner_with_reasons(tmp_path):
    """A flagged hemisphere stops the reader at the top of its section; a passed one
    says so in one line."""
    from dataclasses import replace

    rng = np.random.default_rng(5)
    verdicts = {"L": {"Pass": False, "Reasons": ["100% of vertices sit at a bound"],
                      "Checks": {"AtRangeBound": {"Value": 1.0, "Threshold": 0.5,
                                                  "Pass": False}}},
                "R": {"Pass": True, "Reasons": [],
                      "Checks": {"AtRangeBound": {"Value": 0.0, "Threshold": 0.5,
                                                  "Pass": True}}}}
    for hemi, verdict in verdicts.items():
        ents = {"sub": "01", "task": "rest", "run": "1", "hemi": hemi, "space": "tiny"}
        meta = replace(_metadata(), quality_control=verdict)
        write_parameter_maps(tmp_path, ParameterMaps(ents, "1p", _params(rng, N, slice(0, 6)),
                                                     meta))
    html = _report(tmp_path).read_text()
    banner = html[html.index("QUALITY GATE FAILED"):html.index("</div>",
                                                              html.index("QUALITY GATE FAILED"))]
    assert "L: 100% of vertices sit at a bound" in banner and "R:" not in banner
    assert html.index("QUALITY GATE FAILED") < html.index("<h3>Fit</h3>")
    assert "<td>At range bound</td>" in html and "<td>NO</td>" in html


def test_skipped_bias_correction_says_what_the_intervals_hold(tmp_path):
    """Where the correction did not run, the reader learns that the intervals omit the
    likelihood's bias, for that hemisphere only."""
    from dataclasses import replace

    rng = np.random.default_rng(6)
    reason = "RMS log ratio 0.48 above 0.1"
    for hemi, record in (("L", {"Method": "none", "Reason": reason}),
                         ("R", {"Method": "simulation", "Simulations": 2})):
        ents = {"sub": "01", "task": "rest", "run": "1", "hemi": hemi, "space": "tiny"}
        meta = replace(_metadata(), bias_correction=record)
        write_parameter_maps(tmp_path, ParameterMaps(ents, "1p", _params(rng, N, slice(0, 6)),
                                                     meta))
    html = _report(tmp_path).read_text()
    assert f"L: no simulated bias correction ({reason}); the intervals hold" in html
    assert "R: no simulated bias correction" not in html


def test_reports_only_needs_the_figures(tmp_path):
    """The report is assembled from figure files; without them it names the fix."""
    _write_gifti_subject(tmp_path, np.random.default_rng(6), runs=("1",))
    with pytest.raises(MissingInputError, match=r"figures.*rerun the participant level"):
        write_participant_report(tmp_path, "01")
    _report(tmp_path)
    estimate = next((tmp_path / "sub-01" / "figures").glob("*desc-estimate_param-theta*.svg"))
    estimate.unlink()
    with pytest.raises(MissingInputError, match=estimate.name):
        write_participant_report(tmp_path, "01")


def test_fit_record_reads_as_rows():
    rows = record_rows({"HyperparameterSelection": {"OnGridBoundary": {}, "LogEvidenceGap": 2.5},
                        "Sources": ["sub-01/a.gii", "sub-01/b.tsv"],
                        "Confounds": ["trans_x", "rot_x"]})
    assert rows == [["Hyperparameter selection › On grid boundary", "none"],
                    ["Hyperparameter selection › Log evidence gap", "2.5"],
                    ["Sources", "sub-01/a.gii\nsub-01/b.tsv"],  # one file a line
                    ["Confounds", "trans_x, rot_x"]]


def test_mesh_curvature_is_negative_on_a_convex_mesh():
    """Sulci positive, gyri negative: a sphere is all gyrus (−2/R), whichever way its
    faces wind."""
    from bids_app.prior import icosphere

    vertices, faces = icosphere(2, 50.0)
    for wound in (faces, faces[:, ::-1]):
        assert np.allclose(mesh_curvature(vertices, wound), -2 / 50.0, rtol=0.2)
