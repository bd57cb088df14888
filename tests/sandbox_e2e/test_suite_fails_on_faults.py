"""Every suite test that runs on the sandbox can fail: each fault below breaks what one test guards, and that test
must then FAIL with an expected-vs-actual message (a test that cannot fail is a defect).

The suite runs against its own sandbox (shifted ports); the last fault stops that sandbox's kwok.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from robot.api import ExecutionResult

from sandbox import tools, twin

from .conftest import REPO, TEST_PORT_OFFSET, short_folder

OFFSET = str(TEST_PORT_OFFSET + 5000)


@pytest.fixture(scope="module")
def faulty_env():
    with short_folder() as folder:
        run = folder / "run"
        env = {**os.environ, "HAMI_E2E_PORT_OFFSET": OFFSET, "HAMI_E2E_SANDBOX_DIR": str(run)}
        started = subprocess.run([sys.executable, "-m", "sandbox", "up"], cwd=REPO, env=env, capture_output=True,
                                 text=True)
        try:
            assert started.returncode == 0, started.stderr
            yield env, run
        finally:
            subprocess.run([sys.executable, "-m", "sandbox", "down"], cwd=REPO, env=env, capture_output=True)


def run_suite(env: dict[str, str], out: Path, *options: str) -> dict[str, tuple[str, str]]:
    """Run robot on the preflight and install suites; map each test's ID tag to (status, message)."""
    subprocess.run([sys.executable, "-m", "robot", "--outputdir", str(out), "--log", "NONE", "--report", "NONE",
                    "--console", "none", "--suite", "Preflight", "--suite", "Install",
                    "--variable", "POD_START_TIMEOUT:5s", *options, "suites/"], cwd=REPO, env=env, check=False)
    results = {}
    for test in ExecutionResult(str(out / "output.xml")).suite.all_tests:
        test_id = next(tag for tag in test.tags if tag.startswith("HAMI-E2E-"))
        results[test_id] = (test.status, test.message)
    return results


def test_the_unbroken_sandbox_passes_every_check_that_runs_there(faulty_env, tmp_path):
    env, _ = faulty_env
    results = run_suite(env, tmp_path)
    # The twin runs HAMi: the preflight and every install check run and pass (005 is left to the install suite).
    expected = ["000", "001", "002", "003", "004", "010", "011", "012", "013", "014", "015", "016"]
    assert {k: s for k, (s, _) in results.items() if s != "SKIP"} == {f"HAMI-E2E-{n}": "PASS" for n in expected}


def test_wrong_vgpu_capacity_fails_the_capacity_check(faulty_env, tmp_path):
    env, _ = faulty_env
    status, message = run_suite(env, tmp_path, "--variable", "DEVICE_SPLIT_COUNT:5")["HAMI-E2E-014"]
    assert status == "FAIL"
    assert "20" in message and "10" in message, message


def test_a_missing_gpu_node_fails_the_preflight(faulty_env, tmp_path):
    env, _ = faulty_env
    status, message = run_suite(env, tmp_path, "--variable", 'GPU_NODES:["gpu-node-0", "gpu-node-9"]')["HAMI-E2E-000"]
    assert status == "FAIL"
    assert "gpu-node-9 is not in the cluster" in message, message


def test_an_extra_gpu_node_fails_the_node_check(faulty_env, tmp_path):
    env, _ = faulty_env
    status, message = run_suite(env, tmp_path, "--variable", 'GPU_NODES:["gpu-node-0"]')["HAMI-E2E-003"]
    assert status == "FAIL"
    assert "gpu-node-1" in message, message


def test_a_missing_helm_fails_the_preflight(faulty_env, tmp_path):
    env, run = faulty_env
    options = ["--variable", "TARGET:cluster", "--variable", f"KUBECONFIG:{run / 'kubeconfig'}",
               "--variable", "HELM_BINARY:/nonexistent/helm"]
    status, message = run_suite(env, tmp_path, *options)["HAMI-E2E-000"]
    assert status == "FAIL"
    assert "'/nonexistent/helm' (variable HELM_BINARY) was not found" in message, message


def test_an_unreachable_api_server_fails_the_preflight_once_and_skips_the_rest(faulty_env, tmp_path):
    env, run = faulty_env
    kubeconfig = json.loads((run / "kubeconfig").read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    broken = tmp_path / "kubeconfig"
    broken.write_text(json.dumps(kubeconfig))
    results = run_suite(env, tmp_path, "--variable", "TARGET:cluster", "--variable", f"KUBECONFIG:{broken}")
    status, message = results.pop("HAMI-E2E-000")
    assert status == "FAIL" and "https://127.0.0.1:9" in message and str(broken) in message, message
    assert "is unreachable: connection refused" in message, message
    assert {status for status, _ in results.values()} == {"SKIP"}


def test_pods_that_never_start_fail_the_plain_pod_check(faulty_env, tmp_path):
    env, run = faulty_env
    os.kill(int((run / "pids" / "kwok.pid").read_text().split()[0]), signal.SIGTERM)  # a process this test started
    # As a cluster target: for a sandbox target the suite would restart the half-dead sandbox and pass. A cluster
    # target takes helm from PATH and the chart repository from the variables: the sandbox's are named, as a tester
    # would name theirs.
    options = ["--variable", "TARGET:cluster", "--variable", f"KUBECONFIG:{run / 'kubeconfig'}",
               "--variable", f"HELM_BINARY:{tools.ensure_tools().helm}",
               "--variable", f"HAMI_CHART_REPO_URL:{twin.read_info(run)['chart_repo']}"]
    status, message = run_suite(env, tmp_path, *options)["HAMI-E2E-004"]
    assert status == "FAIL"
    assert "Running" in message and "Pending" in message, message
