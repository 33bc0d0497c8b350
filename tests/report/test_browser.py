"""The reports open in a real headless Chromium: no broken image, no console error, every
image embedded, the group report's participant links resolve; a screenshot of each is
saved under the test's tmp dir.

Skipped where Chromium or Playwright is missing, unless ``HEMOCOUPLING_REQUIRE_BROWSER=1``
(CI sets it, after installing Chromium in .ci/run): then their absence fails.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from bids_app.cli.run import main
from bids_app.prior import icosphere
from bids_app.report.browser import check_page, chromium_path, headless_chromium
from bids_app.simulate.dataset import DatasetSpec, simulate_dataset

pytestmark = pytest.mark.slow


def _browser_or_skip() -> None:
    missing = [name for name, ok in (("playwright", importlib.util.find_spec("playwright")),
                                     ("chromium", chromium_path())) if not ok]
    if not missing:
        return
    message = f"{' and '.join(missing)} not installed (apt-get install chromium; dev extra)"
    if os.environ.get("HEMOCOUPLING_REQUIRE_BROWSER") == "1":
        pytest.fail(f"HEMOCOUPLING_REQUIRE_BROWSER=1 but {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    """Two simulated subjects through the real participant (light bootstrap) and group
    levels; OUTPUT_DIR with both participant reports and the group report. The group level
    keeps flagged maps: 200 frames on a small mesh may fail the quality gate, and the
    reports are what is under test here."""
    root = tmp_path_factory.mktemp("reports")
    mesh = icosphere(3, radius_mm=50.0)
    bids = simulate_dataset(root / "fmriprep", DatasetSpec(n_subjects=2, n_frames=200, tr=1.0,
                                                           seed=4),
                            meshes={"L": mesh, "R": mesh})
    out = root / "out"
    common = ["-w", str(root / "work"), "--nprocs", "1", "--omp-nthreads", "1"]
    assert main([str(bids), str(out), "participant", "--bootstrap", "single", "--n-boot", "4",
                 "--bias-correction", "none", "--kappa", "0.05", "--tau2", "1", *common]) == 0
    assert main([str(bids), str(out), "group", "--include-flagged", *common]) == 0
    return out


def test_reports_open_without_errors(reports, tmp_path):
    _browser_or_skip()
    pages = sorted(reports.glob("*.html"))
    assert [p.name for p in pages] == ["group.html", "sub-01.html", "sub-02.html"]
    with headless_chromium() as browser:
        for page in pages:
            shot = tmp_path / f"{page.stem}.png"
            check = check_page(browser, page, shot)
            assert not check.problems, (page.name, check.problems)
            assert check.image_sources and all(src.startswith("data:image/svg+xml;base64,")
                                               for src in check.image_sources), page.name
            assert shot.stat().st_size > 10_000
            if page.name == "group.html":
                linked = {link for link in check.links if link.endswith(".html")}
                assert linked == {"sub-01.html", "sub-02.html"}
                assert all((reports / link).is_file() for link in linked)
            else:  # input QC and the model-fit picture are there
                html = page.read_text()
                for desc in ("carpet", "confounds", "spectrum", "estimate", "ciwidth"):
                    assert f"desc-{desc}" in " ".join(
                        p.name for p in (reports / page.stem / "figures").iterdir()), desc
                assert "Identifiability" in html and "Quality gate" in html.replace(
                    "QUALITY GATE FAILED", "Quality gate")


def test_a_broken_image_and_a_script_error_are_caught(tmp_path):
    """The checks above can fail: a page with a missing image and a throwing script."""
    _browser_or_skip()
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img alt="gone" src="missing.png">'
                    "<script>undefinedFunction()</script></body></html>")
    with headless_chromium() as browser:
        check = check_page(browser, page)
    assert check.broken_images == ["gone"]
    assert any("undefinedFunction" in error for error in check.console_errors)


def test_reports_only_rebuilds_without_refitting(reports):
    """--reports-only re-assembles the same reports from the figures on disk."""
    bids = reports.parent / "fmriprep"
    before = (reports / "sub-01.html").stat().st_mtime_ns
    fits = sorted(p.stat().st_mtime_ns for p in reports.rglob("*_boldmap.func.gii"))
    assert main([str(bids), str(reports), "participant", "--reports-only", "-w",
                 str(reports.parent / "work")]) == 0
    assert (reports / "sub-01.html").stat().st_mtime_ns > before
    assert sorted(p.stat().st_mtime_ns for p in reports.rglob("*_boldmap.func.gii")) == fits
    figures = reports / "sub-02" / "figures"
    moved = figures.with_name("figures-moved")
    figures.rename(moved)
    try:
        assert main([str(bids), str(reports), "participant", "--reports-only",
                     "--participant-label", "02", "-w", str(reports.parent / "work")]) == 66
    finally:
        moved.rename(figures)
