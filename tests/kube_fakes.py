"""Test doubles for the hami-e2e library: recorded Kubernetes objects, a fake list/watch API and a fake helm runner.

The objects under ``tests/fixtures/kube/`` were recorded from the sandbox's real API server; tests add the HAMi
annotations they need on top, so the shapes are what the Kubernetes client really returns.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kubernetes import client

from hami_e2e.core.commands import CommandResult
from hami_e2e.core.context import Context
from hami_e2e.keywords import components

FIXTURES = Path(__file__).parent / "fixtures" / "kube"
_API = client.ApiClient()


def raw(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def model(data: dict[str, Any], kind: str) -> Any:
    """Deserialize a dict into a kubernetes model (``V1Pod``, ``V1Node``, ``CoreV1EventList`` …)."""
    return _API._ApiClient__deserialize(copy.deepcopy(data), kind)


def pod(
    fixture: str = "pod-running.json",
    name: str | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    phase: str | None = None,
    node: str | None = None,
    scheduler: str | None = None,
    containers: list[dict[str, Any]] | None = None,
    namespace: str = "ns",
) -> Any:
    data = raw(fixture)
    data["metadata"]["namespace"] = namespace
    if name:
        data["metadata"]["name"] = name
        data["metadata"]["uid"] = f"uid-{name}"
    data["metadata"].setdefault("annotations", {}).update(annotations or {})
    data["metadata"].setdefault("labels", {}).update(labels or {})
    if phase:
        data["status"]["phase"] = phase
    if node is not None:
        data["spec"]["nodeName"] = node
    if scheduler:
        data["spec"]["schedulerName"] = scheduler
    if containers is not None:
        data["spec"]["containers"] = containers
    return model(data, "V1Pod")


def node(name: str = "gpu-node-0", annotations: dict[str, str] | None = None) -> Any:
    data = raw("node-gpu-node-0.json")
    data["metadata"]["name"] = name
    data["metadata"]["uid"] = f"uid-{name}"
    data["metadata"].setdefault("annotations", {}).update(annotations or {})
    return model(data, "V1Node")


def events(extra: list[dict[str, Any]] | None = None) -> list[Any]:
    data = raw("events.json")
    items = data["items"] + list(extra or [])
    return [model(item, "CoreV1Event") for item in items]


def event(reason: str, message: str, pod_name: str, when: str = "2026-11-24T02:40:00Z", kind: str = "Warning") -> Any:
    return model(
        {
            "metadata": {"name": f"{pod_name}.{reason}", "namespace": "ns", "uid": f"ev-{pod_name}-{reason}-{when}"},
            "involvedObject": {"kind": "Pod", "name": pod_name, "namespace": "ns"},
            "reason": reason,
            "message": message,
            "type": kind,
            "lastTimestamp": when,
            "firstTimestamp": when,
        },
        "CoreV1Event",
    )


def listing(items: list[Any], version: str = "100") -> Any:
    return SimpleNamespace(items=list(items), metadata=SimpleNamespace(resource_version=version))


@dataclass
class FakeList:
    """A ``list_*`` function: returns successive listings (the last one repeats) and records its calls."""

    listings: list[list[Any]]
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        index = min(len(self.calls) - 1, len(self.listings) - 1)
        return listing(self.listings[index])


class FakeWatchFactory:
    """Replaces ``kubernetes.watch.Watch``: each new watch replays the next list of ``(type, object)`` events."""

    def __init__(self, streams: list[list[tuple[str, Any]]]) -> None:
        self.streams = list(streams)
        self.started: list[dict[str, Any]] = []

    def __call__(self) -> Any:
        factory = self

        class _Watch:
            resource_version = None

            def stream(self, func, **kwargs):
                factory.started.append(kwargs)
                events = factory.streams.pop(0) if factory.streams else []
                for kind, obj in events:
                    if isinstance(obj, Exception):
                        raise obj
                    self.resource_version = "101"
                    yield {"type": kind, "object": obj}

            def stop(self):
                pass

        return _Watch()


@dataclass
class FakeRunner:
    """A command runner answering helm commands from a table of (prefix → result); records every command."""

    answers: list[tuple[list[str], CommandResult]] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)

    def add(self, prefix: list[str], rc: int = 0, stdout: str = "", stderr: str = "") -> None:
        self.answers.insert(0, (prefix, CommandResult(prefix, rc, stdout, stderr)))

    def __call__(self, command: list[str], timeout: float) -> CommandResult:
        self.commands.append(command)
        for prefix, result in self.answers:
            if command[1 : 1 + len(prefix)] == prefix:
                return CommandResult(command, result.rc, result.stdout, result.stderr)
        return CommandResult(command, 0, "", "")


def context(**overrides: Any) -> Context:
    """A Context whose Kubernetes clients are plain namespaces the test fills in (no cluster, no kubeconfig)."""
    ctx = Context(default_timeout=timedelta(seconds=2), poll_interval=timedelta(milliseconds=1), **overrides)
    for attribute in ("core", "apps", "admission", "discovery", "version_api"):
        ctx.__dict__[attribute] = SimpleNamespace()
    ctx.__dict__["api_client"] = _API
    ctx.suite_name = "Suites.Unit"
    return ctx


class Keywords:
    """Every keyword component of HamiLibrary around one context, each method (keywords and helpers alike)
    reachable as an attribute of this one object, as the tests call them."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.parts = components(ctx)

    def __getattr__(self, name: str) -> Any:
        for part in self.parts:
            if name in vars(part) or hasattr(type(part), name):
                return getattr(part, name)
        raise AttributeError(name)

    def part(self, kind: type) -> Any:
        """The component of class ``kind``, to monkeypatch one of its helpers."""
        return next(p for p in self.parts if isinstance(p, kind))


class FakeNodes:
    """``read_node``/``patch_node`` over nodes kept as plain metadata: merge patches apply as the API server
    applies them (``None`` removes a key) and a patch carrying an outdated resourceVersion gets 409."""

    def __init__(self, **annotations_by_node: dict[str, str]) -> None:
        self.nodes = {
            name: {"annotations": dict(annotations), "labels": {}, "version": 1}
            for name, annotations in annotations_by_node.items()
        }
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.conflicts = 0  # how many of the next patches fail with 409

    def read_node(self, name: str) -> Any:
        node = self.nodes[name]
        return SimpleNamespace(
            metadata=SimpleNamespace(
                name=name,
                annotations=dict(node["annotations"]),
                labels=dict(node["labels"]),
                resource_version=str(node["version"]),
            )
        )

    def patch_node(self, name: str, body: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        node, metadata = self.nodes[name], body["metadata"]
        if self.conflicts or metadata.get("resourceVersion", str(node["version"])) != str(node["version"]):
            self.conflicts = max(0, self.conflicts - 1)
            node["version"] += 1
            raise ApiException(status=409, reason="Conflict")
        self.patches.append((name, body))
        for field_name in ("annotations", "labels"):
            for key, value in (metadata.get(field_name) or {}).items():
                if value is None:
                    node[field_name].pop(key, None)
                else:
                    node[field_name][key] = value
        node["version"] += 1

    def install(self, ctx: Context) -> FakeNodes:
        ctx.core.read_node, ctx.core.patch_node = self.read_node, self.patch_node
        return self
