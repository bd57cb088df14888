"""The run archive: tools/run_suites.py against throwaway suites (BuiltIn only, no cluster needed)."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from robot.api import ExecutionResult

import archive
import index_page
from release import release_name

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"
RUN_SUITES = TOOLS / "run_suites.py"

STAMP = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")

MIXED_SUITE = """\
*** Settings ***
Documentation       Throwaway suite: one test passes, one fails, one is skipped.
Metadata            Target    sandbox


*** Test Cases ***
Passing Test
    [Documentation]    Passes.
    Log    fine

Failing Test
    [Documentation]    Fails on purpose.
    Fail    expected failure

Skipped Test
    [Documentation]    Skips on purpose.
    Skip    not today
"""

FLAKY_SUITE = """\
*** Settings ***
Documentation       Throwaway suite: the flaky test fails once, then passes.
Metadata            Target    sandbox
Library             OperatingSystem


*** Test Cases ***
Steady Test
    [Documentation]    Always passes.
    Log    fine

Flaky Test
    [Documentation]    Fails on the first run only: it leaves a marker file behind.
    ${seen}=    Run Keyword And Return Status    File Should Exist    ${MARKER}
    Create File    ${MARKER}
    Should Be True    ${seen}    first run fails
"""

SERIAL_SUITE = """\
*** Settings ***
Documentation       Throwaway suite: two parallel tests and one that must run alone.
Metadata            Target    sandbox


*** Test Cases ***
First Parallel Test
    [Documentation]    Passes.
    Log    one

Second Parallel Test
    [Documentation]    Passes.
    Log    two

Disruptive Test
    [Documentation]    Runs in the serial pass.
    [Tags]    disruptive
    Log    alone
"""


def run_suites(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUN_SUITES), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def only_run_dir(root: Path, release: str) -> Path:
    runs = [run for run in (root / release).iterdir() if run.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def index_row(root: Path, run_dir: Path) -> str:
    html = (root / "index.html").read_text(encoding="utf-8")
    match = re.search(rf'<tr id="run-{re.escape(run_dir.parent.name)}-{run_dir.name}">(.*?)</tr>', html)
    assert match, f"{run_dir} is not listed in index.html"
    return match.group(1)


def counts_in(row: str) -> list[int]:
    return [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', row)]


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """One archived run of the mixed suite, shared by the layout tests (robot runs once)."""
    work = tmp_path_factory.mktemp("mixed")
    write(work / "suite" / "mixed.robot", MIXED_SUITE)
    write(work / "env.yaml", 'HAMI_CHART_VERSION: "9.9.9-test"\nGPU_COUNT: 1\n')
    root = work / "results"
    done = run_suites("--results-root", str(root), "--variablefile", "env.yaml", "suite", cwd=work)
    return done, root, work


def test_failed_test_gives_non_zero_exit_code(mixed_run):
    done, _, _ = mixed_run
    assert done.returncode == 1, done.stdout + done.stderr


def test_run_folder_is_release_then_utc_timestamp(mixed_run):
    done, root, _ = mixed_run
    run_dir = only_run_dir(root, "9.9.9-test")
    assert STAMP.match(run_dir.name)
    assert done.stdout.strip().splitlines()[-1] == str(run_dir)


def test_run_folder_holds_reports_xunit_and_docs(mixed_run):
    done, root, _ = mixed_run
    run_dir = only_run_dir(root, "9.9.9-test")
    for name in ("report.html", "log.html", "output.xml", "xunit.xml", "testdoc.html", "run.json"):
        assert (run_dir / name).is_file(), f"{name} missing; output:\n{done.stdout}"
    if (REPO / "libraries" / "HamiLibrary.py").is_file():
        assert (run_dir / "libdoc.html").is_file()
    else:
        assert "libdoc skipped" in done.stdout


def test_xunit_counts_the_three_outcomes(mixed_run):
    _, root, _ = mixed_run
    xunit = ET.parse(only_run_dir(root, "9.9.9-test") / "xunit.xml").getroot()
    suite = xunit if xunit.tag == "testsuite" else xunit.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")


def test_index_lists_the_run_with_counts_and_target(mixed_run):
    _, root, _ = mixed_run
    run_dir = only_run_dir(root, "9.9.9-test")
    row = index_row(root, run_dir)
    assert counts_in(row) == [1, 1, 1, 3]  # pass, fail, skip, total
    assert "<td>sandbox</td>" in row
    assert 'class="badge FAIL"' in row
    for name in ("report.html", "log.html", "xunit.xml", "testdoc.html"):
        assert f'href="9.9.9-test/{run_dir.name}/{name}"' in row
    assert "Release 9.9.9-test" in (root / "index.html").read_text(encoding="utf-8")


def test_release_option_overrides_the_variable_file(tmp_path):
    write(tmp_path / "suite" / "pass.robot", MIXED_SUITE.split("Failing Test")[0])
    write(tmp_path / "env.yaml", "HAMI_CHART_VERSION: 1.0.0\n")
    root = tmp_path / "results"
    done = run_suites("--results-root", str(root), "--release", "nightly", "--no-docs",
                      "--variablefile", "env.yaml", "suite", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [path.name for path in root.iterdir() if path.is_dir()] == ["nightly"]


def test_archive_owned_options_are_refused(tmp_path):
    done = run_suites("--results-root", str(tmp_path / "results"), "--outputdir", "elsewhere", "suite",
                      cwd=tmp_path)
    assert done.returncode == 252
    assert "--outputdir" in done.stderr
    assert not (tmp_path / "results").exists()


def test_rerun_failed_merges_into_the_same_folder(tmp_path):
    write(tmp_path / "suite" / "flaky.robot", FLAKY_SUITE)
    root = tmp_path / "results"
    marker = f"MARKER:{tmp_path / 'marker'}"
    first = run_suites("--results-root", str(root), "--release", "r1", "--no-docs", "--variable", marker,
                       "suite", cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    run_dir = only_run_dir(root, "r1")

    rerun = run_suites("--results-root", str(root), "--rerun-failed", cwd=tmp_path)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert rerun.stdout.strip().splitlines()[-1] == str(run_dir)
    assert only_run_dir(root, "r1") == run_dir
    for name in ("rerun-1.xml", "original-output.xml", "output.xml", "xunit.xml", "report.html"):
        assert (run_dir / name).is_file(), name
    assert "re-executed and results merged" in (run_dir / "output.xml").read_text(encoding="utf-8")
    row = index_row(root, run_dir)
    assert counts_in(row) == [2, 0, 0, 2]
    assert "1 rerun(s) merged" in row


def test_rerun_with_nothing_failed_changes_nothing(tmp_path):
    write(tmp_path / "suite" / "pass.robot", MIXED_SUITE.split("Failing Test")[0])
    root = tmp_path / "results"
    assert run_suites("--results-root", str(root), "--release", "ok", "--no-docs", "suite",
                      cwd=tmp_path).returncode == 0
    rerun = run_suites("--results-root", str(root), "--rerun-failed", cwd=tmp_path)
    assert rerun.returncode == 0
    assert "nothing to rerun" in rerun.stdout
    assert not list(root.glob("ok/*/rerun-*.xml"))


def test_pabot_runs_serial_tags_in_their_own_pass(tmp_path):
    write(tmp_path / "suite" / "serial.robot", SERIAL_SUITE)
    root = tmp_path / "results"
    done = run_suites("--results-root", str(root), "--release", "par", "--no-docs", "--pabot", "2",
                      "--no-pabotlib", "suite", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = only_run_dir(root, "par")
    assert "--testlevelsplit" in done.stdout
    for name in ("parallel.xml", "serial.xml", "output.xml", "xunit.xml", "report.html", "log.html"):
        assert (run_dir / name).is_file(), name
    assert counts_in(index_row(root, run_dir)) == [3, 0, 0, 3]
    assert not (tmp_path / ".pabotsuitenames").exists()


INSTALL_SUITE = """\
*** Test Cases ***
Install Test
    [Documentation]    Stands for HAMi's installation, which every other suite needs.
    [Tags]    HAMI-E2E-010    disruptive
    Log    installed
