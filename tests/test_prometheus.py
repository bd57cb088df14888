"""The Prometheus text parser (hami_e2e/parsers/prometheus.py)."""

from __future__ import annotations

import math

import pytest

from hami_e2e.parsers.prometheus import find_samples, parse_prometheus_text

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


