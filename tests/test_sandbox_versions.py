"""The sandbox's Kubernetes versions and GPU/driver profiles without a running sandbox: which wrapper
module a version builds from, what its binaries are keyed by, and which driver a node's GPUs and containers report."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sandbox import build, config, topology
from sandbox.agent.gpu_containers import write_container_profile
from sandbox.errors import SandboxError
from sandbox.gpu.profile import profile, write_profile
from sandbox.gpu import Gpu

VARIABLES = config.REPO_DIR / "variables"


def test_every_version_has_its_own_module_pinning_its_kubernetes_and_etcd() -> None:
    modules = config.kube_modules()
    assert list(modules)[:3] == ["1.34", "1.35", "1.36"] and config.default_kube_version() == "1.36"
    assert modules["1.36"] == config.KUBE_MODULE_DIR
    for minor, folder in modules.items():
        pins = config.pins(minor)
        assert pins.kubernetes.startswith(f"v{minor}."), (minor, pins)
        assert pins.kube_minor == minor.split(".")[1]
        assert (folder / "go.sum").is_file()
        assert f"k8s.io/api => k8s.io/api v0.{minor.split('.')[1]}." in (folder / "go.mod").read_text()
    assert len({config.pins(minor).etcd for minor in modules}) == len(modules)   # each its own etcd pin


def test_kwok_comes_from_the_default_module_for_every_version() -> None:
    for minor, folder in config.kube_modules().items():
        tools = [binary.name for binary in build._tools(folder)]
        assert tools[:4] == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"], (minor, tools)
        assert build._kwok_module(folder) == config.KUBE_MODULE_DIR
        assert config.pins(minor).kwok == config.pins(config.default_kube_version()).kwok


def test_versions_are_cached_side_by_side_and_the_default_key_is_unchanged() -> None:
    go = build._go()
    keys = {minor: build.cache_key(go, config.pins(minor), folder) for minor, folder in config.kube_modules().items()}
    assert len(set(keys.values())) == len(keys)
    assert all(key.startswith(f"k8s-{config.pins(minor).kubernetes}-") for minor, key in keys.items())
    assert build.version_ldflags(config.pins("1.34")).count("gitVersion=v1.34.") == 2


@pytest.mark.parametrize("requested", ["1.34", "v1.34", "1.34.4", "v1.34.4"])
def test_a_version_is_chosen_by_minor_or_by_its_pinned_patch(requested: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.kube_version(requested) == "1.34"
    monkeypatch.setenv(config.KUBE_VERSION_ENV, requested)
    assert config.kube_version() == "1.34" and config.pins().kubernetes == "v1.34.4"


@pytest.mark.parametrize(("requested", "message"), [("1.20", "not one the sandbox builds"),
                                                    ("1.34.1", "pinned at v1.34.4")])
def test_a_version_without_its_module_is_refused(requested: str, message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        config.kube_version(requested)


def test_topology_gives_each_node_its_driver_and_cuda_and_labels_them() -> None:
    mixed = topology.load(VARIABLES / "sandbox_topology_mixed.yaml")
    assert [(node.driver, node.cuda) for node in mixed.nodes] == [("550.163.01", "12.4"), ("580.159.04", "13.0")]
    labels = mixed.node_object(mixed.nodes[0])["metadata"]["labels"]
    assert labels["nvidia.com/cuda.driver-version.full"] == "550.163.01"
    assert labels["nvidia.com/gpu.product"] == "mixed"
    a100 = topology.load(VARIABLES / "sandbox_topology_a100.yaml")
    assert {(node.driver, node.cuda) for node in a100.nodes} == {("535.261.03", "12.2")}   # the file's top level
    default = topology.load(config.TOPOLOGY_FILE)
    assert {(node.driver, node.cuda) for node in default.nodes} == {("580.159.04", "13.0")}


def test_topology_with_an_unquoted_version_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "topology.yaml"
    bad.write_text(config.TOPOLOGY_FILE.read_text().replace('cuda: "13.0"', "cuda: 13"))
    with pytest.raises(SandboxError, match="CUDA '13'"):
        topology.load(bad)


def test_topology_env_names_a_file_relative_to_the_checkout(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(config.TOPOLOGY_ENV, "variables/sandbox_topology_a100.yaml")
    assert config.topology_file() == VARIABLES / "sandbox_topology_a100.yaml"
    monkeypatch.delenv(config.TOPOLOGY_ENV)
    assert config.topology_file() == config.TOPOLOGY_FILE


def test_models_get_their_own_architecture_power_and_reserved_memory() -> None:
    uuids = ["GPU-4045c000-0000-4000-8000-000000000000", "GPU-7e5c0000-0000-4000-8000-000000000001"]
    made = profile([Gpu(0, uuids[0], "NVIDIA L40S", 46068), Gpu(1, uuids[1], "Tesla T4", 15360)], "550.163.01", "12.4")
    assert made["device_defaults"]["architecture"] == "ada_lovelace"
    assert made["device_defaults"]["power"]["enforced_limit_mw"] == 350000
    t4 = made["devices"][1]
    assert (t4["architecture"], t4["power"]["enforced_limit_mw"]) == ("turing", 70000)
    assert t4["memory"]["reserved_bytes"] == 300 << 20
    assert "architecture" not in made["devices"][0]   # the defaults' model needs no override


def test_container_profile_reports_the_nodes_driver_and_cuda(tmp_path: Path) -> None:
    uuid = "GPU-a1005c00-0000-4000-8000-000000000001"
    node_profile = write_profile(tmp_path / "node" / "config.yaml",
                                 [Gpu(0, "GPU-a1005c00-0000-4000-8000-000000000000", "NVIDIA A100-SXM4-40GB", 40960),
                                  Gpu(1, uuid, "NVIDIA A100-SXM4-40GB", 40960)], "535.261.03", "12.2")
    allocation = {"envs": {"NVIDIA_VISIBLE_DEVICES": uuid}}
    target = tmp_path / "pod" / "work.yaml"
    write_container_profile(allocation, {uuid: ("NVIDIA A100-SXM4-40GB", 40960)}, target, node_profile)
    written = yaml.safe_load(target.read_text())
    assert (written["system"]["driver_version"], written["system"]["cuda_version"]) == ("535.261.03", "12.2")
    assert [(d["index"], d["uuid"], d["name"]) for d in written["devices"]] == [(0, uuid, "NVIDIA A100-SXM4-40GB")]
    write_container_profile(allocation, {uuid: ("NVIDIA A100-SXM4-40GB", 40960)}, target)   # no node profile
    assert yaml.safe_load(target.read_text())["system"]["driver_version"] == "580.159.04"
