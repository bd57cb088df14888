"""What a pod HAMi allocated sees on the sandbox (issue 10's acceptance): real nvidia-smi and real HAMi-core in the
container the node agent runs, reached through the API server as on a cluster (exec, logs), and HAMi's vGPU monitor
reading the container's shared region.

Two sandboxes of this module's own, one after the other (pytest tears the first down before it starts the second):

- ``hami-core``: run dir ``/tmp/gpu-pods-sandbox``, port offset 4000, HAMi 2.10.0 installed with its chart. Its GPU
  pods are created together at the start: a 3000 MiB / 30 % pod, a two-GPU pod, three pods pinned to one card
  (``nvidia.com/use-gpuuuid``) with limits of their own, a pod whose command runs nvidia-smi, and a pod to delete.
- ``no-hami-core``: ``HAMI_E2E_HAMI_CORE=off`` (containers run without HAMi-core's ``/etc/ld.so.preload``), run dir
  ``/tmp/gpu-pods-fault-sandbox``, offset 5000: the fault proof. The limit checks of the first sandbox are run there
  and must fail, each with an expected-vs-actual message; the card's 81559 MiB shows and 4000 MiB is allocated.

Each test names the fault that fails it.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from sandbox import twin as sandbox_twin
from sandbox.agent import containers

from .conftest import sandbox_cli

HAMI_CORE = "hami-core"
NO_HAMI_CORE = "no-hami-core"
SANDBOXES = {   # kind -> (run dir, port offset, extra environment of `sandbox up`)
    HAMI_CORE: (Path("/tmp/gpu-pods-sandbox"), 4000, {}),
    NO_HAMI_CORE: (Path("/tmp/gpu-pods-fault-sandbox"), 5000, {"HAMI_E2E_HAMI_CORE": "off"}),
}
NAMESPACE = "gpu-pods"
IMAGE = "registry.invalid/hami-e2e/workload:1"   # any image: a GPU container runs the GPU container root
MODEL = "NVIDIA H100 80GB HBM3"
CARD_MIB = 81559
CONTEXT_MIB = 518          # an H100's CUDA context, which HAMi-core charges against the limit
MIB = 1 << 20
LIMIT_3000_BYTES = 3000 * MIB   # 3145728000, as HAMi-core prints it
OOM_RC = 2                 # gpu-workload: an allocation failed with CUDA_ERROR_OUT_OF_MEMORY
UNPRIVILEGED_UID = 65534
POD_TIMEOUT = 90.0         # the first filter after the scheduler starts may wait for its 15 s device ticker
EXEC_TIMEOUT = 60.0
MONITOR_TIMEOUT = 30.0     # the monitor rescans the containers folder every 5 s
HOLD_SECONDS = 60          # a holder is killed by the test long before this


@dataclass
class Twin:
    """One running sandbox with HAMi installed and this module's pods."""

    kind: str
    run_dir: Path
    port_offset: int
    core: Any
    pods: dict[str, Any] = field(default_factory=dict)   # name -> the pod once Running

    def allocated(self, pod: str) -> list[tuple[str, int, int]]:
        """(UUID, MiB, cores) of each GPU HAMi allocated to the pod's first container."""
        text = (self.pods[pod].metadata.annotations or {})["hami.io/vgpu-devices-allocated"]
        first = text.split(";")[0]
        return [(uuid, int(mib), int(cores)) for uuid, _, mib, cores in
                (entry.split(",") for entry in first.split(":") if entry)]

    def uuid(self, pod: str) -> str:
        return self.allocated(pod)[0][0]


@dataclass
class Exec:
    """What ``kubectl exec`` gave back through the API server."""

    argv: list[str]
    rc: int | None        # None: the command did not start (kwok says why in ``message``)
    stdout: str
    stderr: str
    message: str

    def __str__(self) -> str:
        return f"exec {self.argv}: rc {self.rc}, message {self.message!r}\n" \
               f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"


# ---------------------------------------------------------------------------------------------------- pods
def gpu_pod(name: str, limits: dict[str, str], command: list[str] | None = None,
            annotations: dict[str, str] | None = None, restart: str = "Always") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations or {}},
            "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "work", "image": IMAGE, "command": command or ["sleep", "infinity"],
                                     "resources": {"limits": limits}}]}}


def limits(gpus: int, mib: int, cores: int | None = None) -> dict[str, str]:
    wanted = {"nvidia.com/gpu": str(gpus), "nvidia.com/gpumem": str(mib)}
    return wanted | ({"nvidia.com/gpucores": str(cores)} if cores is not None else {})


