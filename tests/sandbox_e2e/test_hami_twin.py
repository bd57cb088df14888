"""The GPU twin end to end (issue 9): HAMi's own chart installed with real helm runs HAMi's real scheduler extender,
webhook, device plugin and vGPU monitor as processes of the sandbox's node agent, and they handle GPU pods.

One sandbox of this module's own (its run directory and ports below; stopped at the end), tests in file order:
install -> processes and node registration -> a GPU pod through webhook, extender and plugin -> over-commit ->
privileged refusal -> scheduler pod replaced -> loopback only -> uninstall, 2.9.0 install, upgrade to 2.10.0 ->
uninstall -> a HAMi source with the webhook's privileged check removed admits the privileged pod (builds a mutant:
1-3 minutes with warm Go caches the first time, reused afterwards).

Each check names the fault that fails it: a process that is not HAMi's binary (exe identity), a plugin that did
not register (node annotation), a webhook that did not run (schedulerName, its refusal text: the chart's
``failurePolicy: Ignore`` would otherwise let pods through silently), an extender that did not filter (its events),
a plugin that did not allocate (bind-phase, the Allocate state file), stale processes after a delete or an upgrade
(pids and binaries), a socket off loopback (netcheck, in each pod's own namespace).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from sandbox import netcheck, processes, topology, twin
from sandbox.hami import source as hami_source

from .conftest import REPO, sandbox_cli

# Not the conftest's offset 1000: that sandbox runs beside this one for the whole session.
RUN_DIR = Path("/tmp/twin-test-sandbox")
PORT_OFFSET = 7000
ENV = {**os.environ, "HAMI_E2E_SANDBOX_DIR": str(RUN_DIR), "HAMI_E2E_PORT_OFFSET": str(PORT_OFFSET)}
NAMESPACE = "twin-e2e"
SCHEDULER_NAME = "hami-scheduler"   # the chart's --scheduler-name, which the webhook writes into GPU pods
HAMI_PROGRAMS = {"vgpu-scheduler-extender": "scheduler", "device-plugin": "nvidia-device-plugin",
                 "vgpu-monitor": "vGPUmonitor"}
SCHEDULER_CONTAINERS = {"kube-scheduler", "vgpu-scheduler-extender"}
PLUGIN_CONTAINERS = {"device-plugin", "vgpu-monitor"}
PRIVILEGED_CHECK = "if hasPrivileged && hasResource {"   # pkg/scheduler/webhook.go of HAMi 2.10.0, once
GPU_LIMITS = {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "3000", "nvidia.com/gpucores": "30"}
POD_TIMEOUT = 90.0        # first filter after a scheduler start may wait for its 15 s device ticker and a lease
PROCESS_TIMEOUT = 60.0
HELM_TIMEOUT = 300.0


@dataclass
class Twin:
    run_dir: Path
    helm: str
    core: Any
    topology: topology.Topology

    def info(self) -> dict[str, Any]:
        return twin.read_info(self.run_dir)

    def build_dir(self, version: str) -> Path:
        return Path(next(r["build"] for r in self.info()["releases"] if r["chart_version"] == version))


# ---------------------------------------------------------------------------------------------------- helpers
def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def file_id(path: Path | str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def exe_id(pid: int) -> tuple[int, int] | None:
    """The executable a process runs (a bind mount keeps the build folder's device and inode)."""
    try:
        return file_id(f"/proc/{pid}/exe")
    except OSError:
        return None


def helm(sandbox: Twin, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sandbox.helm, *args], capture_output=True, text=True, env=twin.helm_env(sandbox.run_dir),
                            timeout=HELM_TIMEOUT)
    assert result.returncode == 0 or not check, f"helm {' '.join(args)}:\n{result.stderr}"
    return result


def helm_release(sandbox: Twin, verb: str, version: str) -> None:
    helm(sandbox, "repo", "add", twin.REPO_NAME, sandbox.info()["chart_repo"], "--force-update")
    helm(sandbox, verb, twin.RELEASE, f"{twin.REPO_NAME}/hami", "--version", version, "--namespace", twin.NAMESPACE,
         "--create-namespace", "--wait", "--timeout", "5m")


def uninstall(sandbox: Twin) -> None:
    if helm(sandbox, "status", twin.RELEASE, "-n", twin.NAMESPACE, check=False).returncode == 0:
        helm(sandbox, "uninstall", twin.RELEASE, "-n", twin.NAMESPACE, "--wait")
    wait_for(lambda: not agent_processes(sandbox), PROCESS_TIMEOUT, "every HAMi pod process to stop")


