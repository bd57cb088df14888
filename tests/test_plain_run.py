"""A plain robot run (outputs in the current directory) is archived when robot ends, with known bugs as SKIP;
any run that names an output folder, a dry run and ``HAMI_E2E_ARCHIVE=off`` are left as robot makes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from robot.api import ExecutionResult

REPO = Path(__file__).resolve().parents[1]
SUITE = f"""*** Settings ***
Library           {REPO / "libraries" / "HamiLibrary.py"}
Library           {REPO / "libraries" / "HamiLibrary.py"}    default_timeout=5s    AS    SecondInstance

*** Test Cases ***
Passes
    [Tags]    HAMI-E2E-991
    No Operation

Fails As A Known Bug
    [Tags]    HAMI-E2E-992    known-bug:hami-1234
    Fail    HAMi still does the wrong thing

Fails
    [Tags]    HAMI-E2E-993
    Fail    a real failure
"""


def _robot(folder: Path, *options: str, archive: str = "") -> subprocess.CompletedProcess:
    folder.mkdir(exist_ok=True)
    (folder / "plain.robot").write_text(SUITE)
    env = dict(os.environ, HAMI_E2E_RESULTS_ROOT=str(folder / "results"), HAMI_E2E_ARCHIVE=archive)
    command = [
        sys.executable,
        "-m",
        "robot",
        "--variable",
        "HAMI_CHART_VERSION:9.9.9",
        "--console",
        "dotted",
        *options,
        "plain.robot",
    ]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def _statuses(output: Path) -> dict[str, tuple[str, str]]:
    return {t.name: (t.status, t.message) for t in ExecutionResult(str(output)).suite.all_tests}


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    folder = tmp_path_factory.mktemp("plain")
    return folder, _robot(folder)


def test_a_plain_run_is_archived_with_the_wrappers_files(plain):
    folder, done = plain
    runs = list((folder / "results" / "9.9.9").iterdir())
    assert len(runs) == 1, done.stdout + done.stderr
    assert done.stdout.count("[ archive ] Archiving this run") == 1  # one archiver, though the library was made twice
    assert "failed" not in done.stdout.split("Archiving this run")[1] + done.stderr
    run = runs[0]
    names = ("output.xml", "log.html", "report.html", "xunit.xml", "run.json", "libdoc.html", "testdoc.html")
    for name in (*names, "RequestsLibrary.html", "KubeLibrary.html"):
        assert (run / name).is_file(), f"{name} missing; robot said:\n{done.stdout}{done.stderr}"
    assert not any((folder / name).exists() for name in ("output.xml", "log.html", "report.html"))
    record = json.loads((run / "run.json").read_text())
    assert record["robot_argv"][-1] == "plain.robot" and record["cwd"] == str(folder)
    assert record["rc"] == 1 and record["started"] < record["finished"]
    assert f"9.9.9/{run.name}/report.html" in (folder / "results" / "index.html").read_text()
    assert "<testsuite " in (run / "xunit.xml").read_text()


def test_a_known_bug_that_fails_is_a_skip_with_its_message(plain):
    folder, done = plain
    run = next((folder / "results" / "9.9.9").iterdir())
    statuses = _statuses(run / "output.xml")
    assert statuses["Passes"][0] == "PASS"
    assert statuses["Fails"] == ("FAIL", "a real failure")
    assert statuses["Fails As A Known Bug"] == (
        "SKIP",
        "Failed test skipped using 'known-bug:*' tag pattern.\n\nOriginal failure:\nHAMi still does the wrong thing",
    )
    assert done.returncode == 1


@pytest.mark.parametrize(
    ("options", "archive"),
    [(("--outputdir", "out"), ""), (("--dryrun",), ""), ((), "off")],
    ids=["outputdir", "dryrun", "switched-off"],
)
def test_other_runs_stay_where_robot_wrote_them(tmp_path, options, archive):
    done = _robot(tmp_path, *options, archive=archive)
    assert not (tmp_path / "results").exists(), done.stdout
    output = tmp_path / ("out" if options and options[0] == "--outputdir" else ".") / "output.xml"
    assert output.is_file()
    if not options or options[0] == "--outputdir":
        assert _statuses(output)["Fails As A Known Bug"][0] == "FAIL"
