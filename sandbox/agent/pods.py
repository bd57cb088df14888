"""A kubelet for the pods whose images the sandbox can run: one worker thread per pod.

The worker gives the pod a network namespace and a loopback pod IP, materialises its volumes, runs its init
containers to completion and then its containers as real processes (``containers.py``), runs postStart hooks and
readiness/liveness probes (``probes.py``), restarts exited containers by the pod's restartPolicy with a back-off
(1 s doubling to 30 s: shorter than the kubelet's 10 s to 5 min, so failure tests finish sooner) and counts the
restarts, and reports all of it in the pod's status. When the pod is deleted it stops the processes (TERM, then
KILL after the grace period, at most 10 s) and removes the pod object, as the kubelet does.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import certgen, gpu_containers, kubectl_exec, probes
from .containers import (
    BuiltinProcess,
    ContainerEnv,
    ContainerProcess,
    LaunchSpec,
    LogFile,
    Process,
    container_env,
    expand,
    now,
    wants_gpu_driver,
)
from .host_driver import HostDriver
from .images import GPU_CONTAINER, Catalog, Image
from .namespaces import PodNetwork
from .volumes import VolumeBuilder, VolumeNotReady

TICK = 0.2
BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
MAX_GRACE = 10.0
DRIVER_DIR = "/usr/local/nvidia/lib64"
NVML_DIR = "/usr/local/nvidia/nvml"           # the node's mock NVML files: config.yaml, overrides.yaml, processes/
GPU_CONTAINER_NVML = "/usr/local/nvidia/container"   # the container's own profile (its GPUs) and fault overrides


@dataclass
class Node:
    """What the agent knows of one fake node: its root folder, its simulated driver (libraries, and the mock NVML's
    folder with the node's profile, fault overrides and GPU process list) or, in GPU-node mode, the machine's real
    driver (``host_driver``), its GPUs and the kubelet stand-in's Allocate records."""

    name: str
    root: Path
    driver_dir: Path | None = None
    nvml_dir: Path | None = None
    gpus: dict[str, tuple[str, int]] = field(default_factory=dict)   # uuid -> (model, memory MiB)
    allocations: Path | None = None
    gpu_resource: str = "nvidia.com/gpu"
    host_driver: HostDriver | None = None


@dataclass
class AgentServices:
    """What pod workers share: the API, the image catalog, the nodes, the proxy hooks and the service env."""

    api: client.ApiClient
    catalog: Catalog
    run_dir: Path
    nodes: dict[str, Node]
    api_server: str
    ca_file: Path
    service_env: Callable[[], dict[str, str]]
    network_added: Callable[[str, PodNetwork], None]
    network_removed: Callable[[str, PodNetwork], None]
    log: Callable[[str], None]


@dataclass
class Container:
    spec: Any
    init: bool
    image: Image | None = None
    allocation: dict[str, Any] | None = None   # its Allocate response (a container HAMi gave GPUs)
    process: Process | None = None
    env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0
    started_at: str = ""
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    done: bool = False
    next_start: float = 0.0
    backoff: float = BACKOFF_START
    next_probe: dict[str, float] = field(default_factory=dict)
    probe_counts: dict[str, int] = field(default_factory=dict)


class PodWorker:
    """Runs one pod until it is deleted or the agent stops."""

    def __init__(self, services: AgentServices, pod: Any, pod_ip: str) -> None:
        self.s = services
        self.pod = pod
        self.uid = pod.metadata.uid
        self.key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        self.pod_ip = pod_ip
        self.dir = services.run_dir / "pods" / self.uid
        self.node = services.nodes.get(pod.spec.node_name) or Node(pod.spec.node_name,
                                                                    services.run_dir / "nodes" / pod.spec.node_name / "root")
        self.network: PodNetwork | None = None
        self.gpu = gpu_containers.allocated_by_hami(pod)
        self.containers = [Container(c, True) for c in pod.spec.init_containers or []] + \
                          [Container(c, False) for c in pod.spec.containers]
        self.core = client.CoreV1Api(services.api)
        self._stop = threading.Event()
        self._delete_object = False
        self._started = time.monotonic()
        self._start_time = now()
        self._message = ""
        self._reported = ""
        self._conditions: dict[str, tuple[str, str]] = {}   # condition type -> (status, when it became that)
        self._volumes: dict[str, Path] | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"pod-{self.key}")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.thread.start()

    def stop(self, delete_object: bool) -> None:
        """Ask the worker to stop the pod's processes; with ``delete_object`` it then removes the pod (deleted)."""
        self._delete_object = self._delete_object or delete_object
        self._stop.set()

    def update(self, pod: Any) -> None:
        self.pod = pod

    def _run(self) -> None:
        try:
            self._prepare()
            while not self._stop.is_set():
                self._step()
                self._report()
                self._stop.wait(TICK)
        except Exception as error:  # noqa: BLE001 - a worker bug must show in the agent log, not vanish
            self.s.log(f"pod {self.key}: worker failed: {error}\n{traceback.format_exc()}")
        finally:
            self._teardown()

    def _prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.node.root.mkdir(parents=True, exist_ok=True)
        if not self.pod.spec.host_network:
            self.network = PodNetwork.create(self.dir / "netns.pid")
            self.s.network_added(self.pod_ip, self.network)
        self._create_kwok_objects()

    def _teardown(self) -> None:
        grace = min(float(self.pod.spec.termination_grace_period_seconds or 30), MAX_GRACE)
        for item in self.containers:
            if item.process is not None and item.process.poll() is None:
                self._event("Normal", "Killing", f"Stopping container {item.spec.name}")
                item.process.stop(grace)
        if self.network is not None:
            self.s.network_removed(self.pod_ip, self.network)
            self.network.destroy()
        if self._delete_object:
            try:
                self.core.delete_namespaced_pod(self.pod.metadata.name, self.pod.metadata.namespace,
                                                body=client.V1DeleteOptions(grace_period_seconds=0,
                                                                            preconditions=client.V1Preconditions(
                                                                                uid=self.uid)))
            except ApiException as error:
                if error.status not in (404, 409):
                    self.s.log(f"pod {self.key}: cannot remove the pod object: {error.reason}")
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ one supervision step
    def _step(self) -> None:
        if self.gpu and not self._allocated():
            self._message = "waiting for the device plugin's Allocate"
            return
        if self._volumes is None:
            try:
                self._volumes = VolumeBuilder(self.s.api, self.pod, self.dir, self.node.root).build()
                self._message = ""
            except VolumeNotReady as error:
                if self._message != str(error):
                    self._event("Warning", "FailedMount", f"MountVolume.SetUp failed: {error}")
                self._message = str(error)
                return
        for item in self.containers:
            if item.done:
                continue
            self._supervise(item)
            if item.init and not item.done:
                return  # the next init container (and the containers) wait for this one

    def _allocated(self) -> bool:
        """HAMi's plugin sets bind-phase success before its Allocate answer reaches the kubelet stand-in, which then
        records it: wait for both, for every container that asks for the GPU resource."""
        if gpu_containers.bind_phase(self.pod) != "success" or self.node.allocations is None:
            return False
        wanted = [c.spec.name for c in self.containers
                  if self.node.gpu_resource in ((c.spec.resources.limits or {}) if c.spec.resources else {})]
        return all(gpu_containers.read_allocation(self.node.allocations, self.uid, name) for name in wanted)

    def _supervise(self, item: Container) -> None:
        if item.process is None:
            if time.monotonic() >= item.next_start:
                self._launch(item)
            return
        code = item.process.poll()
        if code is None:
            self._probe(item)
            return
        self._exited(item, code)

    def _launch(self, item: Container) -> None:
        reference = GPU_CONTAINER if self.gpu else item.spec.image
        if self.gpu and self.node.allocations is not None:
            item.allocation = gpu_containers.read_allocation(self.node.allocations, self.uid, item.spec.name)
        image = self.s.catalog.find(reference)
        if image is None:
            tags = self.s.catalog.tags_of(reference)
            item.state = {"waiting": {"reason": "ErrImagePull", "message": (
                f"image {reference} is not built in the sandbox (built tags of this repository: "
                f"{', '.join(tags) or 'none'}); see python -m sandbox hami build")}}
            item.next_start = time.monotonic() + 2
            return
        item.image = image
        log = LogFile(self._log_path(item))
        if image.builtin == "certgen":
            item.process = BuiltinProcess(lambda say: certgen.run(list(item.spec.args or []), self._pod_client(),
                                                                  say), log)
        else:
            item.env = self._env(item, image)
            spec_file = self.dir / "containers" / f"{item.spec.name}.json"
            launch = self._launch_spec(item, image)
            launch.write(spec_file)
            item.process = ContainerProcess(spec_file, log, self.dir / "pids" / f"{item.spec.name}.pid")
            if _wait_entered(item.process):
                # only now: an exec into a container still being built would enter the host's namespaces
                kubectl_exec.write_exec_file(self._exec_path(item), item.process.pid or 0, item.env, launch.uid,
                                             launch.gid, launch.workdir)
        item.started_at = now()
        item.state = {"running": {"startedAt": item.started_at}}
        item.ready = item.spec.readiness_probe is None and not item.init
        item.next_probe = {}
        item.probe_counts = {}
        self._event("Normal", "Started", f"Started container {item.spec.name}")
        hook = item.spec.lifecycle.post_start if item.spec.lifecycle else None
        if hook is not None and hook._exec is not None and item.process.pid:
            self._post_start(item, list(hook._exec.command))

    def _post_start(self, item: Container, command: list[str]) -> None:
        if item.process is None or not _wait_entered(item.process) or item.process.pid is None:
            return
        result = probes.exec_in_container(item.process.pid, command, item.env, 30)
        output = (result.stdout + result.stderr).decode(errors="replace").strip()
        if result.returncode != 0:
            self._event("Warning", "FailedPostStartHook", f"PostStartHook failed (exit {result.returncode}): "
                                                          f"{output[-300:]}")
            item.process.stop(1)  # the kubelet kills a container whose hook fails

    def _exited(self, item: Container, code: int) -> None:
        finished = now()
        self._exec_path(item).unlink(missing_ok=True)
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                      "startedAt": item.started_at, "finishedAt": finished}
        item.process = None
        item.ready = False
        policy = self.pod.spec.restart_policy or "Always"
        restart = (policy == "Always" and not item.init) or (policy != "Never" and code != 0)
        if item.init and code == 0:
            item.state, item.done = {"terminated": terminated}, True
            return
        if not restart:
            item.state, item.done = {"terminated": terminated}, True
            return
        item.last_state = {"terminated": terminated}
        item.restarts += 1
        item.next_start = time.monotonic() + item.backoff
        item.state = {"waiting": {"reason": "CrashLoopBackOff", "message": (
            f"back-off {item.backoff:.0f}s restarting failed container={item.spec.name} pod={self.pod.metadata.name}"
            f"_{self.pod.metadata.namespace}({self.uid})")}}
        self._event("Warning", "BackOff", f"Back-off restarting failed container {item.spec.name} "
                                          f"(exit code {code})")
        item.backoff = min(item.backoff * 2, BACKOFF_MAX)

    def _probe(self, item: Container) -> None:
        for kind, probe in (("readiness", item.spec.readiness_probe), ("liveness", item.spec.liveness_probe)):
            if probe is None:
                continue
            due = item.next_probe.setdefault(kind, time.monotonic() + float(probe.initial_delay_seconds or 0))
            if time.monotonic() < due:
                continue
            item.next_probe[kind] = time.monotonic() + float(probe.period_seconds or 10)
            ok, message = probes.run_probe(probe, item.spec, self.network.path if self.network else None,
                                           item.process.pid if item.process else None, item.env)
            count = item.probe_counts.get(kind, 0)
            count = max(count, 0) + 1 if ok else min(count, 0) - 1
            item.probe_counts[kind] = count
            if kind == "readiness":
                if ok and count >= int(probe.success_threshold or 1):
                    item.ready = True
                elif not ok and -count >= int(probe.failure_threshold or 3):
                    item.ready = False
            if not ok:
                self._event("Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {message}")
                if kind == "liveness" and -count >= int(probe.failure_threshold or 3) and item.process:
                    self._event("Normal", "Killing", f"Container {item.spec.name} failed liveness probe, "
                                                     "will be restarted")
                    item.process.stop(1)

    # ------------------------------------------------------------------ what the container gets
    def _env(self, item: Container, image: Image) -> dict[str, str]:
        env = container_env(self.pod, item.spec, image, ContainerEnv(
            service_env=self.s.service_env(), lookup_config_map=self._config_map_value,
            lookup_secret=self._secret_value))
        if self.gpu and item.allocation is not None:
            env.update(gpu_containers.allocation_env(item.allocation))
        if wants_gpu_driver(env) and self.node.driver_dir is not None:
            env["LD_LIBRARY_PATH"] = ":".join(p for p in (env.get("LD_LIBRARY_PATH", ""), DRIVER_DIR) if p)
            env["MOCK_NVML_CONFIG"] = f"{NVML_DIR}/config.yaml"
            if self.gpu:    # the container's own GPUs; the node's faults (sync_faults) and GPU processes apply
                env["MOCK_NVML_CONFIG"] = f"{GPU_CONTAINER_NVML}/config.yaml"
            env["MOCK_NVML_PROCESS_DIR"] = f"{NVML_DIR}/processes"
        if wants_gpu_driver(env) and self.node.host_driver is not None:
            env.update(self.node.host_driver.container_env(env))
        return env

    def _launch_spec(self, item: Container, image: Image) -> LaunchSpec:
        mounts = []
        for mount in item.spec.volume_mounts or []:
            source = (self._volumes or {}).get(mount.name)
            if source is None:
                continue
            if mount.sub_path:
                source = source / mount.sub_path
            mounts.append({"source": str(source), "target": mount.mount_path, "readonly": bool(mount.read_only)})
        if wants_gpu_driver(item.env) and self.node.driver_dir is not None and self.node.nvml_dir is not None:
            mounts.append({"source": str(self.node.driver_dir), "target": DRIVER_DIR, "readonly": True})
            mounts.append({"source": str(self.node.nvml_dir), "target": NVML_DIR, "readonly": False})
        host = self.node.host_driver
        gpu_isolation = None
        if wants_gpu_driver(item.env) and host is not None:
            mounts += host.mounts()
            gpu_isolation = host.isolation(item.env["NVIDIA_VISIBLE_DEVICES"], self.gpu)
        uid = getattr(item.spec.security_context or self.pod.spec.security_context, "run_as_user", None)
        gid = getattr(item.spec.security_context or self.pod.spec.security_context, "run_as_group", None)
        host_usr = None
        if self.gpu:
            uid = uid if uid is not None else gpu_containers.DEFAULT_UID
            gid = gid if gid is not None else uid
            host_usr = gpu_containers.HOST_USR if host is None else None   # real GPUs: the host's programs too
            if item.allocation is not None:
                mounts += gpu_containers.allocation_mounts(item.allocation, self.node.root, uid, self.s.run_dir)
            if item.allocation is not None and host is None:
                folder = self._gpu_dir(item)
                node_profile = self.node.nvml_dir / "config.yaml" if self.node.nvml_dir else None
                gpu_containers.write_container_profile(item.allocation, self.node.gpus, folder / "config.yaml",
                                                       node_profile)
                self._sync_faults(item)
                mounts.append({"source": str(folder), "target": GPU_CONTAINER_NVML, "readonly": True})
        argv = [expand(a, item.env) for a in list(item.spec.command or []) + list(item.spec.args or [])]
        if not argv:
            argv = ["/bin/sh"]
        return LaunchSpec(argv=argv, env=item.env, rootfs=self.dir / "rootfs" / item.spec.name,
                          image_root=image.root, mounts=mounts,
                          netns=self.network.path if self.network else None, hostname=self.pod.metadata.name,
                          workdir=item.spec.working_dir or "/", uid=uid, gid=gid, host_usr=host_usr,
                          gpu=gpu_isolation)

    def _gpu_dir(self, item: Container) -> Path:
        return self.dir / "gpu" / item.spec.name

    def _sync_faults(self, item: Container) -> None:
        if item.allocation is None or self.node.nvml_dir is None or not self._gpu_dir(item).is_dir():
            return
        changed = gpu_containers.sync_faults(self.node.nvml_dir / "overrides.yaml",
                                             self._gpu_dir(item) / "overrides.yaml", list(self.node.gpus),
                                             gpu_containers.allocated_uuids(item.allocation))
        if changed and item.process is not None:
            self.s.log(f"pod {self.key}: container {item.spec.name} sees the node's GPU faults changed")

    def sync_gpu_faults(self) -> None:
        """Called by the agent every second: a fault injected on the node reaches the containers given that GPU."""
        if self.gpu and not self._stop.is_set():
            for item in self.containers:
                self._sync_faults(item)

    def _config_map_value(self, name: str, key: str) -> str | None:
        try:
            data = self.core.read_namespaced_config_map(name, self.pod.metadata.namespace).data or {}
        except ApiException:
            return None
        return json.dumps(data) if not key else data.get(key)

    def _secret_value(self, name: str, key: str) -> str | None:
        try:
            data = self.core.read_namespaced_secret(name, self.pod.metadata.namespace).data or {}
        except ApiException:
            return None
        decoded = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        return json.dumps(decoded) if not key else decoded.get(key)

    def _pod_client(self) -> client.ApiClient:
        """An API client authenticated as the pod's service account (its projected token), as the pod would be."""
        token_file = next((p / "token" for p in (self._volumes or {}).values() if (p / "token").is_file()), None)
        configuration = client.Configuration()
        configuration.host = self.s.api_server
        configuration.ssl_ca_cert = str(self.s.ca_file)
        if token_file is not None:
            configuration.api_key = {"authorization": "Bearer " + token_file.read_text().strip()}
        return client.ApiClient(configuration)

    def _log_path(self, item: Container) -> Path:
        return self.dir / "logs" / f"{item.spec.name}.log"

    # ------------------------------------------------------------------ what the API sees
    def _create_kwok_objects(self) -> None:
        """kwok Logs and Exec objects: ``kubectl logs`` reads the containers' real output and ``kubectl exec``
        enters the running container (``kubectl_exec.py``)."""
        for item in self.containers:
            self._log_path(item).parent.mkdir(parents=True, exist_ok=True)
            self._log_path(item).touch()
        specs = {
            "logs": ("Logs", {"logs": [{"containers": [item.spec.name], "logsFile": str(self._log_path(item)),
                                        "follow": True} for item in self.containers]}),
            "execs": ("Exec", {"execs": [{"containers": [item.spec.name], "local": {"envs": [
                {"name": "HAMI_E2E_EXEC", "value": str(self._exec_path(item))}]}} for item in self.containers]}),
        }
        objects = client.CustomObjectsApi(self.s.api)
        namespace, name = self.pod.metadata.namespace, self.pod.metadata.name
        for plural, (kind, spec) in specs.items():
            body = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": kind,
                    "metadata": {"name": name, "namespace": namespace, "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": self.uid}]},
                    "spec": spec}
            try:
                objects.create_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", namespace, plural, body)
            except ApiException as error:
                if error.status != 409:
                    raise
                objects.delete_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", namespace, plural, name)
                objects.create_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", namespace, plural, body)

    def _exec_path(self, item: Container) -> Path:
        return self.dir / "exec" / item.spec.name

    def status(self) -> dict[str, Any]:
        inits = [c for c in self.containers if c.init]
        mains = [c for c in self.containers if not c.init]
        initialized = all(c.done for c in inits)
        ready = initialized and all(c.ready for c in mains)
        if initialized and all(c.done for c in mains):
            phase = "Succeeded" if all(c.state["terminated"]["exitCode"] == 0 for c in mains) else "Failed"
        elif initialized and all(c.started_at for c in mains):
            phase = "Running"
        else:
            phase = "Pending"

        def condition(kind: str, value: bool) -> dict[str, str]:
            state = "True" if value else "False"
            previous = self._conditions.get(kind)
            if previous is None or previous[0] != state:
                self._conditions[kind] = previous = (state, now())
            return {"type": kind, "status": state, "lastTransitionTime": previous[1]}

        def entry(item: Container) -> dict[str, Any]:
            return {"name": item.spec.name, "image": item.spec.image,
                    "imageID": f"sandbox://{item.image.root or item.image.builtin}" if item.image else "",
                    "containerID": f"hami-e2e://{self.uid[:8]}-{item.spec.name}-{item.restarts}",
                    "ready": item.ready, "started": "running" in item.state, "restartCount": item.restarts,
                    "state": item.state, "lastState": item.last_state}

        return {"phase": phase, "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
                "podIP": self.pod_ip, "podIPs": [{"ip": self.pod_ip}], "startTime": self._start_time,
                "message": self._message or None,
                "conditions": [condition("PodScheduled", True), condition("Initialized", initialized),
                               condition("ContainersReady", ready), condition("Ready", ready)],
                "initContainerStatuses": [entry(c) for c in inits],
                "containerStatuses": [entry(c) for c in mains]}

    def _report(self) -> None:
        status = self.status()
        text = json.dumps(status, sort_keys=True)
        if text == self._reported:
            return
        try:
            self.core.patch_namespaced_pod_status(self.pod.metadata.name, self.pod.metadata.namespace,
                                                  {"status": status})
            self._reported = text
        except ApiException as error:
            if error.status == 404:
                self._stop.set()
            else:
                self.s.log(f"pod {self.key}: status update failed: {error.reason}")

    def _event(self, kind: str, reason: str, message: str) -> None:
        meta = self.pod.metadata
        stamp = now()
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta.name}.", namespace=meta.namespace),
            involved_object=client.V1ObjectReference(kind="Pod", name=meta.name, namespace=meta.namespace,
                                                     uid=meta.uid, api_version="v1"),
            reason=reason, message=message, type=kind, first_timestamp=stamp, last_timestamp=stamp, count=1,
            source=client.V1EventSource(component="kubelet", host=self.pod.spec.node_name))
        try:
            self.core.create_namespaced_event(meta.namespace, body)
        except ApiException:
            pass   # events are best effort, as in the kubelet
        self.s.log(f"pod {self.key}: {reason}: {message}")


def _wait_entered(process: Process, timeout: float = 10.0) -> bool:
    """Wait until the container entry has built the container's root and exec'd its command (False if it died)."""
    deadline = time.monotonic() + timeout
    while process.pid and process.poll() is None and time.monotonic() < deadline:
        if _entered(process.pid):
            return True
        time.sleep(0.01)
    return False


def _entered(pid: int) -> bool:
    """True once ``pid`` runs chrooted in its own mount namespace (the container entry has built its root)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt") and \
            os.readlink(f"/proc/{pid}/root") != "/"
    except OSError:
        return False
