"""The per-test history page and the known-bug skip: tools/run_suites.py against a throwaway suite (BuiltIn only)
run three times with different outcomes, plus the page's rules on synthetic runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html import escape
from pathlib import Path

import pytest

import archive
import history_page
from archive import RunSummary
from robot_args import HELP, parse_command_line

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"

# Outcomes by ${MODE}: first (release r1), second (r1), third (r2, with --strict-known-bugs).
HISTORY_SUITE = """\
*** Settings ***
Documentation       Throwaway suite for the history page: what fails depends on ${MODE}.


*** Variables ***
${MODE}     first


*** Test Cases ***
Steady Test
    [Documentation]    Always passes.
    [Tags]    HAMI-E2E-901
    Log    fine

Flaky Test
    [Documentation]    Fails in the first and third runs; the lower-case ID tag still keys it.
    [Tags]    hami-e2e-902
    Should Be Equal    ${MODE}    second    first run <fails> & "quotes"    values=False

Release Dependent Test
    [Documentation]    Fails only in release r2: not flaky.
    [Tags]    HAMI-E2E-904
    Should Not Be Equal    ${MODE}    third    broken in r2    values=False

Known Bug Test
    [Documentation]    Always fails: SKIP by default, FAIL with --strict-known-bugs.
    [Tags]    HOST-903    known-bug:HAMi-123
    Fail    known <bug>

Untagged <Test> & Co
    [Documentation]    No ID tag: keyed by its long name. Skipped in the first run.
    Skip If    '${MODE}' == 'first'    not <today>
"""
UNTAGGED = "Suite.History.Untagged <Test> & Co"
CELL = re.compile(r'<td class="c (\w+)(?: first)?" title="([^"]*)">([^<]*)</td>')


def run_suites(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOLS / "run_suites.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Three archived runs: r1 (MODE first), r1 (second), r2 (third, strict). Returns (root, runs by mode)."""
    work = tmp_path_factory.mktemp("history")
    (work / "suite").mkdir()
    (work / "suite" / "history.robot").write_text(HISTORY_SUITE, encoding="utf-8")
    root = work / "results"
    runs = {}
    for mode, release, extra, rc in (("first", "r1", [], 1), ("second", "r1", [], 0),
                                     ("third", "r2", ["--strict-known-bugs"], 3)):
        done = run_suites("--results-root", str(root), "--release", release, "--no-docs", *extra,
                          "--variable", f"MODE:{mode}", "suite", cwd=work)
        assert done.returncode == rc, done.stdout + done.stderr
        runs[mode] = Path(done.stdout.strip().splitlines()[-1])
    return root, runs


def page(root: Path) -> str:
    return (root / "history.html").read_text(encoding="utf-8")


def columns(html: str) -> list[str]:
    return re.findall(r'<th class="run[^"]*" data-run="([^"]+)"', html)


def row(html: str, key: str) -> str:
    match = re.search(rf'<tr data-test="{re.escape(escape(key))}">(.*?)</tr>', html, re.S)
    assert match, f"no row for {key}"
    return match.group(1)


def cells(html: str, key: str, runs: dict) -> dict:
    """mode -> (status class, title, letter) of the test's cell in that run's column."""
    by_path = dict(zip(columns(html), CELL.findall(row(html, key)), strict=True))
    return {mode: by_path[run_dir.relative_to(run_dir.parents[1]).as_posix()] for mode, run_dir in runs.items()}


