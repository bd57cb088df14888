"""Units of the node agent that need no cluster: image references, container paths, fault remapping, certgen,
Kubernetes' $(VAR) expansion, and the per-sandbox Service range."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from cryptography import x509

from sandbox import config
from sandbox.agent import certgen, gpu_containers
from sandbox.agent.containers import expand
from sandbox.agent.enter import _inside
from sandbox.agent.images import Catalog, Image, is_runnable_repository, normalize


def test_image_references_normalize_like_a_container_runtime():
    assert normalize("docker.io/projecthami/hami:v2.10.0") == "projecthami/hami:v2.10.0"
    assert normalize("docker.io/library/busybox") == "busybox:latest"
    assert normalize("registry.cn-hangzhou.aliyuncs.com/google_containers/kube-scheduler:v1.36.3@sha256:ab") == \
        "registry.cn-hangzhou.aliyuncs.com/google_containers/kube-scheduler:v1.36.3"
    assert is_runnable_repository("docker.io/liangjw/kube-webhook-certgen:v1.1.1")
    assert not is_runnable_repository("nvcr.io/nvidia/cuda:12.4.0-base")


def test_catalog_finds_an_image_by_pattern_and_lists_built_tags(tmp_path: Path):
    catalog = Catalog(tmp_path / "images.json")
    catalog.add(Image(refs=("projecthami/hami:v2.10.0", "*/projecthami/hami:v2.10.0"), root="/x"))
    assert catalog.find("docker.io/projecthami/hami:v2.10.0") is not None
    assert catalog.find("mirror.example/projecthami/hami:v2.10.0") is not None
    assert catalog.find("projecthami/hami:v2.8.0") is None
    assert catalog.tags_of("projecthami/hami:v2.8.0") == ["v2.10.0"]


def test_kwok_stages_skip_exactly_the_repositories_the_agent_runs():
    from sandbox.agent.images import RUNNABLE_REPOSITORIES

    text = config.STAGES_FILE.read_text()
    for name in RUNNABLE_REPOSITORIES:
        assert name in text, f"kwok/stages.yaml does not skip pods of {name}"
    assert text.count('hami.io/vgpu-devices-allocated') >= 3   # pod-start, job-pod-complete, pod-remove


def test_container_paths_resolve_symlinks_inside_the_root_never_onto_the_host(tmp_path: Path):
    root = tmp_path / "root"
    (root / "run").mkdir(parents=True)
    (root / "var").mkdir()
    os.symlink("/run", root / "var" / "run")          # absolute link, as in every container root
    os.symlink("../run", root / "var" / "rel")        # relative link
    assert _inside(str(root), "/var/run/secrets/x") == str(root / "run" / "secrets" / "x")
    assert _inside(str(root), "/var/rel/a") == str(root / "run" / "a")
    assert _inside(str(root), "/../../etc/passwd") == str(root / "etc" / "passwd")


def test_kubernetes_variable_expansion():
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)-$(C)-$$(A)", env) == "1-two-$(C)-$(A)"


def test_node_faults_reach_a_container_under_its_own_gpu_numbering(tmp_path: Path):
    node = tmp_path / "node-overrides.yaml"
    mine = tmp_path / "container-overrides.yaml"
    node_uuids = ["GPU-a", "GPU-b", "GPU-c"]
    node.write_text(yaml.safe_dump({"version": 1, "devices": {"1": {"failure": {"mode": "lost"}},
                                                              "2": {"temperature": 90}}}))
    assert gpu_containers.sync_faults(node, mine, node_uuids, ["GPU-b"])
    assert yaml.safe_load(mine.read_text()) == {"version": 1, "devices": {"0": {"failure": {"mode": "lost"}}}}
    assert not gpu_containers.sync_faults(node, mine, node_uuids, ["GPU-b"]), "unchanged content is not rewritten"
    node.write_text(yaml.safe_dump({"version": 1}))
    assert gpu_containers.sync_faults(node, mine, node_uuids, ["GPU-b"])
    assert yaml.safe_load(mine.read_text()) == {"version": 1}


def test_a_pod_counts_as_hami_allocated_only_with_devices_in_the_annotation():
    def pod(value):
        return SimpleNamespace(metadata=SimpleNamespace(annotations={"hami.io/vgpu-devices-allocated": value}))

    assert gpu_containers.allocated_by_hami(pod("GPU-x,NVIDIA,3000,30:;"))
    assert not gpu_containers.allocated_by_hami(pod(";;"))
    assert not gpu_containers.allocated_by_hami(SimpleNamespace(metadata=SimpleNamespace(annotations=None)))


def test_certgen_makes_a_serving_certificate_for_the_hosts_it_is_given():
    command, options = certgen.parse_args(["create", "--host=hami-scheduler.hami-system.svc,127.0.0.1",
                                           "--namespace=hami-system", "--secret-name=tls"])
    assert command == "create" and options["secret-name"] == "tls"
    ca_pem, cert_pem, _ = certgen.make_certificates(options["host"].split(","))
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["hami-scheduler.hami-system.svc"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert cert.issuer == x509.load_pem_x509_certificate(ca_pem).subject


@pytest.mark.parametrize("offset, expected", [("0", "127.96.0.0/16"), ("1000", "127.97.0.0/16"),
                                              ("7000", "127.103.0.0/16")])
def test_each_port_offset_gets_its_own_loopback_service_range(monkeypatch, offset, expected):
    monkeypatch.setenv("HAMI_E2E_PORT_OFFSET", offset)
    reloaded = importlib.reload(config)
    try:
        assert reloaded.service_cidr() == expected
        assert reloaded.kubernetes_service_ip() == expected.replace(".0.0/16", ".0.1")
    finally:
        monkeypatch.delenv("HAMI_E2E_PORT_OFFSET")
        importlib.reload(config)
