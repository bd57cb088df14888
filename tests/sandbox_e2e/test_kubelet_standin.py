"""hami-e2e-kubelet (the sandbox's device-plugin manager for one node) on a real API server: a test-only fake device
plugin registers on the node's kubelet socket, the Node's capacity and allocatable follow it, pods are admitted with
their Allocate responses kept on disk or rejected with the kubelet's reason and message.

The node is one of this file's own (kwok-managed, tainted, removed at the end), so the topology's nodes are untouched.
The sandbox is the session's test sandbox, or, when ``HAMI_E2E_SANDBOX_DIR`` is set, the sandbox that variable and
``HAMI_E2E_PORT_OFFSET`` name (started here when it does not run; left running).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

import sandbox.kubelet as kubelet
from sandbox import netcheck

from .conftest import REPO

NODE = "kubelet-standin-test"
RESOURCE = "example.com/fake"
NAMESPACE = "default"
FAKE_PLUGIN_PACKAGE = "./internal/fakeplugin/cmd/fake-device-plugin"


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def kubeconfig(request) -> Path:
    run_dir = os.environ.get("HAMI_E2E_SANDBOX_DIR")
    if not run_dir:
        return request.getfixturevalue("sandbox")
    result = subprocess.run([sys.executable, "-m", "sandbox", "up"], cwd=REPO, capture_output=True, text=True,
                            timeout=3600)
    assert result.returncode == 0, f"sandbox up failed:\n{result.stderr}"
    return Path(run_dir) / "kubeconfig"


@pytest.fixture(scope="module")
def core(kubeconfig: Path):
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.CoreV1Api(client.ApiClient(configuration))


@pytest.fixture(scope="module")
def node(core) -> Iterator[str]:
    from kubernetes.client.rest import ApiException

    core.create_node({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "annotations": {"kwok.x-k8s.io/node": "fake"},
                     "labels": {"kubernetes.io/hostname": NODE, "type": "kwok"}},
        "spec": {"taints": [{"key": "hami-e2e/kubelet-test", "value": "true", "effect": "NoSchedule"}]},
        "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                   "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
    })
    yield NODE
    for pod in core.list_namespaced_pod(NAMESPACE, field_selector=f"spec.nodeName={NODE}").items:
        core.delete_namespaced_pod(pod.metadata.name, NAMESPACE, grace_period_seconds=0)
    core.delete_node(NODE)

    def gone() -> bool:
        try:
            core.read_node(NODE)
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(gone, what=f"node {NODE} to be deleted")


@pytest.fixture(scope="module")
def fake_plugin_binary(tmp_path_factory) -> Path:
    """The test-only fake device plugin, built from the kubelet module (Go caches shared, so seconds when warm)."""
    out = tmp_path_factory.mktemp("fakeplugin") / "fake-device-plugin"
    result = subprocess.run(["go", "build", "-o", str(out), FAKE_PLUGIN_PACKAGE], cwd=kubelet.MODULE_DIR,
                            env=kubelet.go_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return out


class Processes:
    """Processes this test started, stopped by pid at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, argv: list[str], log: Path) -> subprocess.Popen:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
        self.started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=15)

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=15)


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    yield procs
    procs.stop_all()


def start_plugin(processes: Processes, binary: Path, plugin_dir: Path, count: int, log: Path) -> subprocess.Popen:
    proc = processes.start([str(binary), f"--dir={plugin_dir}", f"--resource={RESOURCE}", f"--count={count}",
                            "--fail-over=2"], log)
    line = proc.stdout.readline().strip()
    assert line == "registered", f"the fake plugin did not register ({line!r}); its log: {log.read_text()}"
    return proc


def counts(core) -> tuple[str | None, str | None]:
    status = core.read_node(NODE).status
    return (status.capacity or {}).get(RESOURCE), (status.allocatable or {}).get(RESOURCE)


def create_pod(core, name: str, *requests: int) -> str:
    """A pod bound to the test node whose containers ask for ``requests`` devices; HAMi's bind-phase "allocating"
    keeps kwok from starting it, as on a real node before Allocate."""
    containers = [{"name": f"c{i}", "image": "registry.invalid/none:1",
                   "resources": {"limits": {RESOURCE: str(n)}}} for i, n in enumerate(requests)]
    pod = core.create_namespaced_pod(NAMESPACE, {
        "metadata": {"name": name, "annotations": {"hami.io/bind-phase": "allocating"}},
        "spec": {"nodeName": NODE, "containers": containers,
                 "tolerations": [{"key": "hami-e2e/kubelet-test", "operator": "Exists"}]},
    })
    return pod.metadata.uid


