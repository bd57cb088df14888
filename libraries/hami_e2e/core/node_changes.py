"""Changing a node's label or annotation so that it can be undone: now by the test's cleanup, or by a later run
when this one is killed first (the change is recorded on the node itself, see `ownership`)."""

from __future__ import annotations

from typing import Any

from .ownership import NodeChange, change_patch, read_node_changes, undo_patch

#: Tries of a read-modify-patch when the node changed in between (HAMi rewrites its annotations every 15-30 s).
_TRIES = 8


def _patch_fresh(core: Any, node: str, make_patch: Any) -> Any:
    """Reads ``node``, patches it with ``make_patch(node_object)`` (a patch carrying the resourceVersion read) and
    retries on a conflict; returns what ``make_patch`` returned besides the patch, if anything."""
    from kubernetes.client.exceptions import ApiException

    for attempt in range(_TRIES):
        made = make_patch(core.read_node(node))
        patch, extra = made if isinstance(made, tuple) else (made, None)
        try:
            core.patch_node(node, patch)
            return extra
        except ApiException as error:
            if error.status != 409 or attempt == _TRIES - 1:
                raise
    return None


def change_node(core: Any, run_id: str, node: str, kind: str, key: str, value: str | None) -> None:
    """Sets (``value`` None: removes) label or annotation ``key`` on ``node`` and records it for ``run_id``."""
    if kind not in ("label", "annotation"):
        raise ValueError(f"kind is 'label' or 'annotation', not {kind!r}")
    _patch_fresh(core, node, lambda obj: change_patch(obj, run_id, kind, key, value))


def undo_node_change(core: Any, node: str, change: NodeChange) -> bool:
    """Puts back the value ``change`` replaced, unless someone changed it since; drops the record. Returns
    whether the value was restored."""
    restored = _patch_fresh(core, node, lambda obj: undo_patch(obj, _current(obj, change)))
    return bool(restored)


def undo_run_change(core: Any, run_id: str, node: str, kind: str, key: str) -> bool:
    """Undoes what ``run_id`` changed of ``kind`` ``key`` on ``node`` (nothing when no such change is recorded)."""
    recorded = [
        c
        for c in read_node_changes(core.read_node(node).metadata.annotations)
        if (c.run, c.kind, c.key) == (run_id, kind, key)
    ]
    return any(undo_node_change(core, node, change) for change in recorded)


def _current(node: Any, change: NodeChange) -> NodeChange:
    """The record of ``change`` as it is on the node now (the same run and key), so the undo matches it."""
    for recorded in read_node_changes(node.metadata.annotations):
        if (recorded.run, recorded.kind, recorded.key) == (change.run, change.kind, change.key):
            return recorded
    return change
