"""What marks an object as made by a hami-e2e run, which run, and whether that run still goes on.

Every run has an id, ``<UTC start>-<host>-<pid>`` (a valid label value). What the suite creates carries it:

* namespaces, pods and the HAMi Helm release (its storage labels): ``app.kubernetes.io/managed-by=hami-e2e`` and
  ``hami-e2e/run=<run id>``;
* a node label or annotation a test changes: the node's ``hami-e2e/changes`` annotation records, per change, the
  run, the key, the value before and the value set, so the change can be undone by a later run.

While it runs, a run holds an exclusive lock on ``<runs dir>/<run id>.lock`` (``HAMI_E2E_RUNS_DIR``, default
``/tmp/hami-e2e-runs``); the kernel releases it when the process ends, however it ends. A later run treats the
objects of a run as leftovers when that run's lock is free (or when the run was started on another machine: one
run per cluster at a time, since every run installs HAMi cluster-wide).

No Kubernetes client and no Robot Framework here.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "hami-e2e"
RUN_LABEL = "hami-e2e/run"
NODE_CHANGES_ANNOTATION = "hami-e2e/changes"
RUNS_DIR_ENV = "HAMI_E2E_RUNS_DIR"
#: Set by a wrapper that runs one run as several robot processes (``tools/run_suites.py --pabot``): the run id they
#: share; the wrapper holds the run's lock for them.
RUN_ID_ENV = "HAMI_E2E_RUN_ID"
#: A label selector for everything a hami-e2e run made.
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"

_RUN_ID = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)-(?P<host>[a-z0-9.-]*?)-(?P<pid>\d+)$")


def host_name() -> str:
    """This machine's name as it appears in run ids: lower case, only ``[a-z0-9.-]``, at most 30 characters."""
    slug = re.sub(r"[^a-z0-9.-]+", "-", socket.gethostname().lower()).strip("-.")
    return slug[:30].strip("-.") or "host"


def new_run_id(now: datetime | None = None, pid: int | None = None) -> str:
    """``<UTC start>-<host>-<pid>``, e.g. ``20261127T043200Z-build-7-12345``."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{host_name()}-{os.getpid() if pid is None else pid}"


def run_id_from_environment() -> str:
    """The run id a wrapper handed down in ``HAMI_E2E_RUN_ID``, else a new one."""
    return os.environ.get(RUN_ID_ENV) or new_run_id()


def runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or "/tmp/hami-e2e-runs")


def ownership_labels(run_id: str) -> dict[str, str]:
    """The labels every object a run creates carries."""
    return {MANAGED_BY_LABEL: MANAGED_BY, RUN_LABEL: run_id}


class RunLock:
    """The lock a run holds while it runs, so that other runs leave its objects alone."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.path = runs_dir() / f"{run_id}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None


def run_is_alive(run_id: str | None) -> bool:
    """Whether the run ``run_id`` still goes on: it was started on this machine and holds its lock. A missing or
    malformed id (an object of an older suite version) counts as ended."""
    match = _RUN_ID.match(run_id or "")
    if not match or match["host"] != host_name():
        return False
    path = runs_dir() / f"{run_id}.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def forget_ended_runs() -> list[str]:
    """Removes the lock files that ended runs left (they were killed before they could); returns their run ids."""
    ended = []
    for path in sorted(runs_dir().glob("*.lock")):
        if not run_is_alive(path.stem):
            try:
                path.unlink()
                ended.append(path.stem)
            except OSError:
                pass
    return ended


# ------------------------------------------------------------------------------------------ node changes


@dataclass(frozen=True)
class NodeChange:
    """One label or annotation a run changed on a node: ``before`` is None when the key was absent, ``value``
    None when the run removed it."""

    run: str
    kind: str  # "label" or "annotation"
    key: str
    before: str | None
    value: str | None

    def describe(self, node: str) -> str:
        return f"{self.kind} {self.key} on node {node}"


def read_node_changes(annotations: dict[str, str] | None) -> list[NodeChange]:
    """The changes recorded in a node's ``hami-e2e/changes`` annotation (a malformed one reads as none)."""
    try:
        rows = json.loads((annotations or {}).get(NODE_CHANGES_ANNOTATION) or "[]")
        return [NodeChange(r["run"], r["kind"], r["key"], r.get("before"), r.get("value")) for r in rows]
    except (ValueError, TypeError, KeyError):
        return []


def _encode(changes: list[NodeChange]) -> str | None:
    rows = [c.__dict__ for c in changes]
    return json.dumps(rows, separators=(",", ":"), sort_keys=True) if rows else None


def change_patch(node: Any, run_id: str, kind: str, key: str, value: str | None) -> dict[str, Any]:
    """The merge patch that sets ``kind`` ``key`` to ``value`` (None: removes it) on ``node`` and records the
    change for ``run_id`` in ``hami-e2e/changes``; a key the run changed before keeps its first ``before``.
    The patch carries the node's resourceVersion, so it fails (409) when the node changed meanwhile."""
    metadata = node.metadata
    current = (metadata.labels if kind == "label" else metadata.annotations) or {}
    changes = read_node_changes(metadata.annotations)
    earlier = next((c for c in changes if c.run == run_id and c.kind == kind and c.key == key), None)
    before = earlier.before if earlier else current.get(key)
    kept = [c for c in changes if c is not earlier]
    record = _encode([*kept, NodeChange(run_id, kind, key, before, value)])
    field = "labels" if kind == "label" else "annotations"
    patch: dict[str, Any] = {"metadata": {"resourceVersion": metadata.resource_version, "annotations": {}}}
    patch["metadata"].setdefault(field, {})[key] = value
    patch["metadata"]["annotations"][NODE_CHANGES_ANNOTATION] = record
    return patch


def undo_patch(node: Any, change: NodeChange) -> tuple[dict[str, Any], bool]:
    """The merge patch that undoes ``change`` on ``node`` and drops its record; the flag says whether the value
    was restored. A value that is no longer the one the run set was changed by someone else since: it stays, only
    the record goes."""
    metadata = node.metadata
    current = (metadata.labels if change.kind == "label" else metadata.annotations) or {}
    rest = [c for c in read_node_changes(metadata.annotations) if c != change]
    patch: dict[str, Any] = {
        "metadata": {
            "resourceVersion": metadata.resource_version,
            "annotations": {NODE_CHANGES_ANNOTATION: _encode(rest)},
        }
    }
    restore = current.get(change.key) == change.value
    if restore:
        field = "labels" if change.kind == "label" else "annotations"
        patch["metadata"].setdefault(field, {})[change.key] = change.before
    return patch, restore