SHARED_CARD_LIMITS = {"share-2500": 2500, "share-3000": 3000, "share-3500": 3500}
SMI_LOG_COMMAND = ["sh", "-c", "nvidia-smi --query-gpu=uuid,memory.total --format=csv,noheader,nounits"]


def healthy_pods(shared_uuid: str) -> list[dict[str, Any]]:
    pinned = {"nvidia.com/use-gpuuuid": shared_uuid}
    return [gpu_pod("limit-3000", limits(1, 3000, 30)),
            gpu_pod("two-gpus", limits(2, 2000)),
            *(gpu_pod(name, limits(1, mib), annotations=pinned) for name, mib in SHARED_CARD_LIMITS.items()),
            gpu_pod("smi-log", limits(1, 1500), SMI_LOG_COMMAND, restart="Never"),
            gpu_pod("doomed", limits(1, 1000))]


# ---------------------------------------------------------------------------------------------------- helpers
def wait_for(condition: Callable[[], Any], timeout: float, what: str | Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}")
        time.sleep(0.2)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))


def exit_status(status: dict[str, Any]) -> tuple[int | None, str]:
    """The exit status from the exec stream's error channel. A kubelet answers ``NonZeroExitCode`` with an
    ``ExitCode`` cause; kwok answers ``InternalError`` ending in ``exit status <n>`` (``cmd wait``), or
    ``cmd start: ...`` when the program could not be started."""
    if status.get("status") == "Success":
        return 0, ""
    message = status.get("message", "")
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return int(cause["message"]), message
    found = re.search(r"exit status (\d+)\s*$", message)
    return (int(found.group(1)) if found else None), message


def exec_in(sandbox: Twin, pod: str, argv: list[str], timeout: float = EXEC_TIMEOUT) -> Exec:
    """``kubectl exec`` through the API server (the kubernetes client's stream), stdout and stderr apart."""
    import yaml
    from kubernetes.stream import stream
    from kubernetes.stream.ws_client import ERROR_CHANNEL

    response = stream(sandbox.core.connect_get_namespaced_pod_exec, pod, NAMESPACE, command=argv, container="work",
                      stdout=True, stderr=True, stdin=False, tty=False, _preload_content=False)
    try:
        stdout, stderr = [], []
        deadline = time.monotonic() + timeout
        while response.is_open():
            if time.monotonic() > deadline:
                raise AssertionError(f"exec {argv} in {pod} still runs after {timeout:.0f} s")
            response.update(timeout=1)
            stdout.append(response.read_stdout())
            stderr.append(response.read_stderr())
        stdout.append(response.read_stdout())
        stderr.append(response.read_stderr())
        status = yaml.safe_load(response.read_channel(ERROR_CHANNEL) or "{}") or {}
    finally:
        response.close()
    rc, message = exit_status(status)
    return Exec(argv, rc, "".join(stdout), "".join(stderr), message)


def exec_ok(sandbox: Twin, pod: str, argv: list[str]) -> str:
    result = exec_in(sandbox, pod, argv)
    assert result.rc == 0, str(result)
    return result.stdout


@dataclass
class Holder:
    """A ``gpu-workload alloc MIB --hold`` started in the background of a container by ``kubectl exec``."""

    sandbox: Twin
    pod: str
    pid: int
    out: str

    def wait_held(self) -> str:
        def held() -> str | None:
            text = exec_ok(self.sandbox, self.pod, ["cat", self.out])
            assert "oom " not in text and "error" not in text, f"the holder in {self.pod} could not allocate:\n{text}"
            return text if "hold seconds=" in text else None

        return wait_for(held, EXEC_TIMEOUT, f"the holder in {self.pod} to hold its memory")

    def stop(self) -> None:
        if alive(self.pid):
            exec_in(self.sandbox, self.pod, ["kill", str(self.pid)])
        wait_for(lambda: not alive(self.pid), EXEC_TIMEOUT, f"holder pid {self.pid} to exit")


def start_holder(sandbox: Twin, pod: str, mib: int, name: str = "holder") -> Holder:
    out = f"/tmp/{name}.out"
    pid = exec_ok(sandbox, pod, ["sh", "-c", f"gpu-workload alloc {mib} --hold {HOLD_SECONDS} >{out} 2>&1 & echo $!"])
    holder = Holder(sandbox, pod, int(pid.strip()), out)
    holder.wait_held()
    return holder


