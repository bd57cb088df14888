"""Parsers of HAMi's pod and node annotations (hami_e2e/parsers/annotations.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from hami_e2e.parsers.annotations import (
    AllocatedDevice,
    AnnotationFormatError,
    hami_annotations,
    parse_allocated_devices,
    parse_node_lock,
    parse_node_register,
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