def counts(html: str, key: str) -> list[int]:
    return [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', row(html, key))]


def test_columns_are_runs_newest_first_grouped_by_release(history):
    root, runs = history
    cols = columns(page(root))
    assert len(cols) == 3
    assert cols.index(f"r1/{runs['second'].name}") < cols.index(f"r1/{runs['first'].name}")
    assert [col.split("/")[0] for col in cols] in (["r2", "r1", "r1"], ["r1", "r1", "r2"])


def test_cells_show_letter_colour_and_message(history):
    root, runs = history
    html = page(root)
    flaky = cells(html, "HAMI-E2E-902", runs)
    assert flaky["first"] == ("FAIL", escape('first run <fails> & "quotes"'), "F")
    assert flaky["second"] == ("PASS", "PASS", "P")
    assert flaky["third"][0::2] == ("FAIL", "F")
    assert {cell[0] for cell in cells(html, "HAMI-E2E-901", runs).values()} == {"PASS"}
    assert counts(html, "HAMI-E2E-901") == [3, 0, 0]
    assert counts(html, "HAMI-E2E-902") == [1, 2, 0]


def test_flaky_only_when_passed_and_failed_in_one_release(history):
    root, _ = history
    html = page(root)
    assert '<span class="flaky" title="passed and failed in release r1">flaky</span>' in row(html, "HAMI-E2E-902")
    for key in ("HAMI-E2E-901", "HAMI-E2E-904", "HOST-903", UNTAGGED):  # r1 pass + r2 fail is not flaky
        assert "flaky" not in row(html, key), key
    assert "; 1 flaky." in html


def test_test_without_id_tag_is_keyed_by_long_name_and_escaped(history):
    root, runs = history
    html = page(root)
    untagged = cells(html, UNTAGGED, runs)
    assert untagged["first"] == ("SKIP", escape("not <today>"), "S")
    assert [untagged[mode][0] for mode in ("second", "third")] == ["PASS", "PASS"]
    assert "<Test>" not in html and "known <bug>" not in html
    assert "<script" not in html and "<link" not in html and "src=" not in html


def test_known_bug_failure_is_skip_with_its_message_unless_strict(history):
    root, runs = history
    known = cells(page(root), "HOST-903", runs)
    for mode in ("first", "second"):
        status, title, letter = known[mode]
        assert (status, letter) == ("SKIP", "S")
        assert "known-bug:*" in title and escape("known <bug>") in title
    assert known["third"] == ("FAIL", escape("known <bug>"), "F")
    assert archive.read_run_record(runs["first"])["skip_on_failure"] == ["known-bug:*"]
    assert archive.read_run_record(runs["third"])["skip_on_failure"] == []
    assert archive.summarize(runs["first"], root).skipped == 2  # the known bug and the untagged test


def test_index_links_the_history_page(history):
    root, _ = history
    assert '<a href="history.html">' in (root / "index.html").read_text(encoding="utf-8")
    assert '<a href="index.html">' in page(root)


def test_summary_json_caches_per_test_statuses(history):
    _, runs = history
    data = json.loads((runs["first"] / "summary.json").read_text(encoding="utf-8"))
    assert data["counts"]["failed"] == 1
    by_id = {test["id"] or test["longname"]: test for test in data["tests"]}
    assert set(by_id) == {"HAMI-E2E-901", "HAMI-E2E-902", "HAMI-E2E-904", "HOST-903", UNTAGGED}
    assert by_id["HAMI-E2E-902"]["status"] == "FAIL"
    assert by_id["HAMI-E2E-902"]["message"] == 'first run <fails> & "quotes"'


def test_old_summary_without_tests_is_reread_once(history, tmp_path, monkeypatch):
    _, runs = history
    run_dir = tmp_path / "r1" / runs["first"].name
    shutil.copytree(runs["first"], run_dir)  # copy2 keeps output.xml's mtime, so the cache stamp still matches
    summary = run_dir / "summary.json"
    old = json.loads(summary.read_text(encoding="utf-8"))
    del old["tests"]
    summary.write_text(json.dumps(old), encoding="utf-8")

    first = archive.summarize(run_dir, tmp_path)

    assert len(first.tests) == 5 and first.failed == 1
    assert len(json.loads(summary.read_text(encoding="utf-8"))["tests"]) == 5

    def no_reading(output):
        raise AssertionError(f"{output} read again")

    monkeypatch.setattr(archive, "_read_output", no_reading)
    assert archive.summarize(run_dir, tmp_path).tests == first.tests


def fake_run(release: str, stamp: str, status: str) -> RunSummary:
    test = {"id": "HAMI-E2E-001", "name": "Test", "longname": "S.Test", "status": status, "message": ""}
    return RunSummary(release=release, timestamp=stamp, path=f"{release}/{stamp}", status=status, tests=[test])


def test_history_shows_the_last_30_runs_grouped_by_release():
    runs = [fake_run("a" if n % 2 else "b", f"202601{n + 1:02d}T000000Z", "PASS") for n in range(40)]
    runs.reverse()  # newest first, as archive.summaries returns them
    html = history_page.render(runs)
    cols = columns(html)
    assert len(cols) == history_page.MAX_RUNS
    assert cols[:15] == [run.path for run in runs[:30] if run.release == "a"]
    assert cols[15:] == [run.path for run in runs[:30] if run.release == "b"]
    assert "last 30 of 40 run(s)" in html
    assert counts(html, "HAMI-E2E-001") == [30, 0, 0]


def test_flaky_needs_pass_and_fail_in_the_same_release():
    mixed = [fake_run("a", "20260102T000000Z", "PASS"), fake_run("b", "20260101T000000Z", "FAIL")]
    assert "span class=\"flaky\"" not in history_page.render(mixed)
    flaky = [fake_run("a", "20260102T000000Z", "FAIL"), fake_run("a", "20260101T000000Z", "PASS")]
    assert '<span class="flaky" title="passed and failed in release a">' in history_page.render(flaky)


def test_strict_known_bugs_is_a_wrapper_option_in_the_help():
    inv = parse_command_line(["--strict-known-bugs", "--include", "smoke", "suites"])
    assert inv.strict_known_bugs and "--strict-known-bugs" not in inv.robot_argv
    assert not parse_command_line(["suites"]).strict_known_bugs
    assert "--strict-known-bugs" in HELP and "--skiponfailure known-bug:*" in HELP