def fields(stdout: str, kind: str) -> dict[str, str]:
    """The key=value fields of gpu-workload's first line of one kind ({} if none)."""
    for line in stdout.splitlines():
        if line.startswith(kind + " "):
            return dict(re.findall(r'(\w+)="?([^" ]*)', line))
    return {}


def agent_pids(sandbox: Twin, pod: str) -> list[int]:
    """The container processes the node agent reports for a pod."""
    return [c["pid"] for p in sandbox_twin.processes(sandbox.run_dir) if p["pod"] == f"{NAMESPACE}/{pod}"
            for c in p["containers"] if c["pid"]]


def read_pod(sandbox: Twin, name: str) -> Any:
    return sandbox.core.read_namespaced_pod(name, NAMESPACE)


def create_and_wait(sandbox: Twin, manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """Create the pods together and wait until each runs (or has completed); returns name -> pod."""
    for manifest in manifests:
        sandbox.core.create_namespaced_pod(NAMESPACE, manifest)

    def started(name: str) -> Any:
        pod = read_pod(sandbox, name)
        return pod if pod.status.phase in ("Running", "Succeeded") and \
            (pod.metadata.annotations or {}).get("hami.io/bind-phase") == "success" else None

    def describe(name: str) -> str:
        events = sandbox.core.list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={name}").items
        return f"pod {name} to run; its events: {[(e.reason, e.message) for e in events]}"

    names = [m["metadata"]["name"] for m in manifests]
    with ThreadPoolExecutor(len(names)) as pool:
        futures = {name: pool.submit(wait_for, lambda n=name: started(n), POD_TIMEOUT, lambda n=name: describe(n))
                   for name in names}
        return {name: future.result() for name, future in futures.items()}


def start_sandbox(kind: str) -> Twin:
    from kubernetes import client, config

    run_dir, offset, extra = SANDBOXES[kind]
    env = {**os.environ, "HAMI_E2E_SANDBOX_DIR": str(run_dir), "HAMI_E2E_PORT_OFFSET": str(offset), **extra}
    sandbox_cli("down", env=env)   # a clean start: nothing left by an interrupted run
    result = sandbox_cli("up", env=env)
    assert result.returncode == 0, f"sandbox up failed:\n{result.stderr}"
    assert json.loads((run_dir / "knobs.json").read_text())["hami_core"] is (kind == HAMI_CORE)
    installed = sandbox_cli("hami", "install", env=env, timeout=600)
    assert installed.returncode == 0, f"hami install failed:\n{installed.stderr}"
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(run_dir / "kubeconfig"), client_configuration=configuration)
    core = client.CoreV1Api(client.ApiClient(configuration))
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    return Twin(kind, run_dir, offset, core)


def stop_sandbox(kind: str) -> None:
    run_dir, offset, extra = SANDBOXES[kind]
    sandbox_cli("down", env={**os.environ, "HAMI_E2E_SANDBOX_DIR": str(run_dir),
                             "HAMI_E2E_PORT_OFFSET": str(offset), **extra})