def agent_processes(sandbox: Twin, namespace: str = twin.NAMESPACE) -> dict[str, dict[str, int | None]]:
    """pod name -> container -> pid of the namespace's pods, as the sandbox's node agent reports them."""
    return {pod["pod"].split("/", 1)[1]: {c["name"]: c["pid"] for c in pod["containers"]}
            for pod in twin.processes(sandbox.run_dir) if pod["pod"].startswith(namespace + "/")}


def ready(pod: Any) -> bool:
    return pod.metadata.deletion_timestamp is None and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def hami_pods(sandbox: Twin, component: str) -> list[Any]:
    return sandbox.core.list_namespaced_pod(
        twin.NAMESPACE, label_selector=f"app.kubernetes.io/component={component}").items


def running_hami(sandbox: Twin, version: str) -> dict[str, tuple[Any, dict[str, int]]]:
    """Wait until the scheduler pod and one device-plugin pod per GPU node run ``version``'s image, are Ready and
    have a live process per container; returns pod name -> (pod, container -> pid)."""
    tag = f":v{version}"

    def current() -> dict[str, tuple[Any, dict[str, int]]] | None:
        pods = [p for p in hami_pods(sandbox, "hami-scheduler") + hami_pods(sandbox, "hami-device-plugin")
                if ready(p)]
        reported = agent_processes(sandbox)
        found = {}
        for pod in pods:
            if not all(c.image.endswith(tag) for c in pod.spec.containers if "projecthami/hami" in c.image):
                return None
            pids = reported.get(pod.metadata.name, {})
            if not pids or not all(pid and alive(pid) for pid in pids.values()):
                return None
            found[pod.metadata.name] = (pod, pids)
        schedulers = [n for n in found if n.startswith("hami-scheduler-")]
        plugin_nodes = sorted(pod.spec.node_name for pod, _ in found.values()
                              if pod.metadata.name.startswith("hami-device-plugin-"))
        gpu_nodes = sorted(node.name for node in sandbox.topology.nodes)
        return found if len(schedulers) == 1 and plugin_nodes == gpu_nodes else None

    return wait_for(current, PROCESS_TIMEOUT, f"HAMi {version}'s pods to run with a process per container")


def expected_binary(sandbox: Twin, version: str, container: str) -> Path:
    if container in HAMI_PROGRAMS:
        return sandbox.build_dir(version) / "image" / "k8s-vgpu" / "bin" / HAMI_PROGRAMS[container]
    images = json.loads((sandbox.run_dir / "images.json").read_text())["images"]
    root = next(i["root"] for i in images if any("kube-scheduler" in ref for ref in i["refs"]))
    return Path(root) / "usr" / "local" / "bin" / "kube-scheduler"


def assert_processes_run(sandbox: Twin, version: str, found: dict[str, tuple[Any, dict[str, int]]]) -> None:
    for name, (_, pids) in found.items():
        wanted = SCHEDULER_CONTAINERS if name.startswith("hami-scheduler-") else PLUGIN_CONTAINERS
        assert set(pids) == wanted, f"{name} runs containers {sorted(pids)}"
        for container, pid in pids.items():
            binary = expected_binary(sandbox, version, container)
            assert exe_id(pid) == file_id(binary), \
                f"{name}/{container} (pid {pid}) runs {os.readlink(f'/proc/{pid}/exe')}, not {binary}"


def gpu_pod(name: str, limits: dict[str, str] | None = None, privileged: bool = False) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "work", "image": "registry.invalid/hami-e2e/workload:1",
                                 "command": ["sleep", "3600"], "resources": {"limits": limits or GPU_LIMITS}}
    if privileged:
        container["securityContext"] = {"privileged": True}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"containers": [container], "terminationGracePeriodSeconds": 0}}


def delete_pod(sandbox: Twin, name: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        sandbox.core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)
    except ApiException as error:
        if error.status != 404:
            raise

    def gone() -> bool:
        try:
            sandbox.core.read_namespaced_pod(name, NAMESPACE)
            return False
        except ApiException as error:
            return error.status == 404

    wait_for(gone, 30, f"pod {name} to be deleted")


def read_pod(sandbox: Twin, name: str) -> Any:
    return sandbox.core.read_namespaced_pod(name, NAMESPACE)


def events(sandbox: Twin, name: str) -> list[Any]:
    return sandbox.core.list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={name}").items


