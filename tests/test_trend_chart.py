"""The index's trend picture: one bar per run (pass/fail/skip stacked) grouped by release, wall time on a second
axis, each bar linked to its run's report and titled with its counts; drawn the same way every time."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import index_page
import trend_chart
from archive import RunSummary

SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}href"


def _run(release: str, stamp: str, passed: int = 0, failed: int = 0, skipped: int = 0, wall: float = 0.0):
    return RunSummary(
        release=release,
        timestamp=stamp,
        path=f"{release}/{stamp}",
        passed=passed,
        failed=failed,
        skipped=skipped,
        elapsed_s=wall,
        status="FAIL" if failed else ("PASS" if passed else "missing"),
        error="" if passed or failed or skipped else "no output.xml",
        links={"report": "report.html"} if passed or failed or skipped else {},
    )


RUNS = [  # newest first, as archive.summaries gives them
    _run("2.10.0", "20261127T040000Z", passed=80, failed=2, skipped=9, wall=800),
    _run("2.9.0", "20261126T120000Z", passed=70, skipped=10, wall=700),
    _run("2.10.0", "20261126T100000Z"),
    _run("2.10.0", "20261125T100000Z", passed=25, skipped=3, wall=130),
]


def _svg(tmp_path) -> ET.Element:
    section = trend_chart.trend_section(tmp_path, RUNS)
    assert section.startswith('<figure class="trend"') and "<svg" in section
    return ET.fromstring((tmp_path / trend_chart.FILE).read_text())


def test_every_run_is_a_bar_linked_to_its_report(tmp_path):
    svg = _svg(tmp_path)
    links = [a.get(XLINK) for a in svg.iter(f"{SVG}a")]
    assert links.count("2.10.0/20261127T040000Z/report.html") == 3  # passed, failed, skipped parts
    assert links.count("2.9.0/20261126T120000Z/report.html") == 2
    assert "2.10.0/20261126T100000Z/" in links  # a run without results: a grey stub to its folder


def test_bars_are_titled_with_the_runs_counts_and_wall_time(tmp_path):
    titles = [t.text for t in _svg(tmp_path).iter(f"{SVG}title")]
    assert "2.10.0, 2026-11-27 04:00 UTC: 80 passed, 2 failed, 9 skipped in 13:20 (FAIL)" in titles
    assert "2.10.0, 2026-11-26 10:00 UTC: no test results (missing)" in titles


def test_releases_group_the_runs_oldest_first():
    groups = trend_chart._groups(RUNS)
    assert list(groups) == ["2.9.0", "2.10.0"]  # the release with the newest run last
    assert [r.timestamp for r in groups["2.10.0"]] == ["20261125T100000Z", "20261126T100000Z", "20261127T040000Z"]
    many = [_run(f"1.{n}", f"202611{n + 10:02d}T000000Z", passed=1) for n in range(12)]
    assert len(trend_chart._groups(list(reversed(many)))) == trend_chart.MAX_RELEASES


def test_the_picture_is_the_same_for_the_same_runs():
    first = trend_chart.draw(trend_chart._groups(RUNS))
    assert first == trend_chart.draw(trend_chart._groups(RUNS))
    assert "wall time (min)" in first and "<dc:date>" not in first


def test_the_index_shows_the_picture_above_the_releases(tmp_path):
    html = index_page.render(RUNS, trend=trend_chart.trend_section(tmp_path, RUNS))
    assert html.index('<figure class="trend"') < html.index('id="release-2.10.0"')
    assert index_page.render([]).count("<figure") == 0
    assert trend_chart.trend_section(tmp_path / "empty", []) == ""
