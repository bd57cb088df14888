"""The sandbox end to end: a real API server, kwok GPU nodes, pods, logs, exec, helm, loopback only, clean down.

The tests share one sandbox (session fixture) and run in file order; the last one stops it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import astuple
from datetime import datetime, timezone
from pathlib import Path

import pytest

from sandbox import charts, config, netcheck, topology

from .conftest import REPO, TEST_PORT_OFFSET, TEST_RUN_DIR, sandbox_cli, sandbox_env

NAMESPACE = "default"
POD = "sandbox-gpu-pod"


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """True for a live process; a zombie waiting for its reaper counts as gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pids() -> list[int]:
    return [int(p.read_text().split()[0]) for p in (TEST_RUN_DIR / "pids").glob("*.pid")]


def test_server_reports_the_pinned_kubernetes_version(api):
    from kubernetes import client

    version = client.VersionApi(api).get_code()
    assert version.git_version == config.pins().kubernetes
    assert version.minor == config.pins().kube_minor


def test_up_on_a_running_sandbox_is_a_no_op(sandbox):
    started = time.monotonic()
    result = sandbox_cli("up")
    assert result.returncode == 0
    assert "already running" in result.stderr
    assert time.monotonic() - started < 10


def test_nodes_show_the_topology_capacity(api):
    from kubernetes import client

    topo = topology.load(config.TOPOLOGY_FILE)
    nodes = {n.metadata.name: n for n in client.CoreV1Api(api).list_node().items}
    assert sorted(nodes) == sorted(n.name for n in topo.nodes)
    for node in topo.nodes:
        live = nodes[node.name]
        assert live.status.allocatable["nvidia.com/gpu"] == str(len(node.gpus) * topo.split_count)
        assert live.metadata.labels["gpu"] == "on"
        assert [(a.type, a.address) for a in live.status.addresses] == [("InternalIP", "127.0.0.1")]
        assert any(c.type == "Ready" and c.status == "True" for c in live.status.conditions)