def create_through_webhook(sandbox: Twin, body: dict[str, Any]) -> Any:
    """Create a pod once HAMi's webhook answers. Its ``failurePolicy: Ignore`` lets a pod created while the webhook
    Service has no ready endpoint (e.g. in the second after a new scheduler pod turns Ready, before its
    EndpointSlice reaches the proxy) through unmutated, to the default scheduler, where a GPU pod stays Pending for
    ever; a dry-run create of a GPU pod shows whether the webhook answers without leaving anything behind."""
    wait_for(lambda: sandbox.core.create_namespaced_pod(NAMESPACE, gpu_pod("webhook-probe"), dry_run="All")
             .spec.scheduler_name == SCHEDULER_NAME, PROCESS_TIMEOUT, "HAMi's webhook to answer")
    return sandbox.core.create_namespaced_pod(NAMESPACE, body)


def run_gpu_pod(sandbox: Twin, name: str) -> Any:
    """Create a 3000 MiB / 30 % GPU pod and wait until it runs; returns it."""
    create_through_webhook(sandbox, gpu_pod(name))
    return wait_for(lambda: (p := read_pod(sandbox, name)).status.phase == "Running" and p, POD_TIMEOUT,
                    f"GPU pod {name} to run (events: see `kubectl get events -n {NAMESPACE}`)")


def assert_allocated_by_hami(sandbox: Twin, pod: Any) -> None:
    annotations = pod.metadata.annotations or {}
    assert annotations.get("hami.io/bind-phase") == "success", annotations
    match = re.fullmatch(r"(GPU-[0-9a-f-]+),NVIDIA,3000,30:;", annotations.get("hami.io/vgpu-devices-allocated", ""))
    assert match, f"vgpu-devices-allocated is {annotations.get('hami.io/vgpu-devices-allocated')!r}"
    node = next(n for n in sandbox.topology.nodes if n.name == pod.spec.node_name)
    assert match.group(1) in {gpu.uuid for gpu in node.gpus}, f"{match.group(1)} is not a GPU of {node.name}"
    state = sandbox.run_dir / "nodes" / node.name / "allocations" / pod.metadata.uid / "work.json"
    envs = json.loads(state.read_text())["envs"]
    assert (envs["NVIDIA_VISIBLE_DEVICES"], envs["CUDA_DEVICE_MEMORY_LIMIT_0"], envs["CUDA_DEVICE_SM_LIMIT"]) == \
        (match.group(1), "3000m", "30"), f"the plugin's Allocate answered {envs}"


# ---------------------------------------------------------------------------------------------------- fixture
@pytest.fixture(scope="module")
def twin_sandbox() -> Iterator[Twin]:
    from kubernetes import client, config

    sandbox_cli("down", env=ENV)   # a clean start: no release or pod left by an interrupted run
    result = sandbox_cli("up", env=ENV)
    assert result.returncode == 0, f"sandbox up failed:\n{result.stderr}"
    try:
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(RUN_DIR / "kubeconfig"), client_configuration=configuration)
        core = client.CoreV1Api(client.ApiClient(configuration))
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        tools = json.loads((RUN_DIR / "tools.json").read_text())
        made = Twin(RUN_DIR, tools["helm"], core, twin.topology_of(RUN_DIR))
        assert made.info().get("available"), f"HAMi is not loaded: {made.info().get('reason')}"
        yield made
    finally:
        sandbox_cli("down", env=ENV)


