"""resources/kube.resource: KubeLibrary imported at run time against the target, never when robot only reads files.

* A real run: ``Use KubeLibrary On Target`` imports KubeLibrary with the target's kubeconfig (here one that points
  at a small fake API server on loopback), and the resource's reads go through KubeLibrary's keywords.
* A missing kubeconfig fails the import with a sentence naming the file, before KubeLibrary is touched.
* ``robot --dryrun`` passes with no cluster and no kubeconfig at all (KubeLibrary would otherwise connect).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import kube_fakes
import pytest
from robot.api import ExecutionResult

from hami_e2e.core.context import Context
from hami_e2e.core.errors import HamiE2EFailure
from hami_e2e.keywords.target import KUBELIBRARY_OFFLINE, TargetKeywords

REPO = Path(__file__).resolve().parents[1]
NODE = kube_fakes.raw("node-gpu-node-0.json")
RESOURCES = {  # what KubeLibrary's dynamic client discovers before its first call
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": ["get", "list"]},
    ],
}
ANSWERS = {
    "/version": {"major": "1", "minor": "36", "gitVersion": "v1.36.3"},
    "/api": {"kind": "APIVersions", "versions": ["v1"]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": RESOURCES,
    "/api/v1/nodes": {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": [NODE]},
    "/api/v1/nodes/gpu-node-0": NODE,
}
SUITE = """*** Settings ***
Resource          RESOURCE
Suite Setup       Use KubeLibrary On Target

*** Test Cases ***
KubeLibrary Reads The Target
    @{nodes} =    Get GPU Node Names
    Should Be Equal    ${nodes}    ${{ ['gpu-node-0'] }}
    &{labels} =    Get Node Labels    gpu-node-0
    Should Be Equal    ${labels}[nvidia.com/gpu.product]    NVIDIA-H100-80GB-HBM3
    ${count} =    Get Healthy Nodes Count
    Should Be Equal As Integers    ${count}    1
"""


class _FakeApiServer(BaseHTTPRequestHandler):
    """Answers the reads above as a kube-apiserver would; records every path asked for."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.seen.append(path)
        body = ANSWERS.get(path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body if body is not None else {"kind": "Status", "code": 404}).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester"}}],
                "current-context": "fake",
            }
        )
    )
    return path


def _robot(tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    """robot on the small suite above, writing into tmp_path/out, with no KUBECONFIG and an empty home."""
    suite = tmp_path / "kube_check.robot"
    suite.write_text(SUITE.replace("RESOURCE", str(REPO / "resources" / "kube.resource")))
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", KUBELIBRARY_OFFLINE)}
    env.update(HOME=str(tmp_path), TMPDIR=str(tmp_path))
    command = [
        sys.executable,
        "-m",
        "robot",
        "--outputdir",
        str(tmp_path / "out"),
        "--log",
        "NONE",
        "--report",
        "NONE",
        "--console",
        "none",
        *options,
        str(suite),
    ]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def _test(tmp_path: Path) -> SimpleNamespace:
    test = next(iter(ExecutionResult(str(tmp_path / "out" / "output.xml")).suite.all_tests))
    return SimpleNamespace(status=test.status, message=test.message)


def test_kubelibrary_is_imported_at_run_time_with_the_targets_kubeconfig(tmp_path, api_server):
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", api_server)
    _FakeApiServer.seen = []
    _robot(tmp_path, "--variable", f"KUBECONFIG:{kubeconfig}")
    test = _test(tmp_path)
    assert test.status == "PASS", test.message
    assert "/api/v1/nodes" in _FakeApiServer.seen and "/version" in _FakeApiServer.seen


def test_a_missing_kubeconfig_fails_with_the_file_named(tmp_path):
    missing = tmp_path / "nowhere" / "kubeconfig"
    _robot(tmp_path, "--variable", f"KUBECONFIG:{missing}")
    test = _test(tmp_path)
    assert test.status == "FAIL"
    assert f"The target's kubeconfig {missing} (the target's kubeconfig) does not exist" in test.message
    assert "KubeLibrary cannot connect" in test.message


def test_a_dry_run_needs_no_cluster_and_no_kubeconfig(tmp_path):
    done = _robot(tmp_path, "--dryrun", "--variable", f"KUBECONFIG:{tmp_path / 'nowhere'}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _test(tmp_path).status == "PASS"


def test_the_kubeconfig_comes_from_the_target_then_the_environment(tmp_path, monkeypatch):
    ctx = Context(kubeconfig=str(tmp_path / "target.kubeconfig"), kube_context="lab")
    keywords = TargetKeywords(ctx)
    (tmp_path / "target.kubeconfig").write_text("{}")
    assert keywords.get_target_kubeconfig() == (str(tmp_path / "target.kubeconfig"), "lab")
    ctx.connect(None)
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "env.kubeconfig"), "/other"]))
    with pytest.raises(HamiE2EFailure, match=r"env\.kubeconfig \(the first file of \$KUBECONFIG\) does not exist"):
        keywords.get_target_kubeconfig()
    (tmp_path / "env.kubeconfig").write_text("{}")
    assert keywords.get_target_kubeconfig() == (str(tmp_path / "env.kubeconfig"), None)
    monkeypatch.setenv(KUBELIBRARY_OFFLINE, "1")
    with pytest.raises(HamiE2EFailure, match="INIT_FOR_LIBDOC_ONLY=1 is set"):
        keywords.get_target_kubeconfig()
