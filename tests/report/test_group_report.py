"""The group report links each participant's report and lists who was excluded and why."""

from __future__ import annotations

from bids_app.report.group import participant_rows
from bids_app.report.render import render

HEADER = ["participant_id", "status", "reason"]
ROWS = [["sub-01", "included", "participant map"],
        ["sub-02", "excluded", "failed quality control (L: pinned map)"],
        ["sub-03", "excluded", "no finished record"]]


def test_excluded_participants_are_listed_with_links(tmp_path):
    (tmp_path / "sub-01.html").write_text("<html></html>")
    (tmp_path / "sub-02.html").write_text("<html></html>")
    participants = participant_rows(tmp_path, HEADER, ROWS)
    assert [p["href"] for p in participants] == ["sub-01.html", "sub-02.html", None]
    html = render("group.html.j2", identifiability=None, sections=[],
                  participants=participants,
                  excluded=[p for p in participants if p["status"] == "excluded"],
                  participant_header=HEADER)
    banner = html[html.index("2 participant(s) excluded"):html.index("</div>")]
    assert ('<a href="sub-02.html">sub-02</a>: failed quality control (L: pinned map)'
            in banner)
    assert "sub-03: no finished record" in banner and "sub-01" not in banner
    assert '<td><a href="sub-01.html">sub-01</a></td>' in html
    assert "<td>sub-03</td>" in html  # no report to link
