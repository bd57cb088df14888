"""``tools/run-e2e --matrix``: cells, their archive entries, the matrix page, the combined report and the index
link, with a throwaway suite and a stand-in for ``python -m sandbox`` (no cluster needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from robot.api import ExecutionResult

import matrix
import run_suites
from robot_args import UsageError, parse_command_line

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"

SUITE = """\
*** Settings ***
Documentation       Throwaway suite: one test fails on Kubernetes 1.34 only, one on the a100 topology only.
Metadata            Target    sandbox
Metadata            GPU models    gpu-node-0: 2 x Fake-GPU


*** Test Cases ***
Steady Test
    [Documentation]    Passes everywhere.
    [Tags]    HAMI-E2E-901
    Log    fine

Old Kubernetes Test
    [Documentation]    Fails where HAMI_E2E_KUBE_VERSION is 1.34.
    [Tags]    HAMI-E2E-902
    Should Not Be Equal    %{HAMI_E2E_KUBE_VERSION}    1.34    broken on 1.34

Topology Test
    [Documentation]    Fails where the topology is the A100 one.
    [Tags]    HAMI-E2E-903
    Should Not Contain    %{HAMI_E2E_TOPOLOGY}    a100    broken on A100
"""

MATRIX = """\
name: tiny
kubernetes: ["1.34", "1.36"]
topologies:
  - name: h100
    topology: variables/sandbox_topology.yaml
  - name: a100
    topology: variables/sandbox_topology_a100.yaml
    variables: [variables/sandbox_a100.yaml]
"""

FAIL_UP = True   # the 1.36/a100 cell's sandbox does not start: the page must say so


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One matrix run of 2 versions x 2 topologies; the sandbox stand-in records its calls with their env."""
    work = tmp_path_factory.mktemp("matrix")
    (work / "suite.robot").write_text(SUITE)
    (work / "vars.yaml").write_text('HAMI_CHART_VERSION: "9.9.9"\n')
    (work / "matrix.yaml").write_text(MATRIX)
    calls: list[tuple[str, str, str]] = []

    def sandbox(command: str) -> tuple[float, int, str]:
        calls.append((command, os.environ[matrix.KUBE_VERSION_ENV], os.environ[matrix.TOPOLOGY_ENV]))
        failed = command == "up" and os.environ[matrix.KUBE_VERSION_ENV] == "1.36" \
            and "a100" in os.environ[matrix.TOPOLOGY_ENV] and FAIL_UP
        return 1.5, 2 if failed else 0, "sandbox error: no room\n" if failed else "up\n"

    saved = {name: os.environ.get(name) for name in (matrix.KUBE_VERSION_ENV, matrix.TOPOLOGY_ENV)}
    try:
        rc = matrix.run_matrix(work / "matrix.yaml", ["--matrix", str(work / "matrix.yaml"), "--variablefile",
                                                      str(work / "vars.yaml"), "--no-docs", str(work / "suite.robot")],
                               work / "results", lambda argv: run_suites.run(parse_command_line(argv)), sandbox)
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
    folder = next((work / "results" / "matrix" / "tiny").iterdir())
    return {"rc": rc, "calls": calls, "root": work / "results", "folder": folder,
            "record": json.loads((folder / "matrix.json").read_text())}


def test_every_cell_restarts_the_sandbox_with_its_version_and_topology(finished: dict) -> None:
    versions = [(command, version, Path(topology).name) for command, version, topology in finished["calls"]]
    assert versions == [(command, version, topology) for version in ("1.34", "1.36")
                        for topology in ("sandbox_topology.yaml", "sandbox_topology_a100.yaml")
                        for command in ("down", "up")]


def test_each_cell_is_archived_under_its_own_release_with_its_variables(finished: dict) -> None:
    cells = {cell["name"]: cell for cell in finished["record"]["cells"]}
    assert list(cells) == ["k1.34-h100", "k1.34-a100", "k1.36-h100", "k1.36-a100"]
    for name in ("k1.34-h100", "k1.34-a100", "k1.36-h100"):
        assert cells[name]["release"] == f"9.9.9+{name}"
        assert cells[name]["run_path"].startswith(f"9.9.9+{name}/")
        output = finished["root"] / cells[name]["run_path"] / "output.xml"
        suite = ExecutionResult(str(output)).suite
        assert suite.metadata["Matrix cell"] == cells[name]["title"]
    argv = json.loads((finished["root"] / cells["k1.34-a100"]["run_path"] / "run.json").read_text())["robot_argv"]
    assert str(REPO / "variables" / "sandbox_a100.yaml") in argv


def test_a_cell_whose_sandbox_did_not_start_has_no_run_and_fails_the_matrix(finished: dict) -> None:
    broken = finished["record"]["cells"][3]
    assert broken["run_path"] == "" and "sandbox up failed (exit 2): sandbox error: no room" in broken["error"]
    assert finished["rc"] >= 1


def test_matrix_page_has_each_cell_counts_links_and_the_tests_that_differ(finished: dict) -> None:
    page = (finished["folder"] / "index.html").read_text()
    for name in ("k1.34-h100", "k1.34-a100", "k1.36-h100"):
        run_path = next(c["run_path"] for c in finished["record"]["cells"] if c["name"] == name)
        assert f'href="../../../{run_path}/report.html"' in page
    assert "2 pass, 1 fail, 0 skip" in page      # 1.34/h100: only the 1.34 test fails
    assert "1 pass, 2 fail, 0 skip" in page      # 1.34/a100
    assert "3 pass, 0 fail, 0 skip" in page      # 1.36/h100
    assert "sandbox up failed" in page
    assert "GPU models: gpu-node-0: 2 x Fake-GPU" in page   # the topology row names what its cells recorded
    differing = page.split("Tests whose outcome differs between cells")[1]
    assert "HAMI-E2E-902" in differing and "HAMI-E2E-903" in differing and "HAMI-E2E-901" not in differing
    assert 'title="broken on 1.34' in differing


def test_combined_report_names_each_cell_and_the_index_links_the_matrix(finished: dict) -> None:
    combined = ExecutionResult(str(finished["folder"] / "output.xml")).suite
    assert [suite.name for suite in combined.suites] == ["Kubernetes 1.34 / h100", "Kubernetes 1.34 / a100",
                                                         "Kubernetes 1.36 / h100"]
    assert combined.statistics.failed == 3 and finished["rc"] == 3
    assert (finished["folder"] / "report.html").is_file()
    index = (finished["root"] / "index.html").read_text()
    assert f'href="{finished["folder"].relative_to(finished["root"]).as_posix()}/index.html"' in index


@pytest.mark.parametrize(("text", "message"), [
    ("kubernetes: ['1.34']\n", "needs 'kubernetes' and 'topologies'"),
    ("kubernetes: ['1.20']\ntopologies: [{name: x, topology: variables/sandbox_topology.yaml}]\n",
     "not 1.20"),
    ("kubernetes: ['1.34']\ntopologies: [{name: x, topology: variables/none.yaml}]\n", "is not a file"),
])
def test_bad_matrix_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "m.yaml").write_text(text)
    with pytest.raises(UsageError, match=message):
        matrix.load(tmp_path / "m.yaml")


def test_matrix_and_release_options_are_taken_out_of_the_cells_command_line() -> None:
    assert matrix.strip_matrix_options(["--matrix", "m.yaml", "--include", "smoke", "--release=x", "suites"]) == \
        (["--include", "smoke", "suites"], "x")
    with pytest.raises(UsageError, match="not on a --matrix run"):
        parse_command_line(["--matrix", "m.yaml", "--rerun-failed"])
