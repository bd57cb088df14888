"""Issue 16's acceptance on sandboxes of this module's own (run dir ``/tmp/matrix-sandbox``, port offset 8000, one
after the other): the sandbox starts at each Kubernetes version it builds and reports it, HAMi's chart installs there
with the kube-scheduler of that version, and a GPU pod is scheduled, allocated and runs; and a topology's per-node
driver and CUDA versions and GPU models reach nvidia-smi inside GPU pods.

The first start of a version builds it (about 4 to 9 minutes on 2 cores; then cached). Each check names the fault
that fails it: a binary built from the wrong module or without the version ldflags (server version), a catalog that
gives HAMi's scheduler pod another kube-scheduler (image tag, process binary), a control-plane flag or scheduler
configuration the version refuses (the start, the extender's events), a profile that ignores the topology's driver
(nvidia-smi's driver and CUDA versions), a type selection that misses the model (node of the pod, nvidia-smi name).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from sandbox import config, twin

from .conftest import sandbox_cli

RUN_DIR = Path("/tmp/matrix-sandbox")
PORT_OFFSET = 8000
NAMESPACE = "kube-versions"
SCHEDULER_NAME = "hami-scheduler"
POD_TIMEOUT = 90.0          # the first filter after the scheduler starts may wait for its 15 s device ticker
WEBHOOK_TIMEOUT = 60.0
HELM_TIMEOUT = 300.0
SMI = ("nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; "
       "nvidia-smi | grep -o 'CUDA Version: [0-9.]*'")


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in (config.KUBE_VERSION_ENV, config.TOPOLOGY_ENV)}
    return {**base, "HAMI_E2E_SANDBOX_DIR": str(RUN_DIR), "HAMI_E2E_PORT_OFFSET": str(PORT_OFFSET), **extra}


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def smi_pod(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A GPU pod whose container prints nvidia-smi's model, driver, memory and CUDA version, then exits."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations or {}},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "work", "image": "registry.invalid/hami-e2e/workload:1",
                                     "command": ["sh", "-c", SMI],
                                     "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "2000"}}}]}}


class Started:
    """A sandbox this module started: its API client, helm and what ``sandbox status`` said."""

    def __init__(self, environment: dict[str, str]) -> None:
        from kubernetes import client, config as kube_config

        self.env = environment
        configuration = client.Configuration()
        kube_config.load_kube_config(config_file=str(RUN_DIR / "kubeconfig"), client_configuration=configuration)
        self.api = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self.api)
        self.helm = json.loads((RUN_DIR / "tools.json").read_text())["helm"]

    def install_hami(self) -> None:
        result = sandbox_cli("hami", "install", env=self.env, timeout=HELM_TIMEOUT)
        assert result.returncode == 0, result.stderr
        self.core.create_namespace({"metadata": {"name": NAMESPACE}})

    def run_to_completion(self, body: dict[str, Any]) -> tuple[Any, str]:
        """Create the pod once HAMi's webhook answers (its ``failurePolicy: Ignore`` would let an early pod reach
        the default scheduler unmutated), wait until it succeeded; returns the pod and its log."""
        wait_for(lambda: self.core.create_namespaced_pod(NAMESPACE, {**body, "metadata": {
            **body["metadata"], "name": "probe"}}, dry_run="All").spec.scheduler_name == SCHEDULER_NAME,
            WEBHOOK_TIMEOUT, "HAMi's webhook to answer")
        name = body["metadata"]["name"]
        self.core.create_namespaced_pod(NAMESPACE, body)
        pod = wait_for(lambda: (p := self.core.read_namespaced_pod(name, NAMESPACE)).status.phase
                       in ("Succeeded", "Failed") and p, POD_TIMEOUT, f"pod {name} to finish")
        log = self.core.read_namespaced_pod_log(name, NAMESPACE, container="work")
        assert pod.status.phase == "Succeeded", f"{name}: {pod.status.phase}\n{log}"
        return pod, "\n".join(line for line in log.splitlines() if not line.startswith("[HAMI-core"))


@pytest.fixture
def start() -> Iterator[Callable[..., Started]]:
    """``start(version, topology)``: a fresh sandbox of this module (stopped at the end of the test)."""
    def up(version: str, topology: Path | None = None) -> Started:
        extra = {config.KUBE_VERSION_ENV: version} | ({config.TOPOLOGY_ENV: str(topology)} if topology else {})
        environment = env(**extra)
        sandbox_cli("down", env=environment)
        result = sandbox_cli("up", env=environment)
        assert result.returncode == 0, f"sandbox up at Kubernetes {version} failed:\n{result.stderr}"
        return Started(environment)

    yield up
    sandbox_cli("down", env=env())


@pytest.mark.parametrize("version", list(config.kube_modules()))
def test_hami_installs_and_schedules_a_gpu_pod_at_each_kubernetes_version(start, version: str) -> None:
    pinned = config.pins(version).kubernetes
    sandbox = start(version)
    from kubernetes import client

    assert client.VersionApi(sandbox.api).get_code().git_version == pinned
    status = sandbox_cli("status", env=sandbox.env)
    assert f"Kubernetes {pinned}" in status.stdout, status.stdout
    other = next(v for v in config.kube_modules() if v != version)
    refused = sandbox_cli("up", env={**sandbox.env, config.KUBE_VERSION_ENV: other})
    assert refused.returncode == 2 and f"runs Kubernetes {pinned}, not " in refused.stderr, refused.stderr

    sandbox.install_hami()
    scheduler = next(p for p in sandbox.core.list_namespaced_pod(twin.NAMESPACE).items
                     if p.metadata.name.startswith("hami-scheduler-"))
    image = next(c.image for c in scheduler.spec.containers if c.name == "kube-scheduler")
    assert image.endswith(f"/kube-scheduler:{pinned}"), image   # the chart's tag: the server's version
    pids = {c["name"]: c["pid"] for pod in twin.processes(RUN_DIR) if pod["pod"].endswith(scheduler.metadata.name)
            for c in pod["containers"]}
    images = json.loads((RUN_DIR / "images.json").read_text())["images"]
    root = next(i["root"] for i in images if f"kube-scheduler:{pinned}" in i["refs"])
    binary = Path(root) / "usr" / "local" / "bin" / "kube-scheduler"
    running = os.stat(f"/proc/{pids['kube-scheduler']}/exe")   # a bind mount keeps the file's device and inode
    assert (running.st_dev, running.st_ino) == (binary.stat().st_dev, binary.stat().st_ino), binary
    reported = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    assert reported.strip() == f"Kubernetes {pinned}", (binary, reported)

    pod, log = sandbox.run_to_completion(smi_pod("smi"))
    annotations = pod.metadata.annotations or {}
    assert pod.spec.scheduler_name == SCHEDULER_NAME and annotations.get("hami.io/bind-phase") == "success", \
        annotations
    assert "NVIDIA H100 80GB HBM3, 580.159.04, 2000 MiB" in log and "CUDA Version: 13.0" in log, log


def test_each_nodes_driver_cuda_and_models_reach_nvidia_smi_in_its_pods(start) -> None:
    sandbox = start(config.default_kube_version(), config.REPO_DIR / "variables" / "sandbox_topology_mixed.yaml")
    labels = {node.metadata.name: node.metadata.labels for node in sandbox.core.list_node().items}
    assert labels["gpu-node-0"]["nvidia.com/cuda.driver-version.full"] == "550.163.01"
    assert labels["gpu-node-1"]["nvidia.com/cuda.runtime-version.full"] == "13.0"
    sandbox.install_hami()
    expected = {   # type asked for -> (node, nvidia-smi's first line, CUDA version)
        "L40S": ("gpu-node-0", "NVIDIA L40S, 550.163.01, 2000 MiB", "12.4"),
        "T4": ("gpu-node-0", "Tesla T4, 550.163.01, 2000 MiB", "12.4"),
        "H100": ("gpu-node-1", "NVIDIA H100 80GB HBM3, 580.159.04, 2000 MiB", "13.0"),
    }
    for gpu_type, (node, line, cuda) in expected.items():
        name = f"smi-{gpu_type.lower()}"
        pod, log = sandbox.run_to_completion(smi_pod(name, {"nvidia.com/use-gputype": gpu_type}))
        assert pod.spec.node_name == node, f"{name} ran on {pod.spec.node_name}"
        assert log.splitlines()[0] == line and f"CUDA Version: {cuda}" in log, f"{name}:\n{log}"


def test_a_version_the_sandbox_does_not_build_is_refused_with_the_ones_it_does() -> None:
    result = sandbox_cli("up", "--kube-version", "1.20", env=env())
    assert result.returncode == 2
    assert "Kubernetes 1.20 is not one the sandbox builds (it has 1.34, 1.35, 1.36" in result.stderr, result.stderr
