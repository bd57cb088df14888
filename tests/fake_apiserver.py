"""A Kubernetes API server stand-in on loopback for the preflight tests: it serves a few read-only lists from
recorded objects, answers 401 to a wrong bearer token, and records every request that would change something.

    with FakeApiServer(nodes=[node_json("gpu-node-0")]) as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        ...
        assert api.writes == []
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

FIXTURES = Path(__file__).parent / "fixtures" / "kube"
TOKEN = "preflight-test-token"


def node_json(name: str, ready: str = "True", labels: dict[str, str] | None = None,
              annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A recorded sandbox node renamed, with its Ready condition, labels and annotations replaced as given."""
    data = json.loads((FIXTURES / "node-gpu-node-0.json").read_text())
    data["metadata"]["name"] = data["metadata"]["labels"]["kubernetes.io/hostname"] = name
    data["metadata"]["uid"] = f"uid-{name}"
    if labels is not None:
        data["metadata"]["labels"] = labels
    data["metadata"].setdefault("annotations", {}).update(annotations or {})
    for condition in data["status"]["conditions"]:
        if condition["type"] == "Ready":
            condition["status"] = ready
            if ready != "True":
                condition["reason"], condition["message"] = "NodeStatusUnknown", "Kubelet stopped posting node status."
    return data


class FakeApiServer:
    """Serves ``/version``, ``/api/v1/nodes``, ``/api/v1/namespaces`` and ``/api/v1/secrets`` on 127.0.0.1."""

    def __init__(self, nodes: list[dict[str, Any]] | None = None, namespaces: list[dict[str, Any]] | None = None,
                 token: str = TOKEN) -> None:
        self.nodes = nodes or []
        self.namespaces = namespaces or []
        self.token = token
        self.writes: list[str] = []
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def write_kubeconfig(self, path: Path, token: str | None = None, context: str = "lab") -> Path:
        """A kubeconfig whose context ``context`` points at this server with ``token`` (default: the right one)."""
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "lab-cluster", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": token or self.token}}],
            "contexts": [{"name": context, "context": {"cluster": "lab-cluster", "user": "tester"}}],
        }))
        return path

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                server.requests.append(f"GET {self.path}")
                if self.headers.get("Authorization") != f"Bearer {server.token}":
                    self._send(401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                     "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
                    return
                url = urlparse(self.path)
                if url.path.rstrip("/") == "/version":
                    self._send(200, {
                        "major": "1", "minor": "36", "gitVersion": "v1.36.3", "gitCommit": "0" * 40,
                        "gitTreeState": "clean", "buildDate": "2026-11-01T00:00:00Z", "goVersion": "go1.26",
                        "compiler": "gc", "platform": "linux/amd64"})
                    return
                items = {"/api/v1/nodes": server.nodes, "/api/v1/namespaces": server.namespaces,
                         "/api/v1/secrets": []}.get(url.path)
                if items is None:
                    self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                                     "message": f"the fake serves no {url.path}", "reason": "NotFound"})
                    return
                selected = [copy.deepcopy(i) for i in items if _matches(i, parse_qs(url.query))]
                self._send(200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                                 "items": selected})

            def _write(self) -> None:
                server.writes.append(f"{self.command} {self.path}")
                self._send(405, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 405,
                                 "message": "the fake API server is read-only", "reason": "MethodNotAllowed"})

            do_POST = do_PUT = do_PATCH = do_DELETE = _write

        return Handler


def _matches(item: dict[str, Any], query: dict[str, list[str]]) -> bool:
    labels = item.get("metadata", {}).get("labels") or {}
    for requirement in ",".join(query.get("labelSelector", [])).split(","):
        if not requirement:
            continue
        key, _, value = requirement.partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True
