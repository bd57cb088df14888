"""One-line descriptions of Kubernetes objects and API errors, for failure messages."""

from __future__ import annotations

import json
from typing import Any


def api_error_text(error: Exception) -> str:
    """``HTTP <status> <reason>: <message>`` from a Kubernetes ``ApiException`` (the server's own message)."""
    status = getattr(error, "status", None)
    reason = getattr(error, "reason", "") or ""
    body = getattr(error, "body", None)
    message = ""
    if body:
        try:
            message = json.loads(body).get("message", "")
        except (ValueError, AttributeError):
            message = str(body)
    if status is None:
        return str(error)
    return f"HTTP {status} {reason}: {message}".strip().rstrip(":")


def describe_pod(pod: Any) -> str:
    """One-line state of a pod for failure messages: phase, node, scheduling condition, container states."""
    if pod is None:
        return "The pod does not exist."
    status = pod.status
    parts = [f"phase {status.phase}", f"node {pod.spec.node_name or '(none)'}"]
    if status.reason:
        parts.append(f"reason {status.reason}: {status.message or ''}".strip())
    for condition in status.conditions or []:
        if condition.type == "PodScheduled" and condition.status != "True":
            parts.append(f"PodScheduled=False {condition.reason}: {condition.message}")
    for container in (status.init_container_statuses or []) + (status.container_statuses or []):
        state = container.state
        if state and state.waiting:
            parts.append(f"container {container.name} waiting {state.waiting.reason}: {state.waiting.message or ''}")
        elif state and state.terminated:
            parts.append(
                f"container {container.name} terminated {state.terminated.reason} (exit {state.terminated.exit_code})"
            )
    return "Pod " + pod.metadata.name + ": " + "; ".join(parts) + "."
