"""Robot end to end on bad input: wherever the tester starts (all of ``suites/`` or one suite file), the run has
exactly one failed test, whose message is the preflight's cause naming the file or variable; every other test is
skipped with that same cause, within 10 s of the start, and nothing is created on the cluster.

The cluster cases run against the loopback fake API server (tests/fake_apiserver.py), which records writes.
"""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from robot.api import ExecutionResult

from fake_apiserver import FakeApiServer, node_json

REPO = Path(__file__).resolve().parents[1]
REGISTERED = (
    '[{"id":"GPU-a","count":10,"devmem":81559,"devcore":100,"type":"NVIDIA H100 80GB HBM3","health":true},'
    '{"id":"GPU-b","index":1,"count":10,"devmem":81559,"devcore":100,"type":"NVIDIA H100 80GB HBM3","health":true}]'
)


def robot(tmp_path: Path, target: str, *options: str) -> tuple[list, float]:
    """Run robot on ``target`` (relative to the repository) as a cluster run; the tests and the wall time."""
    helm = tmp_path / "helm"
    helm.write_text("#!/bin/sh\necho 'v3.16.2+g13654a5'\n")
    helm.chmod(helm.stat().st_mode | stat.S_IEXEC)
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "robot", "--outputdir", str(tmp_path / "out"), "--log", "NONE", "--report", "NONE",
         "--console", "none", "--variable", "TARGET:cluster", "--variable", f"HELM_BINARY:{helm}",
         "--variable", "HAMI_INSTALL:False", *options, target],
        cwd=REPO, check=False,
    )
    elapsed = time.monotonic() - started
    tests = ExecutionResult(str(tmp_path / "out" / "output.xml")).suite.all_tests
    # suites/host/ is the GPU host tier (no cluster, its own setup skips it without a GPU): not the preflight's
    return [t for t in tests if "suites/host/" not in str(t.source)], elapsed


def one_verdict(tests: list, *fragments: str) -> str:
    """The run's single failure message, after checking every other test skipped with the same cause."""
    failed = [t for t in tests if t.status == "FAIL"]
    assert len(failed) == 1, [(t.name, t.status, t.message) for t in tests if t.status != "SKIP"]
    message = failed[0].message.removeprefix("Setup failed:\n")  # a first test with the common Test Setup
    assert message.startswith("Preflight failed: ")
    for fragment in fragments:
        assert fragment in message, message
    cause = message.removeprefix("Preflight failed: ")
    assert all(t.status == "SKIP" and t.message.endswith(cause) for t in tests if t is not failed[0])
    return cause


@pytest.mark.parametrize("target", ["suites/", "suites/10__vgpu_pods.robot"])
def test_a_missing_kubeconfig_gives_one_failure_wherever_the_run_starts(tmp_path, target):
    missing = tmp_path / "gone" / "kubeconfig"
    tests, elapsed = robot(tmp_path, target, "--variable", f"KUBECONFIG:{missing}")
    one_verdict(tests, f"The kubeconfig file {missing} (variable KUBECONFIG) does not exist.")
    assert len(tests) > 5 and elapsed < 10


def test_the_whole_run_reports_the_cause_in_its_first_test_and_metadata(tmp_path):
    missing = tmp_path / "kubeconfig"
    tests, _ = robot(tmp_path, "suites/", "--variable", f"KUBECONFIG:{missing}")
    assert tests[0].name == "Target Passes Preflight" and tests[0].status == "FAIL"
    metadata = ExecutionResult(str(tmp_path / "out" / "output.xml")).suite.metadata
    assert str(missing) in metadata["Preflight"] and metadata["Preflight"].startswith("FAILED after")


def test_a_context_not_in_the_kubeconfig_is_named(tmp_path):
    with FakeApiServer(nodes=[node_json("gpu-node-0"), node_json("gpu-node-1")]) as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        tests, elapsed = robot(tmp_path, "suites/00__preflight.robot", "--variable", f"KUBECONFIG:{kubeconfig}",
                               "--variable", "KUBE_CONTEXT:production")
        assert api.writes == [] and api.requests == []
    one_verdict(tests, "'production' (KUBE_CONTEXT)", str(kubeconfig), "it has: lab")
    assert elapsed < 10


def test_refused_credentials_are_named_and_nothing_is_created(tmp_path):
    with FakeApiServer(nodes=[node_json("gpu-node-0"), node_json("gpu-node-1")]) as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", token="revoked")
        tests, elapsed = robot(tmp_path, "suites/", "--variable", f"KUBECONFIG:{kubeconfig}")
        assert api.writes == []
    one_verdict(tests, "refused the credentials of user tester", "HTTP 401", str(kubeconfig))
    assert elapsed < 10


def test_placeholders_of_the_example_file_are_named_with_the_file(tmp_path):
    variables = tmp_path / "cluster.yaml"
    variables.write_text((REPO / "variables" / "cluster.example.yaml").read_text())
    tests, elapsed = robot(tmp_path, "suites/", "--variablefile", str(variables))
    one_verdict(tests, f"The variable file {variables} still has CHANGE-ME placeholders in", "GPU_NODES",
                "SCHEDULER_METRICS_URL")
    assert elapsed < 10


def test_an_unknown_vendor_is_named(tmp_path):
    tests, _ = robot(tmp_path, "suites/00__preflight.robot", "--variable", "VENDOR:amd")
    one_verdict(tests, "VENDOR 'amd' is unknown", "nvidia")


def test_a_gpu_node_missing_from_the_cluster_is_named_and_nothing_is_created(tmp_path):
    with FakeApiServer(nodes=[node_json("gpu-node-0"), node_json("gpu-node-1")]) as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        tests, elapsed = robot(tmp_path, "suites/", "--variable", f"KUBECONFIG:{kubeconfig}",
                               "--variable", 'GPU_NODES:["gpu-node-0", "gpu-node-9"]')
        assert api.writes == []
    one_verdict(tests, "gpu-node-9 is not in the cluster", "GPU_NODES")
    assert elapsed < 10


def test_registered_memory_that_differs_from_the_variables_is_named(tmp_path):
    nodes = [node_json(n, annotations={"hami.io/node-nvidia-register": REGISTERED}) for n in ("gpu-node-0", "gpu-node-1")]
    with FakeApiServer(nodes=nodes) as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        tests, _ = robot(tmp_path, "suites/", "--variable", f"KUBECONFIG:{kubeconfig}",
                         "--variable", "GPU_MEMORY_MIB:40960")
        assert api.writes == []
    one_verdict(tests, "gpu-node-0 has 81559 MiB per GPU, GPU_MEMORY_MIB says 40960")


def test_a_missing_helm_is_named(tmp_path):
    with FakeApiServer(nodes=[node_json("gpu-node-0"), node_json("gpu-node-1")]) as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        tests, _ = robot(tmp_path, "suites/", "--variable", f"KUBECONFIG:{kubeconfig}",
                         "--variable", "HELM_BINARY:/nonexistent/helm")
    one_verdict(tests, "'/nonexistent/helm' (variable HELM_BINARY) was not found")


def test_a_number_that_is_no_number_is_named(tmp_path):
    with FakeApiServer(nodes=[node_json("gpu-node-0"), node_json("gpu-node-1")]) as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        tests, _ = robot(tmp_path, "suites/", "--variable", f"KUBECONFIG:{kubeconfig}",
                         "--variable", "GPUS_PER_NODE:two")
    one_verdict(tests, "GPUS_PER_NODE is 'two', not a whole number.")