# ---------------------------------------------------------------------------------------------------- tests
def test_chart_install_runs_the_scheduler_and_a_device_plugin_per_node_as_hamis_binaries(twin_sandbox: Twin) -> None:
    result = sandbox_cli("hami", "install", env=ENV, timeout=HELM_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert "installed as release hami" in result.stdout
    found = running_hami(twin_sandbox, "2.10.0")
    assert_processes_run(twin_sandbox, "2.10.0", found)
    status = sandbox_cli("hami", "status", env=ENV)
    for _, pids in found.values():
        assert all(f"pid {pid} " in status.stdout for pid in pids.values()), status.stdout


def test_each_node_carries_the_topology_gpus_registered_by_the_real_plugin(twin_sandbox: Twin) -> None:
    for node in twin_sandbox.topology.nodes:
        text = wait_for(lambda: (twin_sandbox.core.read_node(node.name).metadata.annotations or {}).get(
            "hami.io/node-nvidia-register"), PROCESS_TIMEOUT, f"the plugin to register {node.name}'s GPUs")
        registered = sorted((d["id"], d["devmem"], d["count"], d["type"], d["health"]) for d in json.loads(text))
        assert registered == sorted((gpu.uuid, gpu.memory_mib, twin_sandbox.topology.split_count, gpu.model, True)
                                    for gpu in node.gpus), f"{node.name}: {text}"


def test_gpu_pod_is_mutated_filtered_bound_allocated_and_running(twin_sandbox: Twin) -> None:
    try:
        pod = run_gpu_pod(twin_sandbox, "gpu-3000")
        assert pod.spec.scheduler_name == SCHEDULER_NAME, "the webhook did not set HAMi's scheduler"
        assert_allocated_by_hami(twin_sandbox, pod)
        reasons = {(e.reason, e.source.component) for e in events(twin_sandbox, "gpu-3000")}
        assert {("FilteringSucceed", SCHEDULER_NAME), ("BindingSucceed", SCHEDULER_NAME)} <= reasons, reasons
    finally:
        delete_pod(twin_sandbox, "gpu-3000")


def test_over_commit_pod_stays_pending_with_hamis_filtering_failed(twin_sandbox: Twin) -> None:
    try:
        over = gpu_pod("gpu-90000", {**GPU_LIMITS, "nvidia.com/gpumem": "90000"})   # more than one 81559 MiB GPU
        create_through_webhook(twin_sandbox, over)
        failed = wait_for(lambda: [e for e in events(twin_sandbox, "gpu-90000") if e.reason == "FilteringFailed"],
                          POD_TIMEOUT, "HAMi's FilteringFailed event")
        assert any("CardInsufficientMemory" in e.message for e in failed), [e.message for e in failed]
        time.sleep(2)   # a scheduling retry must not bind it either
        pod = read_pod(twin_sandbox, "gpu-90000")
        assert (pod.status.phase, pod.spec.node_name) == ("Pending", None)
    finally:
        delete_pod(twin_sandbox, "gpu-90000")


def test_privileged_gpu_pod_is_refused_by_the_webhook(twin_sandbox: Twin) -> None:
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as refused:
        try:
            create_through_webhook(twin_sandbox, gpu_pod("gpu-privileged", privileged=True))
        finally:
            delete_pod(twin_sandbox, "gpu-privileged")   # admitted by mistake: do not leave it behind
    assert refused.value.status == 403
    assert json.loads(refused.value.body)["message"] == \
        'admission webhook "vgpu.hami.io" denied the request: container work is privileged'


def test_deleting_the_scheduler_pod_replaces_its_processes_and_scheduling_goes_on(twin_sandbox: Twin) -> None:
    before = running_hami(twin_sandbox, "2.10.0")
    old_name, (_, old_pids) = next((n, v) for n, v in before.items() if n.startswith("hami-scheduler-"))
    twin_sandbox.core.delete_namespaced_pod(old_name, twin.NAMESPACE)
    wait_for(lambda: not any(alive(pid) for pid in old_pids.values()), PROCESS_TIMEOUT,
             f"the processes of {old_name} to stop")
    after = running_hami(twin_sandbox, "2.10.0")   # the deleted pod is not Ready any more: this waits for its successor
    assert old_name not in after
    new_name, (_, new_pids) = next((n, v) for n, v in after.items() if n.startswith("hami-scheduler-"))
    assert not set(new_pids.values()) & set(old_pids.values()), (old_pids, new_pids)
    assert_processes_run(twin_sandbox, "2.10.0", after)
    try:
        assert_allocated_by_hami(twin_sandbox, run_gpu_pod(twin_sandbox, "gpu-after-restart"))
    finally:
        delete_pod(twin_sandbox, "gpu-after-restart")


def test_every_socket_of_every_sandbox_process_is_on_loopback(twin_sandbox: Twin) -> None:
    components = [pid for name in (p.stem for p in (twin_sandbox.run_dir / "pids").glob("*.pid"))
                  if (pid := processes.running_pid(twin_sandbox.run_dir, name))]
    pods = netcheck.pod_pids(twin_sandbox.run_dir)
    sockets = netcheck.sockets(components + pods)
    in_pods = {s.local for s in sockets if s.listening and s.lo_only}
    assert ":::443" in in_pods, f"the scheduler's 0.0.0.0:443 was not found in its pod's namespace: {in_pods}"
    assert netcheck.violations(components + pods) == []


def test_upgrade_from_2_9_0_to_2_10_0_swaps_the_processes_while_a_workload_runs(twin_sandbox: Twin) -> None:
    uninstall(twin_sandbox)
    helm_release(twin_sandbox, "install", "2.9.0")
    old = running_hami(twin_sandbox, "2.9.0")
    assert_processes_run(twin_sandbox, "2.9.0", old)
    try:
        workload = run_gpu_pod(twin_sandbox, "workload")
        assert_allocated_by_hami(twin_sandbox, workload)
        process = wait_for(lambda: agent_processes(twin_sandbox, NAMESPACE).get("workload", {}).get("work"),
                           PROCESS_TIMEOUT, "the workload's process")
        helm_release(twin_sandbox, "upgrade", "2.10.0")
        new = running_hami(twin_sandbox, "2.10.0")
        assert_processes_run(twin_sandbox, "2.10.0", new)
        old_pids = {pid for _, pids in old.values() for pid in pids.values()}
        assert not any(alive(pid) for pid in old_pids), "a 2.9.0 process outlived the upgrade"
        assert not old_pids & {pid for _, pids in new.values() for pid in pids.values()}
        still = read_pod(twin_sandbox, "workload")
        assert (still.metadata.uid, still.status.phase) == (workload.metadata.uid, "Running")
        assert still.status.container_statuses[0].restart_count == 0
        assert alive(process) and agent_processes(twin_sandbox, NAMESPACE)["workload"]["work"] == process
    finally:
        delete_pod(twin_sandbox, "workload")


def test_uninstall_leaves_no_hami_process(twin_sandbox: Twin) -> None:
    before = {pid for pids in agent_processes(twin_sandbox).values() for pid in pids.values() if pid}
    assert before, "nothing was running before the uninstall"
    helm(twin_sandbox, "uninstall", twin.RELEASE, "-n", twin.NAMESPACE, "--wait")
    wait_for(lambda: not any(alive(pid) for pid in before), PROCESS_TIMEOUT, "HAMi's processes to stop")
    agent = processes.running_pid(twin_sandbox.run_dir, "node-agent")
    binaries = {file_id(Path(r["build"]) / "image" / "k8s-vgpu" / "bin" / program)
                for r in twin_sandbox.info()["releases"] for program in HAMI_PROGRAMS.values()}
    left = [pid for pid in netcheck.pod_pids(twin_sandbox.run_dir) if exe_id(pid) in binaries]
    children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(int(p.name)) == agent]
    assert left == [] and not [pid for pid in children if exe_id(pid) in binaries], (left, children)
    wait_for(lambda: not hami_pods(twin_sandbox, "hami-scheduler") + hami_pods(twin_sandbox, "hami-device-plugin"),
             PROCESS_TIMEOUT, "HAMi's pods to be removed")
    wait_for(lambda: not [n for n in agent_processes(twin_sandbox) if n.startswith(("hami-scheduler-",
                                                                                   "hami-device-plugin-"))],
             PROCESS_TIMEOUT, "the node agent to drop HAMi's pods from its status")


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return None


