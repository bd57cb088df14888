"""Parsers of HAMi's annotations, Prometheus text and events (libraries/hami_annotations.py)."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

import kube_fakes
from hami_e2e.parsers.annotations import (
    AllocatedDevice,
    AnnotationFormatError,
    find_samples,
    format_event,
    hami_annotations,
    parse_allocated_devices,
    parse_node_lock,
    parse_node_register,
    parse_prometheus_text,
    sort_events,
)

# ------------------------------------------------------------------------------------------ allocated devices


def test_one_container_one_device_from_the_partitioning_lab():
    assert parse_allocated_devices("GPU-859b,NVIDIA,4000,0:;") == [[AllocatedDevice("GPU-859b", "NVIDIA", 4000, 0)]]


def test_two_containers_are_split_on_semicolons():
    parsed = parse_allocated_devices("GPU-aaa,NVIDIA,3000,50:;GPU-bbb,NVIDIA,4000,60:;")
    assert [[d.uuid for d in c] for c in parsed] == [["GPU-aaa"], ["GPU-bbb"]]
    assert parsed[1][0].memory_mib == 4000 and parsed[1][0].cores == 60


def test_one_container_with_two_gpus():
    parsed = parse_allocated_devices("GPU-a,NVIDIA,3000,30:GPU-b,NVIDIA,3000,30:;")
    assert len(parsed) == 1 and [d.uuid for d in parsed[0]] == ["GPU-a", "GPU-b"]


def test_init_containers_without_devices_give_empty_parts_first():
    parsed = parse_allocated_devices(";;GPU-main1,NVIDIA,2000,50:;")
    assert parsed == [[], [], [AllocatedDevice("GPU-main1", "NVIDIA", 2000, 50)]]


def test_emptied_to_allocate_annotation_is_one_empty_container():
    assert parse_allocated_devices(";") == [[]]
    assert parse_allocated_devices(";;") == [[], []]


@pytest.mark.parametrize("value", [None, ""])
def test_missing_annotation_has_no_containers(value):
    assert parse_allocated_devices(value) == []


def test_mig_uuids_and_extra_fields_are_kept():
    parsed = parse_allocated_devices("MIG-1234,NVIDIA,10240,100,extra:;")
    assert parsed[0][0].uuid == "MIG-1234" and parsed[0][0].memory_mib == 10240


@pytest.mark.parametrize("value", ["GPU-a,NVIDIA,3000:;", "GPU-a,NVIDIA,lots,30:;"])
def test_malformed_device_entries_are_reported(value):
    with pytest.raises(AnnotationFormatError, match="GPU-a"):
        parse_allocated_devices(value)


def test_an_init_container_without_devices_keeps_its_empty_segment():
    parsed = parse_allocated_devices(";GPU-a,NVIDIA,3000,30:GPU-b,NVIDIA,3000,30:;")
    assert [[d.uuid for d in container] for container in parsed] == [[], ["GPU-a", "GPU-b"]]


# ------------------------------------------------------------------------------------------ node registration

REGISTER = (
    '[{"id":"GPU-3cef","count":10,"devmem":11441,"devcore":100,"type":"NVIDIA-Tesla-K80","mode":"hami-core",'
    '"health":true},{"id":"GPU-5127","index":1,"count":10,"devmem":11441,"devcore":100,"type":"NVIDIA-Tesla-K80",'
    '"numa":1,"mode":"hami-core","health":true}]'
)


def test_json_registration_fills_omitted_fields_with_zero_values():
    first, second = parse_node_register(REGISTER)
    assert (first.id, first.index, first.numa, first.health) == ("GPU-3cef", 0, 0, True)
    assert (second.index, second.numa, second.devmem, second.count) == (1, 1, 11441, 10)


def test_unhealthy_gpu_is_an_omitted_health_field():
    (device,) = parse_node_register('[{"id":"GPU-x","count":10,"devmem":81559,"devcore":100,"type":"NVIDIA H100"}]')
    assert device.health is False


def test_model_drops_the_prefix_only_when_doubled():
    (h100,) = parse_node_register('[{"id":"a","type":"NVIDIA-NVIDIA H100 80GB HBM3"}]')
    (k80,) = parse_node_register('[{"id":"b","type":"NVIDIA-Tesla-K80"}]')
    assert h100.model == "NVIDIA H100 80GB HBM3" and k80.model == "NVIDIA-Tesla-K80"


def test_legacy_registration_with_seven_and_nine_fields():
    devices = parse_node_register("GPU-a,10,32768,100,NVIDIA-V100,0,true:GPU-b,10,32768,100,NVIDIA-V100,1,false,1,hami-core:")
    assert [(d.id, d.numa, d.health, d.index, d.mode) for d in devices] == [
        ("GPU-a", 0, True, 0, ""),
        ("GPU-b", 1, False, 1, "hami-core"),
    ]


@pytest.mark.parametrize("value", ["[{not json", '[{"count":10}]', "GPU-a,10,1,2:"])
def test_broken_registrations_are_reported(value):
    with pytest.raises(AnnotationFormatError):
        parse_node_register(value)


def test_no_registration_is_no_device():
    assert parse_node_register(None) == [] and parse_node_register("  ") == []


# ------------------------------------------------------------------------------------------ node lock, filters


def test_node_lock_with_pod_and_legacy_bare_time():
    lock = parse_node_lock("2026-11-24T02:00:00Z,hami-e2e-x,small")
    assert (lock.namespace, lock.pod) == ("hami-e2e-x", "small")
    assert lock.time == datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
    assert parse_node_lock("2026-11-24T02:00:00+08:00").pod == ""
    assert parse_node_lock(None) is None


def test_only_hami_annotations_are_kept():
    assert hami_annotations({"a/b": "1", "hami.io/z": "2", "hami.io/a": "3"}) == {"hami.io/a": "3", "hami.io/z": "2"}


# ------------------------------------------------------------------------------------------ Prometheus

METRICS = """# HELP hami_vgpu_memory_allocated_bytes vGPU memory allocated
# TYPE hami_vgpu_memory_allocated_bytes gauge
hami_vgpu_memory_allocated_bytes{zone="vGPU",namespace="ns",node="gpu-node-0",pod="small",container_index="0",device_uuid="GPU-1"} 3.145728e+09
hami_vgpu_core_allocated_ratio{zone="vGPU",namespace="ns",node="gpu-node-0",pod="small",container_index="0",device_uuid="GPU-1",} 30
hami_build_info{version="v2.10.0",revision="4707fb02"} 1
plain_metric 42 1700000000000
escaped{path="C:\\\\dir",quote="say \\"hi\\"",nl="a\\nb"} NaN
infinite{le="+Inf"} +Inf
"""


def test_samples_with_labels_exponents_trailing_commas_and_timestamps():
    samples = parse_prometheus_text(METRICS)
    assert [s.name for s in samples][:4] == [
        "hami_vgpu_memory_allocated_bytes",
        "hami_vgpu_core_allocated_ratio",
        "hami_build_info",
        "plain_metric",
    ]
    assert samples[0].value == 3145728000 and samples[0].labels["pod"] == "small"
    assert samples[1].labels["device_uuid"] == "GPU-1" and samples[1].value == 30
    assert samples[3].labels == {} and samples[3].value == 42


def test_label_values_are_unescaped_and_special_values_parsed():
    samples = parse_prometheus_text(METRICS)
    escaped = samples[4]
    assert escaped.labels == {"path": "C:\\dir", "quote": 'say "hi"', "nl": "a\nb"}
    assert math.isnan(escaped.value) and samples[5].value == math.inf


def test_find_samples_matches_name_and_a_subset_of_labels():
    samples = parse_prometheus_text(METRICS)
    assert len(find_samples(samples, "hami_build_info", {"version": "v2.10.0"})) == 1
    assert find_samples(samples, "hami_build_info", {"version": "v2.9.0"}) == []
    assert len(find_samples(samples, "hami_vgpu_core_allocated_ratio", {"pod": "small", "namespace": "ns"})) == 1


@pytest.mark.parametrize("line", ['broken{pod="x" 1', "{}", 'name{pod="x"}'])
def test_malformed_lines_are_reported_with_their_number(line):
    with pytest.raises(ValueError, match="line 1"):
        parse_prometheus_text(line)


# ------------------------------------------------------------------------------------------ events


def test_events_sort_by_their_best_timestamp_and_format_on_one_line():
    late = kube_fakes.event("FilteringFailed", "no available node, 2 nodes do not meet", "p", "2026-11-24T03:00:00Z")
    early = kube_fakes.event("FilteringFailed", "1 nodes CardInsufficientMemory(gpu-node-0)", "p", "2026-11-24T01:00:00Z")
    recorded = kube_fakes.events()
    ordered = sort_events([late, *recorded, early])
    assert ordered[0] is early and ordered[-1] is late
    assert format_event(late) == (
        "2026-11-24T03:00:00Z Warning FilteringFailed Pod/p: no available node, 2 nodes do not meet"
    )
