"""``up``, ``down`` and ``status`` of the whole sandbox."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import build, charts, config, control_plane, gpu_node, node_images, processes, tools, topology, twin
from . import kubelet as kubelet_build
from .errors import SandboxError
from .pki import Pki
from .progress import elapsed, say

START_TIMEOUT = 60.0
AGENT_GRACE = 20.0   # the node agent stops every pod process it runs (each at most 10 s) before it exits
NODES_READY_TIMEOUT = 30.0
KUBE_VERSION_FILE = "kube-version"


@dataclass(frozen=True)
class ComponentState:
    name: str
    pid: int | None
    log: Path


def kubeconfig_path() -> Path:
    return config.run_dir() / "kubeconfig"


def running_kube_version() -> str | None:
    """The Kubernetes version the sandbox in the run directory was started with (recorded at ``up``)."""
    try:
        return (config.run_dir() / KUBE_VERSION_FILE).read_text().strip() or None
    except OSError:
        return None


def state() -> list[ComponentState]:
    """What runs now: every component that has a pid file, with the pid when that process is alive."""
    run = config.run_dir()
    names = sorted(p.stem for p in (run / "pids").glob("*.pid")) if (run / "pids").is_dir() else []
    return [ComponentState(n, processes.running_pid(run, n), run / "logs" / f"{n}.log") for n in names]


def is_running() -> bool:
    current = state()
    return bool(current) and all(c.pid for c in current) and api_answers()


def api_answers() -> bool:
    try:
        pki = Pki(config.run_dir() / "pki")
        return control_plane.http_get(config.PORTS.apiserver, "/readyz", tls=control_plane.admin_tls(pki))[0] == 200
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return False


@contextmanager
def _exclusive() -> Iterator[None]:
    """Serialise ``up`` and ``down`` across processes (parallel robot/pabot workers may all call ``up``)."""
    lock = config.cache_dir() / "locks" / (str(config.run_dir()).strip("/").replace("/", "_") + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def up(topology_file: Path | None = None, load_hami: bool = True) -> Path:
    """Start the sandbox (a no-op when it already runs); returns the kubeconfig path. With ``load_hami`` HAMi is
    built (first time: minutes) and its images and charts are loaded, ready for ``helm install``. The topology is
    ``topology_file`` or ``config.topology_file()`` (GPU-node mode: this machine's, ``gpu_node.py``); the Kubernetes
    version ``config.kube_version()``."""
    with _exclusive():
        if topology_file is None and gpu_node.enabled():
            topology_file = gpu_node.write_topology()
        return _up((topology_file or config.topology_file()).resolve(), load_hami)


def _up(topology_file: Path, load_hami: bool) -> Path:
    if is_running():
        _check_running_matches(topology_file)
        say(f"sandbox already running; nothing to do (KUBECONFIG={kubeconfig_path()})")
        return kubeconfig_path()
    if state():
        say("found a stopped or half-started sandbox; cleaning it up first")
        _down(quiet=True)
    gpu_topology = topology.load(topology_file)
    bin_dir = build.ensure_binaries()
    cli_tools = tools.ensure_tools()
    started = time.monotonic()
    run = config.run_dir()
    run.mkdir(parents=True, exist_ok=True)
    (run / KUBE_VERSION_FILE).write_text(config.pins().kubernetes)
    try:
        pki = Pki(run / "pki")
        pki.create()
        control_plane.write_kubeconfig(kubeconfig_path(), pki)
        control_plane.scheduler_config(run / "kube-scheduler.yaml", kubeconfig_path())
        (run / "tools.json").write_text(json.dumps({"helm": str(cli_tools.helm), "kubectl": str(cli_tools.kubectl)}))
        for component in control_plane.components(bin_dir, run, pki):
            if component.name == "kwok":
                _install_kwok_crds()
            proc = processes.start(component, run)
            processes.wait_ready(component, proc, run, START_TIMEOUT)
            say(f"{component.name} ready ({elapsed(time.monotonic() - started)})")
        _install_default_pod_logs(run)
        _create_nodes(gpu_topology)
        _wait_for_default_service_account()
        (run / "topology.path").write_text(str(topology_file.resolve()))
        _load_images(run, bin_dir, config.pins().kubernetes)
        if load_hami:
            (gpu_node.load_hami if gpu_node.enabled() else twin.load_hami)(run, cli_tools.helm, gpu_topology)
        kubelet = kubelet_build.ensure_binary()
        for component in (_agent(run, topology_file), charts.component(run),
                          *(_device_kubelet(kubelet, run, node.name) for node in gpu_topology.nodes)):
            proc = processes.start(component, run)
            processes.wait_ready(component, proc, run, START_TIMEOUT)
            say(f"{component.name} ready ({elapsed(time.monotonic() - started)})")
    except BaseException:
        say("start failed; stopping what was started")
        _down(quiet=True, keep_logs=True)
        raise
    say(f"sandbox up in {elapsed(time.monotonic() - started)}: {len(gpu_topology.nodes)} GPU nodes")
    say(f"export KUBECONFIG={kubeconfig_path()}")
    return kubeconfig_path()


def _check_running_matches(topology_file: Path) -> None:
    """A running sandbox serves a request for another Kubernetes version or topology only by mistake: refuse when
    one was asked for explicitly (``HAMI_E2E_KUBE_VERSION``, a topology other than the default)."""
    wanted, running = config.pins().kubernetes, running_kube_version()
    if os.environ.get(config.KUBE_VERSION_ENV) and running and running != wanted:
        raise SandboxError(f"the sandbox in {config.run_dir()} runs Kubernetes {running}, not {wanted}: "
                           "`python -m sandbox down` first")
    recorded = config.run_dir() / "topology.path"
    if topology_file.resolve() != config.TOPOLOGY_FILE.resolve() and recorded.exists() \
            and Path(recorded.read_text().strip()) != topology_file.resolve():
        raise SandboxError(f"the sandbox in {config.run_dir()} runs the topology {recorded.read_text().strip()}, "
                           f"not {topology_file}: `python -m sandbox down` first")


def restart(name: str) -> float:
    """Stop one control-plane component by pid and start it again with the same command line; returns the seconds
    until it was ready again. A fault the suite injects (e.g. the API server restarted under load)."""
    with _exclusive():
        run = config.run_dir()
        if not is_running():
            raise SandboxError("the sandbox is not running")
        bin_dir = build.ensure_binaries()
        component = next((c for c in control_plane.components(bin_dir, run, Pki(run / "pki")) if c.name == name),
                         None)
        if component is None:
            raise SandboxError(f"{name} is not a control-plane component of the sandbox")
        started = time.monotonic()
        processes.stop(run, name)
        proc = processes.start(component, run)
        processes.wait_ready(component, proc, run, START_TIMEOUT)
        return time.monotonic() - started


def down(quiet: bool = False) -> None:
    """Stop every process the sandbox started (by pid, newest first) and remove the run directory."""
    with _exclusive():
        _down(quiet=quiet)


def _down(quiet: bool = False, keep_logs: bool = False) -> None:
    run = config.run_dir()
    started = time.monotonic()
    # the node's own processes first (the agent stops the pods it runs), then the control plane, newest first
    order = ["kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
    names = [c.name for c in state()]
    for name in sorted(names, key=lambda n: order.index(n) if n in order else -1):
        processes.stop(run, name, grace=AGENT_GRACE if name == "node-agent" else 3.0)
    # Should the agent have died, its pods' processes and network namespace holders are still recorded.
    for recorded in sorted((run / "pods").glob("*/pids/*.pid")) + sorted((run / "pods").glob("*/netns.pid")):
        processes.stop_recorded(recorded)
    if keep_logs and (run / "logs").is_dir():
        kept = config.cache_dir() / "last-failed-start-logs"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(run / "logs", kept)
        say(f"logs of the failed start kept in {kept}")
    shutil.rmtree(run, ignore_errors=True)
    if not quiet:
        say(f"sandbox down in {elapsed(time.monotonic() - started)}")


def _agent(run: Path, topology_file: Path) -> processes.Component:
    """The node agent (``sandbox/agent``): runs HAMi's pods as real processes and forwards Services."""
    return processes.Component(
        "node-agent",
        [sys.executable, "-m", "sandbox.agent", "--run-dir", str(run), "--topology", str(topology_file)],
        [],
        (run / "agent-status.json").exists,
        # the caller's PYTHONPATH stays after ours: the GPU twin's pack brings the Python packages that way
        env={"PYTHONPATH": os.pathsep.join(p for p in (str(config.REPO_DIR), os.environ.get("PYTHONPATH")) if p),
             "PYTHONUNBUFFERED": "1"},
    )


def _device_kubelet(binary: Path, run: Path, node: str) -> processes.Component:
    """The kubelet's device-plugin manager of one fake node (``sandbox/kubelet``): the Registration socket in the
    node's root, the node's GPU capacity from ListAndWatch, Allocate for the node's pods (state files per container)."""
    root = twin.node_dir(run, node) / "root"
    socket = root / "var" / "lib" / "kubelet" / "device-plugins" / "kubelet.sock"
    return processes.Component(
        f"kubelet-{node}",
        [str(binary), "--node", node, "--kubeconfig", str(run / "kubeconfig"), "--root", str(root),
         "--state-dir", str(twin.node_dir(run, node) / "allocations")],
        [],
        socket.exists,
    )


def _load_images(run: Path, bin_dir: Path, kube_version: str) -> None:
    """Fill the agent's image catalog with kube-scheduler and the certificate generator (HAMi: ``twin.load_hami``)."""
    catalog = node_images.catalog(run)
    catalog.add(node_images.kube_scheduler_image(bin_dir, kube_version))
    catalog.add(node_images.certgen_image())


def _client():
    from kubernetes import client
    from kubernetes import config as kube_config

    configuration = client.Configuration()
    kube_config.load_kube_config(config_file=str(kubeconfig_path()), client_configuration=configuration)
    return client.ApiClient(configuration)


def _install_kwok_crds() -> None:
    """kwok's Logs/ClusterLogs/Exec/ClusterExec CRDs, read from the kwok module in the Go module cache."""
    from kubernetes import client

    pins = config.pins()
    bases = config.cache_dir() / "gomod" / "sigs.k8s.io" / f"kwok@{pins.kwok}" / "kustomize" / "crd" / "bases"
    api = client.ApiextensionsV1Api(_client())
    names = []
    for crd in control_plane.KWOK_CRDS:
        path = bases / f"kwok.x-k8s.io_{crd}.yaml"
        if not path.exists():
            raise SandboxError(f"kwok CRD {path} is missing from the Go module cache; run `python -m sandbox build`")
        body = yaml.safe_load(path.read_text())
        api.create_custom_resource_definition(body)
        names.append(body["metadata"]["name"])
    deadline = time.monotonic() + START_TIMEOUT
    for name in names:
        while not any(c.type == "Established" and c.status == "True"
                      for c in (api.read_custom_resource_definition(name).status.conditions or [])):
            if time.monotonic() > deadline:
                raise SandboxError(f"CRD {name} was not established within {START_TIMEOUT:.0f} s")
            time.sleep(0.1)


def _install_default_pod_logs(run: Path) -> None:
    """A catch-all kwok ClusterLogs: any pod without its own Logs object shows one line saying it is simulated."""
    from datetime import datetime, timezone

    from kubernetes import client

    log_file = run / "podlogs" / "simulated-container.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    log_file.write_text(f"{stamp} stdout F [hami-e2e sandbox] kwok simulates this container: no process ran, "
                        "so it wrote no output\n")
    client.CustomObjectsApi(_client()).create_cluster_custom_object(
        "kwok.x-k8s.io", "v1alpha1", "clusterlogs",
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterLogs", "metadata": {"name": "simulated-containers"},
         "spec": {"logs": [{"logsFile": str(log_file)}]}},
    )


def _create_nodes(gpu_topology: topology.Topology) -> None:
    from kubernetes import client

    core = client.CoreV1Api(_client())
    for node in gpu_topology.nodes:
        core.create_node(gpu_topology.node_object(node))
    deadline = time.monotonic() + NODES_READY_TIMEOUT
    pending = {node.name for node in gpu_topology.nodes}
    while pending:
        for item in core.list_node().items:
            if any(c.type == "Ready" and c.status == "True" for c in item.status.conditions or []):
                pending.discard(item.metadata.name)
        if pending and time.monotonic() > deadline:
            raise SandboxError(f"nodes {sorted(pending)} not Ready within {NODES_READY_TIMEOUT:.0f} s; "
                               f"see {config.run_dir() / 'logs' / 'kwok.log'}")
        if pending:
            time.sleep(0.1)


def _wait_for_default_service_account() -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(_client())
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            core.read_namespaced_service_account("default", "default")
            return
        except ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise SandboxError("the default service account never appeared; see "
                                   f"{config.run_dir() / 'logs' / 'kube-controller-manager.log'}") from error
        time.sleep(0.1)