def test_a_source_without_the_privileged_check_admits_the_privileged_pod(twin_sandbox: Twin, tmp_path: Path) -> None:
    """The mutant proof: the refusal above comes from HAMi's code, so a one-line change to that code shows."""
    with tarfile.open(REPO.parent / "shared" / "third_party" / "HAMi-2.10.0.tar.gz") as archive:
        archive.extractall(tmp_path, filter="data")
    webhook = next(tmp_path.glob("*/pkg/scheduler/webhook.go"))
    code = webhook.read_text()
    assert code.count(PRIVILEGED_CHECK) == 1, f"{webhook} changed: find the privileged check anew"
    webhook.write_text(code.replace(PRIVILEGED_CHECK, "if false && hasPrivileged && hasResource {"))
    mutant = webhook.parents[2]
    release_build = twin_sandbox.build_dir("2.10.0")
    uninstall(twin_sandbox)
    result = sandbox_cli("hami", "install", "--source", str(mutant), env=ENV, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    mutant_build = twin_sandbox.build_dir("2.10.0")
    built_from = json.loads((mutant_build / "build.json").read_text())["content_sha256"]
    assert mutant_build != release_build and built_from == hami_source.resolve(mutant).content_hash
    assert_processes_run(twin_sandbox, "2.10.0", running_hami(twin_sandbox, "2.10.0"))   # now the mutant's binaries
    try:
        create_through_webhook(twin_sandbox, gpu_pod("gpu-privileged", privileged=True))
        pod = read_pod(twin_sandbox, "gpu-privileged")
        assert pod.spec.scheduler_name == SCHEDULER_NAME, "admitted, but not through HAMi's webhook"
        assert pod.spec.containers[0].security_context.privileged is True
    finally:
        delete_pod(twin_sandbox, "gpu-privileged")
        uninstall(twin_sandbox)
        shutil.rmtree(tmp_path, ignore_errors=True)
