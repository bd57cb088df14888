"""Fast checks of the sandbox's pieces that need no running cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cryptography import x509

from sandbox import config, topology
from sandbox.pki import Pki

from .conftest import REPO


def test_default_topology_has_two_nodes_with_two_h100_each():
    topo = topology.load(config.TOPOLOGY_FILE)
    assert [n.name for n in topo.nodes] == ["gpu-node-0", "gpu-node-1"]
    assert all(len(n.gpus) == 2 for n in topo.nodes)
    assert {g.model for n in topo.nodes for g in n.gpus} == {"NVIDIA H100 80GB HBM3"}
    assert {g.memory_mib for n in topo.nodes for g in n.gpus} == {81559}


def test_node_object_advertises_gpus_times_split_count_and_no_address():
    topo = topology.load(config.TOPOLOGY_FILE)
    node = topo.node_object(topo.nodes[0])
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "20"
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "20"
    assert node["metadata"]["labels"]["gpu"] == "on"
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert "addresses" not in node["status"]


def test_duplicate_uuid_is_refused(tmp_path: Path):
    text = config.TOPOLOGY_FILE.read_text().replace("000000000001", "000000000000")
    bad = tmp_path / "topology.yaml"
    bad.write_text(text)
    result = subprocess.run([sys.executable, "-c", f"from sandbox import topology; topology.load(__import__('pathlib').Path('{bad}'))"],
                            cwd=REPO, capture_output=True, text=True)
    assert "lists a GPU UUID twice" in result.stderr


def test_serving_certificates_name_only_loopback(tmp_path: Path):
    pki = Pki(tmp_path)
    pki.create()
    expected = {"apiserver": ["127.0.0.1", config.kubernetes_service_ip()], "kwok": ["127.0.0.1"]}
    for name, ips in expected.items():
        cert = x509.load_pem_x509_certificate(pki.cert(name).read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ips
        assert all(ip.startswith("127.") for ip in ips)
    admin = x509.load_pem_x509_certificate(pki.cert("admin").read_bytes())
    assert "system:masters" in admin.subject.rfc4514_string()


def test_kube_stages_never_start_a_pod_during_an_unfinished_bind_handshake():
    import yaml

    stages = {d["metadata"]["name"]: d for d in yaml.safe_load_all((config.STAGES_FILE).read_text())}
    expressions = stages["pod-start"]["spec"]["selector"]["matchExpressions"]
    bind_phase = next(e for e in expressions if "hami.io/bind-phase" in e["key"])
    assert bind_phase == {"key": '.metadata.annotations["hami.io/bind-phase"]', "operator": "NotIn",
                          "values": ["allocating", "failed"]}