def test_a_pod_requesting_a_gpu_runs_on_a_fake_node(api):
    from kubernetes import client

    core = client.CoreV1Api(api)
    core.create_namespaced_pod(NAMESPACE, {
        "metadata": {"name": POD},
        "spec": {"containers": [{"name": "cuda", "image": "registry.invalid/cuda:12",
                                 "command": ["sh", "-c", "nvidia-smi; sleep infinity"],
                                 "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    })
    pod = wait_for(lambda: (p := core.read_namespaced_pod(POD, NAMESPACE)).status.phase == "Running" and p,
                   what="the GPU pod to run")
    assert pod.spec.node_name in {n.name for n in topology.load(config.TOPOLOGY_FILE).nodes}
    assert netcheck.is_loopback(f"{pod.status.pod_ip}:0"), f"pod IP {pod.status.pod_ip} is not loopback"


def _kwok_object(api, kind: str, plural: str, spec: dict) -> None:
    from kubernetes import client

    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "kwok.x-k8s.io", "v1alpha1", NAMESPACE, plural,
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": kind, "metadata": {"name": POD}, "spec": spec})


def test_pod_logs_come_from_a_file_the_sandbox_controls(api):
    from kubernetes import client

    log_file = TEST_RUN_DIR / "podlogs" / f"{NAMESPACE}_{POD}_cuda.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    log_file.write_text(f"{stamp} stdout F first line\n{stamp} stderr F second line\n")
    _kwok_object(api, "Logs", "logs", {"logs": [{"containers": ["cuda"], "logsFile": str(log_file)}]})
    core = client.CoreV1Api(api)
    text = wait_for(lambda: _try(lambda: core.read_namespaced_pod_log(POD, NAMESPACE, container="cuda")),
                    what="pod logs")
    assert text == "first line\nsecond line\n"


def _try(call):
    try:
        return call()
    except Exception:  # noqa: BLE001 - kwok may not have seen the Logs object yet
        return None


REAL_POD = "sandbox-real-pod"
RUNNABLE_IMAGE = "registry.k8s.io/kube-scheduler:{version}"   # an image the node agent runs for real


def _exec(api, pod: str, command: list[str]):
    from kubernetes import client
    from kubernetes.stream import stream

    resp = stream(client.CoreV1Api(api).connect_get_namespaced_pod_exec, pod, NAMESPACE, container="main",
                  command=command, stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    resp.run_forever(timeout=10)
    return resp.read_stdout(), resp.read_stderr(), json.loads(resp.read_channel(3) or "{}")


def test_exec_runs_inside_the_container_and_keeps_stdout_stderr_and_the_environment_apart(api):
    from kubernetes import client

    core = client.CoreV1Api(api)
    core.create_namespaced_pod(NAMESPACE, {
        "metadata": {"name": REAL_POD},
        "spec": {"securityContext": {"runAsUser": 65534, "runAsGroup": 65534},
                 "containers": [{"name": "main", "image": RUNNABLE_IMAGE.format(version=config.pins().kubernetes),
                                 "command": ["sleep", "3600"], "workingDir": "/tmp",
                                 "env": [{"name": "SANDBOX_POD", "value": f"{NAMESPACE}/{REAL_POD}"}]}]},
    })
    wait_for(lambda: core.read_namespaced_pod(REAL_POD, NAMESPACE).status.phase == "Running",
             what="the real pod to run")
    out, err, status = wait_for(lambda: _try(lambda: _exec(api, REAL_POD, [
        "sh", "-c", "echo $SANDBOX_POD; id -u; pwd; hostname; echo oops >&2"])), what="exec to answer")
    assert out == f"{NAMESPACE}/{REAL_POD}\n65534\n/tmp\n{REAL_POD}\n"
    assert err == "oops\n"
    assert status["status"] == "Success"
    _, _, failed = _exec(api, REAL_POD, ["sh", "-c", "exit 3"])
    assert "exit status 3" in failed["message"]


def test_exec_never_runs_a_program_on_the_host(api):
    """kwok runs exec'd commands as local processes: in the sandbox it is chrooted where only the exec helper
    lives, so a host path or an unknown program is not found, and a pod kwok fakes has nothing to exec."""
    for command in (["/usr/bin/python3", "-c", "print(1)"], ["no-such-program"]):
        out, _, status = _exec(api, REAL_POD, command)
        assert out == "" and status["status"] == "Failure", f"{command} ran: {out!r} {status}"
        assert "not found" in status["message"] or "no such file" in status["message"], status["message"]
    _, _, status = _try(lambda: _exec(api, POD, ["sh", "-c", "echo ran"])) or ("", "", {"status": "Failure"})
    assert status.get("status") != "Success"


def test_helm_installs_and_uninstalls_a_chart_of_our_own(sandbox):
    tools = json.loads((TEST_RUN_DIR / "tools.json").read_text())
    helm = [tools["helm"], "--kubeconfig", str(sandbox)]
    chart = REPO / "tests" / "sandbox_e2e" / "chart"
    installed = subprocess.run([*helm, "install", "smoke", str(chart), "--namespace", "smoke", "--create-namespace",
                                "--wait", "--timeout", "90s"], capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    status = subprocess.run([*helm, "status", "smoke", "-n", "smoke", "-o", "json"], capture_output=True, text=True)
    assert json.loads(status.stdout)["info"]["status"] == "deployed"
    removed = subprocess.run([*helm, "uninstall", "smoke", "-n", "smoke", "--wait", "--timeout", "60s"],
                             capture_output=True, text=True, timeout=90)
    assert removed.returncode == 0, removed.stderr


def test_every_sandbox_socket_is_on_loopback(sandbox):
    sockets = netcheck.sockets(pids())
    assert {s.local for s in sockets if s.listening}, "found no listening socket at all"
    assert netcheck.violations(pids()) == []


def test_a_taken_port_fails_fast_and_names_the_port(short_tmp: Path):
    offset = TEST_PORT_OFFSET + 1000
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 32379 + offset))
        blocker.listen()
        started = time.monotonic()
        result = sandbox_cli("up", env=sandbox_env(HAMI_E2E_PORT_OFFSET=str(offset),
                                                   HAMI_E2E_SANDBOX_DIR=str(short_tmp / "run")))
    assert result.returncode == 2
    assert f"port 127.0.0.1:{32379 + offset} is already in use" in result.stderr
    assert time.monotonic() - started < 30


def test_a_component_that_dies_on_start_is_named_with_its_log(short_tmp: Path):
    run = short_tmp / "run"
    run.mkdir()
    (run / "etcd").write_text("a file where etcd wants its data directory")
    started = time.monotonic()
    result = sandbox_cli("up", env=sandbox_env(HAMI_E2E_PORT_OFFSET=str(TEST_PORT_OFFSET + 2000),
                                               HAMI_E2E_SANDBOX_DIR=str(run)))
    assert result.returncode == 2
    assert "etcd exited with code" in result.stderr and "etcd.log" in result.stderr
    assert time.monotonic() - started < 30


def test_concurrent_ups_start_one_sandbox(short_tmp: Path):
    env = sandbox_env(HAMI_E2E_PORT_OFFSET=str(TEST_PORT_OFFSET + 3000), HAMI_E2E_SANDBOX_DIR=str(short_tmp / "run"))
    command = [sys.executable, "-m", "sandbox", "up"]
    first, second = (subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True) for _ in "12")
    try:
        outputs = [first.communicate(timeout=120)[1], second.communicate(timeout=120)[1]]
        assert first.returncode == 0 and second.returncode == 0, outputs
        assert sum("already running" in out for out in outputs) == 1, outputs
    finally:
        sandbox_cli("down", env=env)


def test_a_missing_go_toolchain_is_named(tmp_path: Path):
    result = sandbox_cli("build", env=sandbox_env(PATH="/usr/bin:/bin", HAMI_E2E_CACHE=str(tmp_path)))
    assert result.returncode == 2
    assert "the Go toolchain is not on PATH" in result.stderr


def test_down_leaves_no_process_no_listener_and_no_files(sandbox):
    running = pids()
    assert running
    result = sandbox_cli("down")
    assert result.returncode == 0
    assert not [pid for pid in running if alive(pid)], "a sandbox process outlived down"
    assert not TEST_RUN_DIR.exists()
    for port in (*astuple(config.BASE_PORTS), charts.BASE_PORT):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port + TEST_PORT_OFFSET)) != 0, f"something listens on {port}"