# ---------------------------------------------------------------------------------------------------- fixture
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test runs on the sandbox with HAMi-core except the fault proofs (``test_fault_*``), which run on the
    one without; as one module-scoped parameter, pytest stops the first sandbox before it starts the second."""
    if "twin" in metafunc.fixturenames:
        kind = NO_HAMI_CORE if metafunc.function.__name__.startswith("test_fault_") else HAMI_CORE
        metafunc.parametrize("twin", [kind], indirect=True, scope="module")


@pytest.fixture(scope="module")
def twin(request: pytest.FixtureRequest) -> Iterator[Twin]:
    kind = request.param
    try:
        sandbox = start_sandbox(kind)
        if kind == HAMI_CORE:
            shared = sandbox_twin.topology_of(sandbox.run_dir).nodes[0].gpus[0].uuid
            sandbox.pods = create_and_wait(sandbox, healthy_pods(shared))
        else:
            sandbox.pods = create_and_wait(sandbox, [gpu_pod("limit-3000", limits(1, 3000, 30))])
        yield sandbox
    finally:
        stop_sandbox(kind)


# ---------------------------------------------------------------------------------------------------- limit checks
# Run on both sandboxes: they pass with HAMi-core and must fail, expected against actual, without it.
def check_query_shows_uuid_and_limit(sandbox: Twin, pod: str, limit_mib: int) -> None:
    csv = exec_ok(sandbox, pod, ["nvidia-smi", "--query-gpu=uuid,memory.total", "--format=csv,noheader,nounits"])
    expected = [f"{sandbox.uuid(pod)}, {limit_mib}"]
    assert csv.strip().splitlines() == expected, f"expected {expected}, got {csv.strip().splitlines()}"


def check_table_shows_limit(sandbox: Twin, pod: str, limit_mib: int) -> None:
    table = exec_ok(sandbox, pod, ["nvidia-smi"])
    memory = [(int(used), int(total)) for used, total in re.findall(r"(\d+)MiB\s*/\s*(\d+)MiB", table)]
    assert [total for _, total in memory] == [limit_mib], \
        f"expected the memory column to read <used>MiB / {limit_mib}MiB, got {memory} in:\n{table}"
    assert memory[0][0] <= limit_mib, table


def check_refused_above_limit(sandbox: Twin, pod: str) -> None:
    result = exec_in(sandbox, pod, ["gpu-workload", "alloc", "4000"])
    oom = re.search(r"\[HAMI-core ERROR \(pid:\d+ thread=\d+ allocator\.c:\d+\)\]: Device 0 OOM (\d+) / (\d+)",
                    result.stderr)
    actual = (result.rc, oom.group(1, 2) if oom else None)
    expected = (OOM_RC, (str((4000 + CONTEXT_MIB) * MIB), str(LIMIT_3000_BYTES)))
    assert actual == expected, f"expected rc {OOM_RC} with HAMi-core's 'Device 0 OOM 4737466368 / 3145728000', " \
                               f"got (rc, OOM figures) {actual}\n{result}"


def check_meminfo_shows_limit(sandbox: Twin, pod: str) -> None:
    info = fields(exec_ok(sandbox, pod, ["gpu-workload", "meminfo"]), "meminfo")
    actual = (info.get("total_mib"), info.get("free_mib"))
    expected = ("3000", str(3000 - CONTEXT_MIB))
    assert actual == expected, f"expected cuMemGetInfo (total, free) MiB {expected}, got {actual}"


# ---------------------------------------------------------------------------------------------------- tests
def test_query_gives_the_allocated_uuid_and_the_limit(twin: Twin) -> None:
    # Fault: HAMi-core not preloaded -> 81559; a profile of another card or of the whole node -> another UUID or
    # more rows; an Allocate env of another container -> another limit.
    assert twin.allocated("limit-3000")[0][1:] == (3000, 30)
    check_query_shows_uuid_and_limit(twin, "limit-3000", 3000)


def test_list_shows_only_the_allocated_gpu(twin: Twin) -> None:
    # Fault: the node's profile (both cards) instead of the container's, or the mock's default 8 A100s.
    listed = exec_ok(twin, "limit-3000", ["nvidia-smi", "-L"]).strip().splitlines()
    assert listed == [f"GPU 0: {MODEL} (UUID: {twin.uuid('limit-3000')})"]


def test_default_table_shows_the_limit_as_total_memory(twin: Twin) -> None:
    check_table_shows_limit(twin, "limit-3000", 3000)


def test_two_gpu_pod_sees_both_gpus_each_with_its_limit(twin: Twin) -> None:
    # Fault: a profile of one card, limits only for device 0 (CUDA_DEVICE_MEMORY_LIMIT_1 dropped) -> 81559 on GPU 1.
    allocated = twin.allocated("two-gpus")
    assert len(allocated) == 2 and len({uuid for uuid, _, _ in allocated}) == 2, allocated
    csv = exec_ok(twin, "two-gpus", ["nvidia-smi", "--query-gpu=index,uuid,memory.total",
                                     "--format=csv,noheader,nounits"])
    assert csv.strip().splitlines() == [f"{index}, {uuid}, 2000" for index, (uuid, _, _) in enumerate(allocated)]
    assert exec_in(twin, "two-gpus", ["gpu-workload", "alloc", "1000", "--device", "1"]).rc == 0
    refused = exec_in(twin, "two-gpus", ["gpu-workload", "alloc", "3000", "--device", "1"])
    assert refused.rc == OOM_RC and f"Device 1 OOM {(3000 + CONTEXT_MIB) * MIB} / {2000 * MIB}" in refused.stderr, \
        str(refused)


def test_three_pods_on_one_gpu_each_see_their_own_limit(twin: Twin) -> None:
    # Fault: one shared-region file or one profile for every container of a card -> the first pod's limit for all.
    uuids = {twin.uuid(name) for name in SHARED_CARD_LIMITS}
    assert len(uuids) == 1, f"use-gpuuuid did not put the pods on one card: {uuids}"
    for name, mib in SHARED_CARD_LIMITS.items():
        check_query_shows_uuid_and_limit(twin, name, mib)


def test_workload_allocates_within_the_limit_and_is_refused_above_it(twin: Twin) -> None:
    # Fault: HAMi-core not preloaded or its limit not read -> 4000 MiB fits the 81559 MiB card; the OOM exit code
    # lost -> rc 0 or 3.
    check_meminfo_shows_limit(twin, "limit-3000")
    allocated = exec_in(twin, "limit-3000", ["gpu-workload", "alloc", "1000"])
    assert allocated.rc == 0 and fields(allocated.stdout, "alloc").get("allocated_mib") == "1000", str(allocated)
    check_refused_above_limit(twin, "limit-3000")


def test_two_processes_in_one_container_share_its_limit(twin: Twin) -> None:
    # Fault: a shared-region file per process (or none) -> the second 1800 MiB fits its own 3000 MiB.
    holder = start_holder(twin, "limit-3000", 1800)
    try:
        second = exec_in(twin, "limit-3000", ["gpu-workload", "alloc", "1800"])
        held = 2 * (1800 + CONTEXT_MIB) * MIB
        assert second.rc == OOM_RC and f"Device 0 OOM {held} / {LIMIT_3000_BYTES}" in second.stderr, str(second)
    finally:
        holder.stop()


def test_two_pods_on_one_gpu_do_not_share_a_limit(twin: Twin) -> None:
    # Fault: one shared-region file per card or per node -> the second pod's 1800 MiB is refused.
    assert twin.uuid("share-3000") == twin.uuid("share-3500")
    holder = start_holder(twin, "share-3000", 1800)
    try:
        second = exec_in(twin, "share-3500", ["gpu-workload", "alloc", "1800"])
        assert second.rc == 0 and "OOM" not in second.stderr, str(second)
    finally:
        holder.stop()


def monitor_series(twin: Twin, pod: str) -> dict[str, float]:
    """metric name -> value of the vGPU monitor's series for the pod's container ``work``, from the monitor
    Service's NodePort (127.0.0.1:<nodePort + offset>); scraped until the monitor of the pod's node answers (the
    proxy takes the two nodes' monitors in turn)."""
    service = twin.core.read_namespaced_service("hami-device-plugin-monitor", sandbox_twin.NAMESPACE)
    port = service.spec.ports[0].node_port + twin.port_offset
    node = twin.pods[pod].spec.node_name
    series = re.compile(r'^(hami_\w+)\{([^}]*)\} (\S+)$', re.M)
    for _ in range(4):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        if f'node="{node}"' not in text:
            continue
        found = {}
        for name, labels, value in series.findall(text):
            if f'pod="{pod}"' in labels and 'container="work"' in labels and f'namespace="{NAMESPACE}"' in labels:
                found[name] = float(value)
        return found
    raise AssertionError(f"the monitor of {node} did not answer on 127.0.0.1:{port}")


def test_vgpu_monitor_reports_the_memory_a_container_holds(twin: Twin) -> None:
    # Fault: the monitor does not see the container's folder (hostPath, HOOK_PATH), the pod lacks HAMi's
    # hami.io/vgpu-node label, or the region is not the one the container's HAMi-core writes -> no series or 0.
    holder = start_holder(twin, "limit-3000", 1000, name="monitored")
    try:
        series = wait_for(lambda: (s := monitor_series(twin, "limit-3000")).get(
            "hami_vgpu_memory_used_bytes", 0) >= 1000 * MIB and s, MONITOR_TIMEOUT,
            lambda: f"hami_vgpu_memory_used_bytes >= {1000 * MIB}: {monitor_series(twin, 'limit-3000')}")
        assert series["hami_vgpu_memory_limit_bytes"] == LIMIT_3000_BYTES, series
        assert series["hami_vgpu_memory_used_bytes"] == (1000 + CONTEXT_MIB) * MIB, series
        assert series["hami_vgpu_memory_buffer_bytes"] == 1000 * MIB, series
    finally:
        holder.stop()
    # A process killed by a signal leaves its slot in the region (HAMi-core frees it at exit); the next HAMi-core
    # process of the container drops dead processes' slots, and the monitor's figure falls with it.
    check_meminfo_shows_limit(twin, "limit-3000")
    wait_for(lambda: monitor_series(twin, "limit-3000").get("hami_vgpu_memory_used_bytes") == 0, MONITOR_TIMEOUT,
             "the monitor's used bytes to fall to 0 once the holder was gone")


def test_log_of_a_pod_running_nvidia_smi_holds_its_output(twin: Twin) -> None:
    # Fault: the container's command run elsewhere than the GPU container (kwok's fake) -> empty log.
    wait_for(lambda: read_pod(twin, "smi-log").status.phase == "Succeeded", POD_TIMEOUT, "smi-log to complete")
    log = twin.core.read_namespaced_pod_log("smi-log", NAMESPACE, container="work")
    assert f"{twin.uuid('smi-log')}, 1500" in log.splitlines(), log


def test_command_not_in_the_container_is_not_found_and_never_runs_on_the_host(twin: Twin, tmp_path: Path) -> None:
    # Fault: kwok running exec'd commands on the host (unchrooted) -> python3 runs and writes the marker.
    marker = tmp_path / "ran-on-the-host"
    script = f"open('{marker}', 'w').write('x')"
    for argv in (["python3", "-c", script], ["/usr/bin/python3", "-c", script]):
        result = exec_in(twin, "limit-3000", argv)
        assert result.rc is None and re.search(r"not found|no such file", result.message), str(result)
    # A name kwok's root knows (another pod's program) reaches the container, which has no such program.
    missing = exec_in(twin, "limit-3000", ["kube-scheduler", "--version"])
    assert missing.rc == 127 and "not found" in missing.stderr, str(missing)
    assert not marker.exists()


def test_container_processes_run_as_the_unprivileged_user(twin: Twin) -> None:
    # Fault: the container's user not applied (root), for the command or for exec'd processes.
    assert exec_ok(twin, "limit-3000", ["id", "-u"]).strip() == str(UNPRIVILEGED_UID)
    main = agent_pids(twin, "limit-3000")
    assert main and all(uid_of(pid) == UNPRIVILEGED_UID for pid in main), main
    holder = start_holder(twin, "limit-3000", 100, name="uid")
    try:
        assert uid_of(holder.pid) == UNPRIVILEGED_UID
    finally:
        holder.stop()


def test_deleting_the_pod_stops_its_processes(twin: Twin) -> None:
    # Fault: only the container's process group stopped -> what kubectl exec started keeps running.
    main = agent_pids(twin, "doomed")
    holder = start_holder(twin, "doomed", 100)
    assert main and all(alive(pid) for pid in main + [holder.pid])
    twin.core.delete_namespaced_pod("doomed", NAMESPACE)
    wait_for(lambda: not any(alive(pid) for pid in main + [holder.pid]), 30,
             lambda: f"the processes of the deleted pod to stop: {[p for p in main + [holder.pid] if alive(p)]}")


def test_a_process_in_the_agents_own_namespace_is_never_a_container_process() -> None:
    # Fault: stopping a container before enter.py made its namespace would signal every process of the host's.
    assert containers._container_namespace(os.getpid()) is None
    assert containers._container_namespace(2 ** 22 + 1) is None   # no such process


def test_fault_without_hami_core_the_limit_checks_fail(twin: Twin) -> None:
    """The fault proof: the checks above, on containers without HAMi-core, fail with expected-vs-actual."""
    pod = "limit-3000"
    with pytest.raises(AssertionError, match=rf"expected \['{twin.uuid(pod)}, 3000'\], got "
                                             rf"\['{twin.uuid(pod)}, {CARD_MIB}'\]"):
        check_query_shows_uuid_and_limit(twin, pod, 3000)
    with pytest.raises(AssertionError, match=rf"/ 3000MiB, got \[\(\d+, {CARD_MIB}\)\]"):
        check_table_shows_limit(twin, pod, 3000)
    with pytest.raises(AssertionError, match=r"expected cuMemGetInfo .* got \('81559', "):
        check_meminfo_shows_limit(twin, pod)
    with pytest.raises(AssertionError, match=r"got \(rc, OOM figures\) \(0, None\)"):
        check_refused_above_limit(twin, pod)


def test_fault_without_hami_core_the_card_shows_and_4000_mib_fits(twin: Twin) -> None:
    pod = "limit-3000"
    csv = exec_ok(twin, pod, ["nvidia-smi", "--query-gpu=uuid,memory.total", "--format=csv,noheader,nounits"])
    assert csv.strip() == f"{twin.uuid(pod)}, {CARD_MIB}"
    allocated = exec_in(twin, pod, ["gpu-workload", "alloc", "4000"])
    assert allocated.rc == 0 and fields(allocated.stdout, "alloc").get("allocated_mib") == "4000", str(allocated)
    assert "HAMI-core" not in allocated.stderr, allocated.stderr
