"""A run stopped half way leaves nothing behind: Ctrl-C or SIGTERM, once (robot stops gracefully) or twice (robot
stops at once; the library's exit hook undoes the rest). A run killed outright (SIGKILL) leaves its objects, and the
next run's preflight removes them and says so, while a namespace and a node label of someone else stay untouched.

Each run is robot on a small suite of the common resources that creates what a test creates (a Helm release in a
namespace made for it, a test namespace with a pod, a node annotation), then waits; the signal comes once all of
that exists. The sandbox is this module's own (shifted ports).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from robot.api import ExecutionResult

from hami_e2e.core.ownership import MANAGED_SELECTOR, NODE_CHANGES_ANNOTATION

from .conftest import REPO, TEST_PORT_OFFSET

OFFSET = str(TEST_PORT_OFFSET + 15000)
RUN_DIR = Path("/tmp/hami-e2e-sandbox-aborts")
MARKER = "hami-e2e.test/aborted-run"
FOREIGN_NAMESPACE = "team-foreign"
FOREIGN_LABEL = ("team.example/owner", "someone-else")

SUITE = """*** Settings ***
Resource          {repo}/resources/gpu_pods.resource

Suite Setup       Prepare Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up


*** Test Cases ***
Everything A Test Creates, Then A Long Wait
    Install HAMi Chart    {chart}    release=abort-probe    namespace=abort-probe    uninstall_after=suite
    ...    wait_ready=${{False}}
    Create Pod Without GPU    stuck    node_name=no-such-node
    Set Node Annotation    gpu-node-0    {marker}    set-by-the-aborted-run
    Wait Until Pod Is Running    stuck    timeout=5 min
"""


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    run = RUN_DIR  # short: a node's kubelet socket path must fit a unix socket's 107 bytes
    env = {**os.environ, "HAMI_E2E_PORT_OFFSET": OFFSET, "HAMI_E2E_SANDBOX_DIR": str(run),
           "HAMI_E2E_RUNS_DIR": str(tmp_path_factory.mktemp("runs")), "HAMI_E2E_ARCHIVE": "off"}
    started = subprocess.run([sys.executable, "-m", "sandbox", "up", "--no-hami"], cwd=REPO, env=env,
                             capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(run / "kubeconfig"), client_configuration=configuration)
    core = client.CoreV1Api(client.ApiClient(configuration))
    core.create_namespace({"metadata": {"name": FOREIGN_NAMESPACE}})
    core.patch_node("gpu-node-0", {"metadata": {"labels": dict([FOREIGN_LABEL])}})
    yield env, core
    subprocess.run([sys.executable, "-m", "sandbox", "down"], cwd=REPO, env=env, capture_output=True)


@pytest.fixture(scope="module")
def probe_suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe")
    chart = folder / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: abort-probe\nversion: 0.1.0\n")
    (chart / "templates" / "settings.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: abort-probe\ndata:\n  a: b\n")
    suite = folder / "aborted.robot"
    suite.write_text(SUITE.format(repo=REPO, chart=chart, marker=MARKER))
    return suite


def start_robot(env: dict[str, str], suite: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "robot", "--outputdir", str(out), "--console", "dotted",
                             "--variable", "DEFAULT_TIMEOUT:20s", str(suite)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def ours(core) -> list[str]:
    """Everything of a hami-e2e run on the cluster: namespaces, release Secrets, node change records, the marker."""
    found = [f"namespace {n.metadata.name}" for n in core.list_namespace(label_selector=MANAGED_SELECTOR).items
             if n.status.phase != "Terminating"]
    found += [f"secret {s.metadata.namespace}/{s.metadata.name}"
              for s in core.list_secret_for_all_namespaces(label_selector=f"owner=helm,{MANAGED_SELECTOR}").items]
    for node in core.list_node().items:
        annotations = node.metadata.annotations or {}
        found += [f"{key} on {node.metadata.name}" for key in (NODE_CHANGES_ANNOTATION, MARKER) if key in annotations]
    return found


def wait_until_everything_exists(core, robot: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while len(ours(core)) < 5:  # release namespace, release Secret, test namespace, change record, marker
        assert robot.poll() is None, robot.stdout.read()
        assert time.monotonic() < deadline, f"the probe created only {ours(core)}"
        time.sleep(0.2)
    time.sleep(1)  # into the wait


def foreign_objects_are_untouched(core) -> None:
    assert core.read_namespace(FOREIGN_NAMESPACE).status.phase == "Active"
    assert core.read_node("gpu-node-0").metadata.labels.get(FOREIGN_LABEL[0]) == FOREIGN_LABEL[1]


@pytest.mark.parametrize(("signals", "pause"), [
    ((signal.SIGINT,), 0), ((signal.SIGINT, signal.SIGINT), 0.05),
    ((signal.SIGTERM,), 0), ((signal.SIGTERM, signal.SIGTERM), 0.2),
], ids=["ctrl-c", "ctrl-c-twice", "sigterm", "sigterm-twice"])
def test_a_stopped_run_removes_what_it_created(sandbox, probe_suite, tmp_path, signals, pause):
    env, core = sandbox
    robot = start_robot(env, probe_suite, tmp_path)
    wait_until_everything_exists(core, robot)
    for number in signals:
        robot.send_signal(number)  # our own child process
        time.sleep(pause)
    output, _ = robot.communicate(timeout=300)
    assert robot.returncode != 0, output
    assert ours(core) == [], output
    foreign_objects_are_untouched(core)
    assert not list(Path(env["HAMI_E2E_RUNS_DIR"]).glob("*.lock")), "the run lock was not given up"
    if len(signals) == 2:  # robot stopped at once; the exit hook undid what was still tracked
        assert "Execution forcefully stopped" in output and "Cleanup done." in output, output


def test_a_killed_runs_leftovers_are_removed_by_the_next_run_and_named(sandbox, probe_suite, tmp_path):
    env, core = sandbox
    robot = start_robot(env, probe_suite, tmp_path / "killed")
    wait_until_everything_exists(core, robot)
    robot.kill()  # SIGKILL: nothing of the run gets to clean up
    robot.communicate(timeout=60)
    left = ours(core)
    assert len(left) == 5, left
    started = time.monotonic()
    next_run = subprocess.run(
        [sys.executable, "-m", "robot", "--outputdir", str(tmp_path / "next"), "--console", "none",
         "--include", "HAMI-E2E-000", "suites/"], cwd=REPO, env=env, capture_output=True, text=True)
    assert next_run.returncode == 0, next_run.stdout
    assert ours(core) == []
    foreign_objects_are_untouched(core)
    result = ExecutionResult(str(tmp_path / "next" / "output.xml"))
    removed = result.suite.metadata["Leftovers removed"]
    for thing in ("uninstalled helm release abort-probe in abort-probe", "deleted namespace abort-probe",
                  "deleted namespace hami-e2e-aborted-", f"restored annotation {MARKER} on node gpu-node-0"):
        assert thing in removed, removed
    assert any("Removed leftovers of earlier runs" in m.message for m in result.errors.messages)
    assert time.monotonic() - started < 60
