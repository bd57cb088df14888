"""The keywords on what HAMi wrote: allocation, webhook mutation, events, node registration and annotations, metrics
(no cluster)."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest

import kube_fakes
from hami_e2e.core.errors import HamiE2EFailure

UUID_A = "GPU-0a1e5c00-0000-4000-8000-000000000000"
UUID_B = "GPU-0a1e5c00-0000-4000-8000-000000000001"
REGISTER = json.dumps(
    [
        {"id": UUID_A, "count": 10, "devmem": 81559, "devcore": 100, "type": "NVIDIA-NVIDIA H100 80GB HBM3",
         "mode": "hami-core", "health": True},
        {"id": UUID_B, "index": 1, "count": 10, "devmem": 81559, "devcore": 100,
         "type": "NVIDIA-NVIDIA H100 80GB HBM3", "mode": "hami-core", "health": True},
    ]
)
GPU_LIMITS = {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "3000", "nvidia.com/gpucores": "30"}}


@pytest.fixture
def ctx():
    ctx = kube_fakes.context()
    ctx.namespace = "ns"
    return ctx


@pytest.fixture
def state(ctx, monkeypatch):
    monkeypatch.setattr("kubernetes.watch.Watch", kube_fakes.FakeWatchFactory([]))
    return kube_fakes.Keywords(ctx)


def hami_pod(allocated, node="gpu-node-0", containers=None, label_node=None, **kwargs):
    annotations = {"hami.io/vgpu-devices-allocated": allocated, "hami.io/vgpu-node": node, "hami.io/bind-phase": "success"}
    return kube_fakes.pod(
        name=kwargs.pop("name", "small"),
        node=node,
        annotations=annotations,
        labels={"hami.io/vgpu-node": label_node or node},
        scheduler="hami-scheduler",
        containers=containers
        or [{"name": "cuda", "image": "cuda", "resources": GPU_LIMITS}],
        **kwargs,
    )


def serve(ctx, pod):
    ctx.core.list_namespaced_pod = kube_fakes.FakeList([[pod]])
    ctx.core.read_namespaced_pod = lambda name, namespace: pod
    ctx.core.read_node = lambda name: kube_fakes.node(name, annotations={"hami.io/node-nvidia-register": REGISTER})


# ------------------------------------------------------------------------------------------ allocation


def test_allocation_matching_the_request_passes(state, ctx):
    serve(ctx, hami_pod(f"{UUID_A},NVIDIA,3000,30:;"))
    state.pod_allocation_should_be("small", gpumem=3000, gpucores=30, gpus=1)
    state.pod_should_be_allocated_on_its_node("small")
    state.pod_should_be_mutated_by_hami_webhook("small")
    assert state.get_allocated_gpu_uuids("small") == [UUID_A]


def test_allocation_mismatch_names_container_expected_actual_and_raw_annotation(state, ctx):
    serve(ctx, hami_pod(f"{UUID_A},NVIDIA,4000,30:;"))
    with pytest.raises(HamiE2EFailure) as failure:
        state.pod_allocation_should_be("small", gpumem=3000, gpucores=30)
    assert str(failure.value) == (
        f"Allocation of pod ns/small: container cuda {UUID_A} has 4000 MiB, expected 3000. "
        f"Annotation: '{UUID_A},NVIDIA,4000,30:;'"
    )


def test_per_container_allocation_skips_init_containers_in_the_order(state, ctx):
    pod = hami_pod(f";{UUID_A},NVIDIA,2000,20:;{UUID_B},NVIDIA,1000,10:;", containers=[
        {"name": "cuda", "image": "cuda", "resources": GPU_LIMITS},
        {"name": "cuda-1", "image": "cuda", "resources": GPU_LIMITS},
    ])
    pod.spec.init_containers = [kube_fakes.model({"name": "warmup", "image": "busybox"}, "V1Container")]
    serve(ctx, pod)
    state.pod_allocation_should_be("small", gpumem=1000, gpus=1, container="cuda-1")
    state.pod_allocation_should_be("small", gpus=0, container="warmup")
    state.pod_allocation_should_be("small", gpumem=2000, container="cuda")
    with pytest.raises(HamiE2EFailure, match="container cuda-1 .* has 1000 MiB, expected 2000"):
        state.pod_allocation_should_be("small", gpumem=2000)
    with pytest.raises(HamiE2EFailure, match="has no container 'nope'; it has warmup, cuda, cuda-1"):
        state.pod_allocation_should_be("small", container="nope")


def test_device_count_mismatch(state, ctx):
    serve(ctx, hami_pod(f"{UUID_A},NVIDIA,3000,30:;"))
    with pytest.raises(HamiE2EFailure, match="container cuda got 1 device.s., expected 2"):
        state.pod_allocation_should_be("small", gpus=2)


def test_placement_mismatches_are_reported(state, ctx):
    serve(ctx, hami_pod(f"{UUID_A},NVIDIA,3000,30:;", label_node="gpu-node-1"))
    with pytest.raises(HamiE2EFailure, match="label hami.io/vgpu-node='gpu-node-1'; expected all three equal"):
        state.pod_should_be_allocated_on_its_node("small")
    serve(ctx, hami_pod("GPU-elsewhere,NVIDIA,3000,30:;"))
    with pytest.raises(HamiE2EFailure, match="was allocated GPU-elsewhere, which node gpu-node-0 does not register"):
        state.pod_should_be_allocated_on_its_node("small")


def test_missing_allocation_fails_at_once_with_the_pod_state(state, ctx):
    serve(ctx, kube_fakes.pod("pod-pending.json", name="small"))
    with pytest.raises(HamiE2EFailure, match="ns/small has no hami.io/vgpu-devices-allocated annotation: .* Pending"):
        state.get_allocated_gpu_uuids("small")


def test_bind_phase_failed_fails_at_once(state, ctx):
    pod = hami_pod(f"{UUID_A},NVIDIA,3000,30:;")
    pod.metadata.annotations["hami.io/bind-phase"] = "failed"
    serve(ctx, pod)
    with pytest.raises(HamiE2EFailure, match="bind-phase is failed, expected success"):
        state.wait_until_pod_bind_phase_is("small")


def test_webhook_bypass_is_explained(state, ctx):
    serve(ctx, kube_fakes.pod(name="bypass"))
    with pytest.raises(HamiE2EFailure, match="schedulerName 'default-scheduler', expected 'hami-scheduler'"):
        state.pod_should_be_mutated_by_hami_webhook("bypass")
    state.pod_should_not_be_mutated_by_hami_webhook("bypass")


def test_limit_added_by_the_webhook(state, ctx):
    serve(ctx, hami_pod(f"{UUID_A},NVIDIA,3000,30:;"))
    state.pod_resource_limit_should_be("small", "cores", "30")
    with pytest.raises(HamiE2EFailure, match="limit nvidia.com/gpumem-percentage is None, expected '25'"):
        state.pod_resource_limit_should_be("small", "nvidia.com/gpumem-percentage", "25")
    with pytest.raises(HamiE2EFailure, match="limit nvidia.com/gpucores is '30', expected '100'"):
        state.pod_resource_limit_should_be("small", "cores", "100")


# ------------------------------------------------------------------------------------------ events


def test_event_wait(state, ctx):
    bound = kube_fakes.event("BindingSucceed", "Successfully binding node [gpu-node-0] to ns/small", "small",
                             kind="Normal")
    ctx.core.list_namespaced_event = kube_fakes.FakeList([[bound]])
    assert state.wait_until_pod_has_event("small", "BindingSucceed", "binding node [gpu-node-0]").startswith("Success")
    with pytest.raises(HamiE2EFailure, match="Events seen: .*BindingSucceed"):
        state.wait_until_pod_has_event("small", "FilteringFailed", timeout=timedelta(milliseconds=20))
    with pytest.raises(HamiE2EFailure, match="^HAMi never filtered it$"):
        state.wait_until_pod_has_event("small", "FilteringFailed", timeout=timedelta(milliseconds=20),
                                       message="HAMi never filtered it")


# ------------------------------------------------------------------------------------------ nodes


def test_registration_matches_the_inventory(state, ctx):
    node = kube_fakes.node(annotations={"hami.io/node-nvidia-register": REGISTER})
    ctx.core.list_node = kube_fakes.FakeList([[node]])
    state.wait_until_node_registration_matches(
        "gpu-node-0", gpu_count=2, memory_mib=81559, model="NVIDIA H100 80GB HBM3", split_count=10, cores=100
    )
    assert state.get_gpu_uuids_of_node.__name__  # keyword exists
    with pytest.raises(HamiE2EFailure) as failure:
        state.wait_until_node_registration_matches("gpu-node-0", gpu_count=4, memory_mib=40960,
                                             timeout=timedelta(milliseconds=20))
    assert "2 GPU(s) registered, expected 4" in str(failure.value)
    assert f"{UUID_A} devmem 81559 MiB, expected 40960" in str(failure.value)


def test_unregistered_node(state, ctx):
    ctx.core.list_node = kube_fakes.FakeList([[kube_fakes.node()]])
    with pytest.raises(HamiE2EFailure, match="Mismatches: no GPU is registered"):
        state.wait_until_node_registration_matches("gpu-node-0", gpu_count=2, timeout=timedelta(milliseconds=20))


def test_gpu_nodes_and_slots(state, ctx):
    ctx.core.list_node = lambda label_selector: kube_fakes.listing([kube_fakes.node("gpu-node-0")])
    ctx.core.read_node = lambda name: kube_fakes.node(name)
    state.gpu_nodes_should_be(["gpu-node-0"])
    with pytest.raises(HamiE2EFailure, match="Nodes labelled gpu=on: gpu-node-0; expected gpu-node-0, gpu-node-1"):
        state.gpu_nodes_should_be(["gpu-node-1", "gpu-node-0"])
    state.node_should_advertise_split_gpu_slots("gpu-node-0", 2, 10)
    with pytest.raises(HamiE2EFailure, match="allocatable nvidia.com/gpu is '20', expected 10"):
        state.node_should_advertise_split_gpu_slots("gpu-node-0", 1, 10)


def test_leftovers_are_listed_per_node(state, ctx):
    dirty = kube_fakes.node("gpu-node-0", annotations={"hami.io/node-handshake": "Requesting_2026-11-24 02:00:00",
                                                       "hami.io/mutex.lock": "x", "hami.io/device-cordon": "GPU-x"})
    ctx.core.list_node = kube_fakes.FakeList([[dirty, kube_fakes.node("gpu-node-1")]])
    with pytest.raises(HamiE2EFailure, match="Left over: gpu-node-0: hami.io/mutex.lock, hami.io/node-handshake."):
        state.wait_until_nodes_have_no_hami_leftovers(timeout=timedelta(milliseconds=20))
    state.wait_until_nodes_have_no_hami_leftovers(["gpu-node-1"], timeout=timedelta(milliseconds=20))


def test_node_annotation_changes_are_restored_after_the_test(state, ctx):
    nodes = kube_fakes.FakeNodes(**{"gpu-node-1": {"hami.io/device-cordon": "GPU-old"}}).install(ctx)
    state.set_node_annotation("gpu-node-1", "hami.io/device-cordon", "GPU-a")
    state.set_node_annotation("gpu-node-1", "hami.io/device-cordon", "GPU-b")  # the first value is what comes back
    state.set_node_annotation("gpu-node-1", "extra", "x")
    assert nodes.nodes["gpu-node-1"]["annotations"]["hami-e2e/changes"]  # recorded on the node for a later run
    ctx.run_cleanups("test")
    assert nodes.nodes["gpu-node-1"]["annotations"] == {"hami.io/device-cordon": "GPU-old"}


def test_hami_leftovers_are_removed_by_key(state, ctx):
    patches = []
    annotations = {"hami.io/node-handshake": "Requesting_1", "hami.io/node-handshake-dcu": "x", "other": "y"}
    ctx.core.read_node = lambda name: SimpleNamespace(metadata=SimpleNamespace(annotations=annotations))
    ctx.core.patch_node = lambda name, body: patches.append(body["metadata"]["annotations"])
    assert state.remove_hami_node_annotations("gpu-node-0") == ["hami.io/node-handshake", "hami.io/node-handshake-dcu"]
    assert patches == [{"hami.io/node-handshake": None, "hami.io/node-handshake-dcu": None}]


# ------------------------------------------------------------------------------------------ webhook, metrics


def webhook_configuration(name, webhook, url=None):
    return kube_fakes.model(
        {"metadata": {"name": name}, "webhooks": [{
            "name": webhook, "admissionReviewVersions": ["v1beta1"], "sideEffects": "None", "failurePolicy": "Ignore",
            "clientConfig": {"url": url} if url else {"service": {"name": "hami-scheduler", "namespace": "hami-system"}},
            "rules": [{"operations": ["CREATE"], "resources": ["pods"], "apiGroups": [""], "apiVersions": ["v1"]}],
        }]},
        "V1MutatingWebhookConfiguration",
    )


def test_webhook_registration(state, ctx):
    ctx.admission.list_mutating_webhook_configuration = lambda: kube_fakes.listing(
        [webhook_configuration("hami-webhook", "vgpu.hami.io")]
    )
    state.hami_webhook_should_be_registered()
    with pytest.raises(HamiE2EFailure, match="still registered in hami-webhook"):
        state.hami_webhook_should_not_be_registered()
    ctx.admission.list_mutating_webhook_configuration = lambda: kube_fakes.listing(
        [webhook_configuration("other", "other.example.io")]
    )
    with pytest.raises(HamiE2EFailure, match="No MutatingWebhookConfiguration has webhook vgpu.hami.io; .*other"):
        state.hami_webhook_should_be_registered()


SCHEDULER_METRICS = f"""
hami_gpu_memory_limit_bytes{{zone="vGPU",node="gpu-node-0",device_uuid="{UUID_A}",device_index="0",device_type="NVIDIA-NVIDIA H100 80GB HBM3"}} 85520809984
hami_gpu_core_limit_ratio{{zone="vGPU",node="gpu-node-0",device_uuid="{UUID_A}",device_index="0",device_type="x"}} 100
hami_gpu_memory_limit_bytes{{zone="vGPU",node="gpu-node-0",device_uuid="{UUID_B}",device_index="1",device_type="x"}} 85520809984
hami_gpu_core_limit_ratio{{zone="vGPU",node="gpu-node-0",device_uuid="{UUID_B}",device_index="1",device_type="x"}} 100
hami_vgpu_memory_allocated_bytes{{zone="vGPU",namespace="ns",node="gpu-node-0",pod="small",container_index="0",device_uuid="{UUID_A}"}} 3145728000
hami_vgpu_core_allocated_ratio{{zone="vGPU",namespace="ns",node="gpu-node-0",pod="small",container_index="0",device_uuid="{UUID_A}"}} 30
hami_build_info{{version="v2.10.0"}} 1
"""


def test_metric_keywords_read_a_requests_response_or_its_text(state, ctx):
    serve(ctx, hami_pod(f"{UUID_A},NVIDIA,3000,30:;"))
    response = SimpleNamespace(text=SCHEDULER_METRICS, status_code=200)  # what RequestsLibrary's GET returns
    state.scheduler_metrics_should_show_gpu_limits_of_node(response, "gpu-node-0")
    state.scheduler_metrics_should_show_pod_allocation(response, "small", gpumem=3000, gpucores=30)
    assert state.get_metric_value(SCHEDULER_METRICS, "hami_build_info", version="v2.10.0") == 1
    assert state.get_metric_label_values(response, "hami_gpu_memory_limit_bytes", "device_uuid") == [UUID_A, UUID_B]
    assert state.get_metric_label_values(response, "hami_gpu_memory_limit_bytes", "node", node="nowhere") == []
    state.metric_should_be_absent(response, "hami_vgpu_memory_allocated_bytes", pod="gone")


def test_metric_keywords_name_what_they_found(state, ctx):
    serve(ctx, hami_pod(f"{UUID_A},NVIDIA,3000,30:;"))
    with pytest.raises(HamiE2EFailure, match="hami_vgpu_memory_allocated_bytes sums to 3145728000, expected 4194304000"):
        state.scheduler_metrics_should_show_pod_allocation(SCHEDULER_METRICS, "small", gpumem=4000)
    with pytest.raises(HamiE2EFailure, match=r"should be absent; still present: hami_vgpu_memory_allocated_bytes\{"):
        state.metric_should_be_absent(SCHEDULER_METRICS, "hami_vgpu_memory_allocated_bytes", pod="small")
    with pytest.raises(HamiE2EFailure, match="^mine$"):
        state.metric_should_be_absent(SCHEDULER_METRICS, "hami_build_info", message="mine")
    with pytest.raises(HamiE2EFailure, match="No series named hami_vgpu_nothing at all"):
        state.get_metric_value(SCHEDULER_METRICS, "hami_vgpu_nothing")
    with pytest.raises(HamiE2EFailure, match=r"2 series match hami_gpu_core_limit_ratio\{node=\"gpu-node-0\"\}"):
        state.get_metric_value(SCHEDULER_METRICS, "hami_gpu_core_limit_ratio", node="gpu-node-0")
    with pytest.raises(HamiE2EFailure, match="Not Prometheus text: line 1"):
        state.get_metric_value("<html>502 Bad Gateway</html>", "hami_build_info")
    with pytest.raises(HamiE2EFailure, match="Expected the answer of GET On Session"):
        state.get_metric_value(None, "hami_build_info")


def test_percentage_and_count_helpers(state):
    assert state.get_gpu_memory_for_percentage(25, 81559) == 20389
    assert state.get_gpu_memory_for_percentage(101, 81559) == 82374
    assert state.get_gpu_count_above_node_capacity(2) == 3