def failed(core, name: str):
    return wait_for(lambda: (p := core.read_namespaced_pod(name, NAMESPACE)).status.phase == "Failed" and p,
                    what=f"pod {name} to fail admission")


def test_node_capacity_follows_the_plugin_and_pods_are_admitted(core, node, fake_plugin_binary, processes, request,
                                                                tmp_path: Path, kubeconfig: Path):
    binary = kubelet.ensure_binary()
    short = Path(tempfile.mkdtemp(prefix="kst-"))  # a unix socket path must stay under 108 bytes
    request.addfinalizer(lambda: shutil.rmtree(short, ignore_errors=True))
    root, state_dir = short / "root", tmp_path / "state"
    plugin_dir = root / "var/lib/kubelet/device-plugins"
    kubelet_log = tmp_path / "kubelet.log"
    manager = processes.start([str(binary), f"--node={node}", f"--kubeconfig={kubeconfig}", f"--root={root}",
                               f"--state-dir={state_dir}", "-v=2"], kubelet_log)
    wait_for(lambda: (plugin_dir / "kubelet.sock").exists(), what="the Registration socket")

    plugin = start_plugin(processes, fake_plugin_binary, plugin_dir, 4, tmp_path / "plugin.log")
    wait_for(lambda: counts(core) == ("4", "4"), what="capacity and allocatable 4")

    # Admitted: one device, the Allocate response kept for the container.
    uid = create_pod(core, "standin-ok", 1)
    state_file = state_dir / uid / "c0.json"
    wait_for(state_file.exists, what="the admitted container's state file")
    kept = json.loads(state_file.read_text())
    assert {k: kept[k] for k in ("namespace", "pod", "uid", "container", "resource")} == {
        "namespace": NAMESPACE, "pod": "standin-ok", "uid": uid, "container": "c0", "resource": RESOURCE}
    assert len(kept["deviceIDs"]) == 1 and kept["envs"] == {"FAKE_DEVICES": kept["deviceIDs"][0]}
    assert kept["mounts"][0]["containerPath"] == f"/fake/{kept['deviceIDs'][0]}"

    # The plugin's Allocate fails (it refuses more than 2 IDs): rejected as the kubelet rejects it.
    create_pod(core, "standin-refused", 3)
    pod = failed(core, "standin-refused")
    assert (pod.status.reason, pod.status.message) == (
        "UnexpectedAdmissionError", "Pod was rejected: Allocate failed due to rpc error: code = Unknown desc = "
        "device number not matched, which is unexpected")

    # The refused pod's devices were given back: 3 are available, 4 are asked.
    create_pod(core, "standin-too-big", 4)
    pod = failed(core, "standin-too-big")
    assert pod.status.message == ("Pod was rejected: Allocate failed due to requested number of devices unavailable "
                                  f"for {RESOURCE}. Requested: 4, Available: 3, which is unexpected")

    # The plugin dies: capacity stays, allocatable drops to 0; it comes back with 6 devices.
    processes.stop(plugin)
    wait_for(lambda: counts(core) == ("4", "0"), what="allocatable 0 after the plugin died")
    start_plugin(processes, fake_plugin_binary, plugin_dir, 6, tmp_path / "plugin2.log")
    wait_for(lambda: counts(core) == ("6", "6"), what="capacity and allocatable 6 after it registered again")

    assert [s for s in netcheck.sockets([manager.pid]) if s.listening] == [], "the manager listens on TCP"
    assert netcheck.violations([manager.pid]) == []
    assert processes.stop(manager) == 0, kubelet_log.read_text()
    assert not (plugin_dir / "kubelet.sock").exists()
    log = kubelet_log.read_text()
    for line in ('"Got registration request from device plugin" resourceName="example.com/fake"',
                 '"Node capacity changed" node="kubelet-standin-test" resourceName="example.com/fake" '
                 'capacity="4 -> 6" allocatable="0 -> 6"',
                 '"Allocate succeeded" pod="default/standin-ok" container="c0"'):
        assert line in log, f"{line!r} not in the manager's log {kubelet_log}"
