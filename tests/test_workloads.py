"""The namespace, pod spec, pod, exec and allocation-probe keywords against a mocked Kubernetes client and recorded
objects (no cluster)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from kubernetes.client.exceptions import ApiException

import kube_fakes
from hami_e2e.core.commands import CommandResult
from hami_e2e.core.describe import describe_pod
from hami_e2e.core.errors import HamiE2EFailure
from hami_e2e.keywords.exec import parse_exec_status
from hami_e2e.keywords.pod_specs import NodePolicy


@pytest.fixture
def ctx():
    return kube_fakes.context()


@pytest.fixture
def kw(ctx):
    ctx.namespace = "ns"
    return kube_fakes.Keywords(ctx)


@pytest.fixture
def watches(monkeypatch):
    def install(*streams):
        factory = kube_fakes.FakeWatchFactory(list(streams))
        monkeypatch.setattr("kubernetes.watch.Watch", factory)
        return factory

    return install


# ------------------------------------------------------------------------------------------ specs


def test_spec_carries_hami_limits_and_selection_annotations(kw):
    spec = kw.build_gpu_pod_spec(
        "small",
        gpumem=3000,
        gpucores=30,
        use_gpu_type="H100",
        nouse_gpu_uuid=["GPU-a", "GPU-b"],
        node_policy=NodePolicy.spread,
        gpu_policy="binpack,numa",
    )
    (container,) = spec["spec"]["containers"]
    assert container["name"] == "cuda"
    assert container["resources"]["limits"] == {
        "nvidia.com/gpu": "1",
        "nvidia.com/gpumem": "3000",
        "nvidia.com/gpucores": "30",
    }
    assert spec["metadata"]["annotations"] == {
        "nvidia.com/use-gputype": "H100",
        "nvidia.com/nouse-gpuuuid": "GPU-a,GPU-b",
        "hami.io/node-scheduler-policy": "spread",
        "hami.io/gpu-scheduler-policy": "binpack,numa",
    }
    assert container["command"] == ["sleep", "infinity"]
    assert "nodeName" not in spec["spec"] and "schedulerName" not in spec["spec"]


def test_no_gpu_argument_means_no_resources_at_all(kw):
    spec = kw.build_gpu_pod_spec("plain", gpus=0)
    assert "resources" not in spec["spec"]["containers"][0]


def test_several_containers_privileged_env_node_and_scheduler(kw):
    spec = kw.build_gpu_pod_spec(
        "pair",
        gpumem_percentage=25,
        containers=3,
        privileged=True,
        env={"API_MODE": "x"},
        node_name="gpu-node-0",
        scheduler_name="other",
    )
    names = [c["name"] for c in spec["spec"]["containers"]]
    assert names == ["cuda", "cuda-1", "cuda-2"]
    for container in spec["spec"]["containers"]:
        assert container["securityContext"] == {"privileged": True}
        assert container["env"] == [{"name": "API_MODE", "value": "x"}]
        assert container["resources"]["limits"]["nvidia.com/gpumem-percentage"] == "25"
    assert spec["spec"]["nodeName"] == "gpu-node-0" and spec["spec"]["schedulerName"] == "other"


def test_vendor_names_and_workload_defaults_apply_to_new_specs(kw):
    kw.configure_vendor_names(gpu="example.com/gpu", memory="example.com/mem")
    kw.configure_workload_defaults(
        image="img:1", tolerations=[{"key": "gpu", "operator": "Exists"}], node_selector={"pool": "a"}
    )
    spec = kw.build_gpu_pod_spec("renamed", gpumem=100)
    container = spec["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"example.com/gpu": "1", "example.com/mem": "100"}
    assert container["image"] == "img:1"
    assert spec["spec"]["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert spec["spec"]["nodeSelector"] == {"pool": "a"}


def test_unknown_vendor_key_is_refused(kw):
    with pytest.raises(HamiE2EFailure, match="Unknown vendor name key"):
        kw.configure_vendor_names(gpus="x")


def test_init_container_is_added_in_front_of_the_allocation_order(kw):
    spec = kw.build_gpu_pod_spec("mixed", gpumem=2000)
    kw.add_container_to_pod_spec(spec, "warmup", gpumem=1000, init=True)
    kw.add_container_to_pod_spec(spec, "sidecar")
    assert [c["name"] for c in spec["spec"]["initContainers"]] == ["warmup"]
    assert [c["name"] for c in spec["spec"]["containers"]] == ["cuda", "sidecar"]
    assert "resources" not in spec["spec"]["containers"][1]


# ------------------------------------------------------------------------------------------ namespace, create


def test_test_namespace_is_named_after_the_suite_labelled_and_tracked(ctx):
    created = []
    deleted = []
    ctx.core.create_namespace = lambda body: created.append(body)
    ctx.core.delete_namespace = lambda name, propagation_policy: deleted.append(name)
    # the cleanup waits until the namespace's pods are gone: there are none
    ctx.core.list_namespaced_pod = lambda **kwargs: kube_fakes.listing([])
    ctx.suite_name = "Suites.10 vGPU Pods"
    kw = kube_fakes.Keywords(ctx)
    name = kw.create_test_namespace()
    assert name.startswith("hami-e2e-10-vgpu-pods-") and len(name) == len("hami-e2e-10-vgpu-pods-") + 5
    assert created[0]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "hami-e2e"
    assert ctx.namespace == name
    assert ctx.run_cleanups("test") == [] and deleted == [name]


def test_long_suite_names_still_give_valid_namespace_names(ctx):
    ctx.core.create_namespace = lambda body: None
    ctx.suite_name = "Suites." + "Very Long Suite Name " * 10
    name = kube_fakes.Keywords(ctx).create_test_namespace()
    assert len(name) <= 63 and name[-6] == "-" and name[-7] != "-"


def test_keep_on_failure_keeps_the_namespace_but_restores_node_changes(ctx):
    undone = []
    ctx.keep_on_failure = True
    ctx.track("namespace ns", lambda: undone.append("ns"), keepable=True)
    ctx.track("label gpu on node n", lambda: undone.append("label"))
    ctx.finish_test(failed=True)
    assert undone == ["label"] and ctx.cleanups == []


def test_refused_pod_creation_carries_the_webhook_message(kw, ctx):
    message = json.dumps(
        {"message": 'admission webhook "vgpu.hami.io" denied the request: container cuda is privileged'}
    )

    def create(namespace, body):
        error = ApiException(status=403, reason="Forbidden")
        error.body = message
        raise error

    ctx.core.create_namespaced_pod = create
    with pytest.raises(HamiE2EFailure) as failure:
        kw.create_pod_from_spec(kw.build_gpu_pod_spec("priv", gpumem=1000, privileged=True))
    assert str(failure.value) == (
        "Creating pod ns/priv was refused (HTTP 403 Forbidden): "
        'admission webhook "vgpu.hami.io" denied the request: container cuda is privileged'
    )


def test_created_pod_becomes_the_default_pod(kw, ctx):
    ctx.core.create_namespaced_pod = lambda namespace, body: kube_fakes.pod(name=body["metadata"]["name"])
    assert kw.create_pod_from_spec(kw.build_gpu_pod_spec("small", gpumem=1000)) == "small"
    assert ctx.last_pod == "small" and kw.pod_name(None) == "small"


def test_manifest_text_gets_the_test_namespace(kw, ctx, tmp_path):
    seen = {}
    ctx.core.create_namespaced_pod = lambda namespace, body: seen.update(ns=namespace, body=body) or kube_fakes.pod(
        name=body["metadata"]["name"]
    )
    manifest = tmp_path / "pod.yaml"
    manifest.write_text("kind: Pod\nmetadata:\n  name: from-file\n  namespace: other\n  labels: {ns: '${NAMESPACE}'}\n")
    assert kw.create_pod_from_manifest(str(manifest)) == "from-file"
    assert seen["ns"] == "ns" and seen["body"]["metadata"]["namespace"] == "ns"
    assert seen["body"]["metadata"]["labels"] == {"ns": "ns"}


# ------------------------------------------------------------------------------------------ waits


def test_wait_for_running_follows_the_watch_and_returns_the_node(kw, ctx, watches):
    pending = kube_fakes.pod("pod-pending.json", name="small")
    running = kube_fakes.pod(name="small", node="gpu-node-1")
    ctx.core.list_namespaced_pod = kube_fakes.FakeList([[pending]])
    factory = watches([("MODIFIED", pending), ("MODIFIED", running)])
    assert kw.wait_until_pod_is_running("small") == "gpu-node-1"
    assert ctx.core.list_namespaced_pod.calls[0]["field_selector"] == "metadata.name=small"
    assert factory.started[0]["resource_version"] == "100"


def test_wait_resumes_when_the_server_ends_the_watch(kw, ctx, watches):
    pending = kube_fakes.pod("pod-pending.json", name="small")
    running = kube_fakes.pod(name="small")
    ctx.core.list_namespaced_pod = kube_fakes.FakeList([[pending]])
    factory = watches([], [("MODIFIED", running)])
    assert kw.wait_until_pod_is_running("small") == running.spec.node_name
    assert len(factory.started) == 2 and factory.started[1]["resource_version"] == "100"


def test_wait_relists_after_410_gone(kw, ctx, watches):
    pending = kube_fakes.pod("pod-pending.json", name="small")
    running = kube_fakes.pod(name="small")
    ctx.core.list_namespaced_pod = kube_fakes.FakeList([[pending], [running]])
    watches([("ERROR", ApiException(status=410, reason="Gone"))])
    assert kw.wait_until_pod_is_running("small") == running.spec.node_name
    assert len(ctx.core.list_namespaced_pod.calls) == 2


def test_failed_pod_fails_the_wait_at_once_with_its_reason(kw, ctx, watches):
    failed = kube_fakes.pod(name="bypass", phase="Failed")
    failed.status.reason = "UnexpectedAdmissionError"
    failed.status.message = "Allocate failed due to rpc error: no binding pod found on node gpu-node-0"
    ctx.core.list_namespaced_pod = kube_fakes.FakeList([[failed]])
    watches()
    with pytest.raises(HamiE2EFailure, match="reason UnexpectedAdmissionError: Allocate failed"):
        kw.wait_until_pod_is_running("bypass")


def test_timeout_names_phase_scheduling_condition_and_events(kw, ctx, watches):
    pending = kube_fakes.pod("pod-pending.json", name="stuck")
    ctx.core.list_namespaced_pod = kube_fakes.FakeList([[pending]])
    ctx.core.list_namespaced_event = lambda namespace, field_selector: kube_fakes.listing(
        [kube_fakes.event("FailedScheduling", "0/2 nodes are available", "stuck")]
    )
    watches()
    with pytest.raises(HamiE2EFailure) as failure:
        kw.wait_until_pod_is_running("stuck", timeout=timedelta(milliseconds=50))
    text = str(failure.value)
    assert text.startswith("Running of pod ns/stuck did not happen within 0 seconds.")
    assert "phase Pending" in text and "PodScheduled=False Unschedulable" in text
    assert "Recent events: 2026-11-24T02:40:00Z Warning FailedScheduling Pod/stuck: 0/2 nodes are available" in text


def test_pending_with_reason_matches_event_text_and_checks_the_pod(kw, ctx, watches):
    wanted = kube_fakes.event("FilteringFailed", "2 nodes CardInsufficientMemory(gpu-node-0,gpu-node-1)", "greedy")
    ctx.core.list_namespaced_event = kube_fakes.FakeList([[]])
    ctx.core.read_namespaced_pod = lambda name, namespace: kube_fakes.pod("pod-pending.json", name=name)
    watches([("ADDED", kube_fakes.event("FilteringFailed", "no available node", "greedy")), ("ADDED", wanted)])
    message = kw.wait_until_pod_is_pending_with_reason(
        "greedy", "FilteringFailed", r"REGEXP:^\d+ nodes CardInsufficientMemory\("
    )
    assert message == wanted.message
    assert ctx.core.list_namespaced_event.calls[0]["field_selector"] == "involvedObject.kind=Pod,involvedObject.name=greedy"


def test_pending_with_reason_refuses_a_pod_that_got_bound(kw, ctx, watches):
    ctx.core.list_namespaced_event = kube_fakes.FakeList([[kube_fakes.event("FilteringFailed", "x", "p")]])
    ctx.core.read_namespaced_pod = lambda name, namespace: kube_fakes.pod(name=name)
    watches()
    with pytest.raises(HamiE2EFailure, match="is not Pending and unbound"):
        kw.wait_until_pod_is_pending_with_reason("p", "FilteringFailed")


def test_wait_for_deleted_ends_on_the_deleted_event(kw, ctx, watches):
    running = kube_fakes.pod(name="gone")
    ctx.core.list_namespaced_pod = kube_fakes.FakeList([[running]])
    watches([("DELETED", running)])
    kw._wait_for_pod_deleted("gone", "ns", None)


def test_describe_pod_of_a_missing_pod():
    assert describe_pod(None) == "The pod does not exist."


# ------------------------------------------------------------------------------------------ exec


@pytest.mark.parametrize(
    "status, expected",
    [
        ('{"metadata":{},"status":"Success"}', (0, "")),
        (
            '{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}',
            (3, ""),
        ),
        ('{"status":"Failure","reason":"InternalError","message":"command terminated: exit status 7"}', (7, "")),
        (
            '{"status":"Failure","message":"exec: \\"nope\\": executable file not found in $PATH"}',
            (-1, 'exec: "nope": executable file not found in $PATH'),
        ),
        ("", (-1, "the exec stream ended without an exit status")),
    ],
)
def test_exit_status_comes_from_the_error_channel(status, expected):
    assert parse_exec_status(status) == expected


class FakeStream:
    """A ``WSClient`` that delivers its channel data in two updates, then closes."""

    def __init__(self, frames, status):
        self.frames = list(frames)
        self.buffers = {}
        self.status = status
        self.closed = False

    def is_open(self):
        return bool(self.frames)

    def update(self, timeout=0):
        if self.frames:
            for channel, data in self.frames.pop(0).items():
                self.buffers[channel] = self.buffers.get(channel, "") + data

    def read_channel(self, channel, timeout=0):
        if channel == 3:
            return self.status if not self.frames else ""
        return self.buffers.pop(channel, "")

    def close(self):
        self.closed = True


def test_exec_keeps_stdout_and_stderr_apart_and_checks_the_exit_status(kw, ctx, monkeypatch):
    fake = FakeStream([{1: "out\n", 2: "err\n"}, {1: "more\n"}], '{"status":"Failure","reason":"InternalError",'
                      '"message":"exit status 3"}')
    seen = {}

    def stream(func, name, namespace, **kwargs):
        seen.update(name=name, namespace=namespace, **kwargs)
        return fake

    ctx.core.connect_get_namespaced_pod_exec = object()
    monkeypatch.setattr("kubernetes.stream.stream", stream)
    result = kw.exec_in_pod("small", "echo out; echo err >&2", expected_rc="any")
    assert result == CommandResult(["/bin/sh", "-c", "echo out; echo err >&2"], 3, "out\nmore\n", "err\n", "")
    assert seen["stdout"] and seen["stderr"] and not seen["tty"] and seen["_preload_content"] is False
    assert fake.closed
    fake = FakeStream([{2: "boom"}], '{"status":"Failure","reason":"InternalError","message":"exit status 1"}')
    with pytest.raises(HamiE2EFailure, match=r"exited with 1, expected 0\. stderr: 'boom'"):
        kw.exec_in_pod("small", ["false"])


def test_hami_core_oom_probe_checks_the_enforced_limit(kw, monkeypatch):
    oom = (
        "[HAMI-core ERROR (pid:12 thread=1 allocator.c:52)]: Device 0 OOM 4737466368 / 3145728000\n"
        "torch.OutOfMemoryError: CUDA out of memory."
    )
    stream = "hami_e2e.keywords.exec.open_exec_stream"
    monkeypatch.setattr(stream, lambda *args: CommandResult(args[3], 1, "", oom))
    kw.gpu_memory_allocation_should_fail_with_hami_core_oom("probe", 4000, limit_mib=3000)
    with pytest.raises(HamiE2EFailure, match=r"limit of 3145728000 bytes \(3000 MiB\), expected 2097152000 bytes"):
        kw.gpu_memory_allocation_should_fail_with_hami_core_oom("probe", 4000, limit_mib=2000)
    with pytest.raises(HamiE2EFailure, match="expected success"):
        kw.gpu_memory_allocation_should_succeed("probe", 4000)
    with pytest.raises(HamiE2EFailure, match="^the tester's own words$"):
        kw.gpu_memory_allocation_should_succeed("probe", 4000, message="the tester's own words")
    monkeypatch.setattr(stream, lambda *args: CommandResult(args[3], 0, "allocated 4000 MiB", ""))
    with pytest.raises(HamiE2EFailure, match=r"succeeded \(rc=0\); expected HAMi-core to refuse it"):
        kw.gpu_memory_allocation_should_fail_with_hami_core_oom("probe", 4000)
    monkeypatch.setattr(stream, lambda *args: CommandResult(args[3], 1, "", "CUDA error: unknown"))
    with pytest.raises(HamiE2EFailure, match="there is no HAMi-core OOM line"):
        kw.gpu_memory_allocation_should_fail_with_hami_core_oom("probe", 4000)


def test_restart_count_and_phase_assertions_name_the_pod(kw, ctx):
    running = kube_fakes.pod(name="steady")
    running.status.container_statuses[0].restart_count = 2
    ctx.core.read_namespaced_pod = lambda name, namespace: running
    with pytest.raises(HamiE2EFailure, match=r"Pod steady restarted 2 times \{'cuda': 2\}, expected 0"):
        kw.pod_restart_count_should_be("steady")
    with pytest.raises(HamiE2EFailure, match="Pod steady phase is Running, expected Succeeded"):
        kw.pod_phase_should_be("steady", "Succeeded")


def test_missing_pod_is_a_clear_failure(kw, ctx):
    def missing(name, namespace):
        raise ApiException(status=404, reason="Not Found")

    ctx.core.read_namespaced_pod = missing
    with pytest.raises(HamiE2EFailure, match="Pod ns/ghost does not exist"):
        kw.get_pod_node("ghost")


def test_logs_failure_carries_the_server_message(kw, ctx):
    def no_logs(name, namespace, **kwargs):
        error = ApiException(status=400, reason="Bad Request")
        error.body = json.dumps({"message": 'no logs found for container "cuda"'})
        raise error

    ctx.core.read_namespaced_pod_log = no_logs
    with pytest.raises(HamiE2EFailure, match='ns/small/cuda failed: HTTP 400 Bad Request: no logs found'):
        kw.get_pod_logs("small", container="cuda")


def test_no_namespace_yet_is_explained(ctx):
    kw = kube_fakes.Keywords(ctx)
    with pytest.raises(HamiE2EFailure, match="call `Create Test Namespace` first"):
        kw.get_pod_node("small")
