"""Leftovers of earlier runs: what a hami-e2e run created and did not remove because it was killed first.

Found by the labels every run puts on what it creates (`hami_e2e.core.ownership`): namespaces, the Helm releases
the suite installed (their storage Secrets carry the release's labels) and node labels and annotations recorded in a
node's ``hami-e2e/changes``. Objects of a run that still goes on (its lock is held) are not leftovers, and nothing
without the suite's label is ever touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..core.component import LibraryComponent
from ..core.node_changes import undo_node_change
from ..core.ownership import (
    MANAGED_SELECTOR,
    RUN_LABEL,
    NodeChange,
    forget_ended_runs,
    read_node_changes,
    run_is_alive,
)
from .namespaces import delete_namespace

#: Helm's storage Secrets of releases the suite installed (helm copies a release's labels onto them).
RELEASE_SELECTOR = f"owner=helm,{MANAGED_SELECTOR}"


@dataclass
class Leftover:
    """One thing an ended run left; ``remove`` takes it away and says what it did."""

    what: str
    run: str
    remove: Callable[[], str]

    def __str__(self) -> str:
        return f"{self.what} (run {self.run or 'unknown'})"


def find_leftovers(component: LibraryComponent, current_run: str | None = None) -> list[Leftover]:
    """Everything runs other than ``current_run`` left and no longer own: Helm releases first (their namespace
    goes after them), then namespaces, then node changes."""
    ctx = component.ctx
    ended = _ended(current_run)
    found: list[Leftover] = []
    releases: dict[tuple[str, str], tuple[int, str]] = {}
    for secret in ctx.core.list_secret_for_all_namespaces(label_selector=RELEASE_SELECTOR).items:
        labels = secret.metadata.labels or {}
        key = (secret.metadata.namespace, labels.get("name", ""))
        version = int(labels.get("version", "0") or 0)
        if key not in releases or version > releases[key][0]:
            releases[key] = (version, labels.get(RUN_LABEL, ""))
    for (namespace, release), (_, run) in sorted(releases.items()):
        if ended(run):
            found.append(Leftover(f"helm release {release} in {namespace}", run, _uninstaller(ctx, release, namespace)))
    for namespace in ctx.core.list_namespace(label_selector=MANAGED_SELECTOR).items:
        run = (namespace.metadata.labels or {}).get(RUN_LABEL, "")
        if ended(run):
            name = namespace.metadata.name
            found.append(Leftover(f"namespace {name}", run, partial(_delete, component, name)))
    for node in ctx.core.list_node().items:
        for change in read_node_changes(node.metadata.annotations):
            if ended(change.run):
                name = node.metadata.name
                found.append(Leftover(change.describe(name), change.run, partial(_undo, ctx.core, name, change)))
    return found


def remove_leftovers(component: LibraryComponent, current_run: str | None = None) -> list[str]:
    """Removes what `find_leftovers` finds; returns one sentence per thing (what was done, or why not)."""
    done = []
    for leftover in find_leftovers(component, current_run):
        try:
            done.append(f"{leftover.remove()} (left by run {leftover.run or 'of an older suite version'})")
        except Exception as error:  # noqa: BLE001 - report it and go on with the rest
            done.append(f"could not remove {leftover}: {error}")
    forget_ended_runs()
    return done


def _ended(current_run: str | None) -> Callable[[str], bool]:
    alive: dict[str, bool] = {}

    def ended(run: str) -> bool:
        if run == current_run:
            return False
        if run not in alive:
            alive[run] = run_is_alive(run)
        return not alive[run]

    return ended


def _uninstaller(ctx: Any, release: str, namespace: str) -> Callable[[], str]:
    def uninstall() -> str:
        command = [ctx.helm_binary, "uninstall", release, "-n", namespace, "--wait", "--timeout", "300s"]
        result = ctx.runner([*command, *ctx.kube_args()], 330)
        if result.rc != 0 and "not found" not in result.stderr:
            raise RuntimeError(f"helm uninstall failed (rc={result.rc}): {result.stderr.strip()[-300:]}")
        return f"uninstalled helm release {release} in {namespace}"

    return uninstall


def _delete(component: LibraryComponent, name: str) -> str:
    delete_namespace(component, name, until_gone=True)
    return f"deleted namespace {name}"


def _undo(core: Any, node: str, change: NodeChange) -> str:
    if undo_node_change(core, node, change):
        before = "removed it" if change.before is None else f"put back {change.before!r}"
        return f"restored {change.describe(node)} ({before})"
    return f"left {change.describe(node)} as it is (changed by someone else since) and dropped its record"