"""


def test_pabot_runs_the_preflight_and_install_suites_before_everything_else(tmp_path):
    write(tmp_path / "suite" / "01__install.robot", INSTALL_SUITE)
    write(tmp_path / "suite" / "serial.robot", SERIAL_SUITE)
    root = tmp_path / "results"
    done = run_suites("--results-root", str(root), "--release", "par", "--no-docs", "--pabot", "2",
                      "--no-pabotlib", "suite", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "first pass (Preflight, Install): 1 test(s); pabot pass: 2 test(s); serial pass" in done.stdout
    run_dir = only_run_dir(root, "par")
    first = list(ExecutionResult(str(run_dir / "first.xml")).suite.all_tests)
    later = [*ExecutionResult(str(run_dir / "parallel.xml")).suite.all_tests,
             *ExecutionResult(str(run_dir / "serial.xml")).suite.all_tests]
    assert [test.name for test in first] == ["Install Test"]
    assert "Install Test" not in [test.name for test in later]
    assert max(test.end_time for test in first) <= min(test.start_time for test in later)
    assert counts_in(index_row(root, run_dir)) == [4, 0, 0, 4]


def test_release_precedence_follows_robot(tmp_path):
    first = write(tmp_path / "first.yaml", "HAMI_CHART_VERSION: 2.5.0\n")
    second = write(tmp_path / "second.yaml", "hami_chart_version: 2.6.0\n")
    typed = write(tmp_path / "typed.yaml", "'${HAMI_CHART_VERSION}': v2.7.0\n")
    python = write(tmp_path / "lab.py", "HAMI_CHART_VERSION = '2.8.0'\n")
    assert release_name(None, [str(first), str(second)], []) == "2.5.0"
    assert release_name(None, [str(second), str(first)], []) == "2.6.0"
    assert release_name(None, [str(typed)], []) == "v2.7.0"
    assert release_name(None, [str(python)], []) == "2.8.0"
    assert release_name(None, [str(first)], ["HAMI_CHART_VERSION:3.0.0"]) == "3.0.0"
    assert release_name(None, [str(first)], ["HAMI_CHART_VERSION: str:3.1.0"]) == "3.1.0"
    assert release_name("given", [str(first)], ["HAMI_CHART_VERSION:3.0.0"]) == "given"
    assert release_name(None, [], []) == "unknown"
    assert release_name("../evil name", [], []) == "_evil_name"


def test_index_groups_by_release_newest_first(tmp_path):
    for release, stamp in (("2.5.0", "20260101T000000Z"), ("2.6.0", "20260301T000000Z"),
                           ("2.5.0", "20260401T000000Z"), ("2.6.0", "20260201T000000Z")):
        (tmp_path / release / stamp).mkdir(parents=True)
    (tmp_path / "2.5.0" / "not-a-run").mkdir()
    html = index_page.write_index(tmp_path).read_text(encoding="utf-8")
    order = re.findall(r'<tr id="run-([^"]+)"', html)
    assert order == ["2.5.0-20260401T000000Z", "2.5.0-20260101T000000Z",
                     "2.6.0-20260301T000000Z", "2.6.0-20260201T000000Z"]
    assert html.count("no output.xml") == 4
    assert archive.latest_run_dir(tmp_path) == tmp_path / "2.5.0" / "20260401T000000Z"
