"""Keywords on GPU nodes: HAMi's registration, handshake and lock annotations, annotations a test sets, capacity."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from robot.api import logger
from robot.api.deco import keyword

from ..core.component import LibraryComponent
from ..core.node_changes import change_node, undo_run_change
from ..parsers.annotations import (
    NODE_HANDSHAKE_ANNOTATION,
    NODE_LOCK_ANNOTATION,
    NODE_REGISTER_ANNOTATION,
    RegisteredDevice,
    parse_node_lock,
    parse_node_register,
)

#: Node annotations HAMi leaves behind when nobody removes them: the device plugin's registration, the scheduler's
#: handshakes and the node lock.
LEFTOVER_NODE_ANNOTATIONS = (NODE_REGISTER_ANNOTATION, NODE_HANDSHAKE_ANNOTATION, NODE_LOCK_ANNOTATION)


def read_node_registration(component: LibraryComponent, node: str) -> list[RegisteredDevice]:
    """The GPUs HAMi's device plugin registered on ``node`` (``hami.io/node-nvidia-register``); empty when none."""
    annotations = component.read_node(node).metadata.annotations or {}
    return parse_node_register(annotations.get(component.ctx.vendor.register_annotation))


class NodeKeywords(LibraryComponent):
    """GPU nodes as HAMi sees them, and node annotations a test changes (restored after it)."""

    # ============================================================================================ inventory

    @keyword("GPU Nodes Should Be", tags=("Node", "Assertion"))
    def gpu_nodes_should_be(
        self, expected: list[str], label_selector: str = "gpu=on", ready: bool = True, message: str | None = None
    ) -> None:
        """Fails unless the nodes matching ``label_selector`` are exactly ``expected`` (and, by default, Ready).

        Example:
        | `GPU Nodes Should Be`    ${GPU_NODES}    label_selector=${GPU_NODE_LABEL}
        """
        nodes = self.ctx.core.list_node(label_selector=label_selector).items
        found = sorted(n.metadata.name for n in nodes)
        if found != sorted(expected):
            raise self.fail(
                f"Nodes labelled {label_selector}: {', '.join(found) or 'none'}; expected {', '.join(sorted(expected))}.",
                message,
            )
        if ready:
            not_ready = [
                n.metadata.name
                for n in nodes
                if not any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            ]
            if not_ready:
                raise self.fail(f"GPU node(s) not Ready: {', '.join(sorted(not_ready))}.", message)

    @keyword("Node Should Advertise Split GPU Slots", tags=("Node", "HAMi", "Assertion"))
    def node_should_advertise_split_gpu_slots(
        self, node: str, gpus: int, split_count: int, message: str | None = None
    ) -> None:
        """Fails unless ``node``'s allocatable GPU resource (``nvidia.com/gpu``) is ``gpus`` × ``split_count``:
        HAMi's device plugin advertises every physical GPU as ``deviceSplitCount`` vGPU slots.

        Example:
        | `Node Should Advertise Split GPU Slots`    gpu-node-0    ${GPUS_PER_NODE}    ${DEVICE_SPLIT_COUNT}
        """
        name = self.ctx.vendor.gpu
        actual = (self.read_node(node).status.allocatable or {}).get(name)
        expected = gpus * split_count
        if actual is None or str(actual) != str(expected):
            raise self.fail(
                f"Node {node} allocatable {name} is {actual!r}, expected {expected} ({gpus} GPUs x {split_count}).",
                message,
            )

    @keyword("Get GPU Count Above Node Capacity", tags=("HAMi", "Node"))
    def get_gpu_count_above_node_capacity(self, gpus_per_node: int) -> int:
        """Returns ``gpus_per_node`` + 1: a ``nvidia.com/gpu`` request no node can satisfy (``NodeInsufficientDevice``).

        Example:
        | ${too_many} =    `Get GPU Count Above Node Capacity`    ${GPUS_PER_NODE}
        """
        return gpus_per_node + 1

    @keyword("Get GPU UUIDs Of Node", tags=("HAMi", "Node"))
    def get_gpu_uuids_of_node(self, node: str) -> list[str]:
        """Returns the GPU UUIDs HAMi registered on ``node``, in device index order.

        Example:
        | @{uuids} =    `Get GPU UUIDs Of Node`    gpu-node-0
        """
        return [d.id for d in sorted(read_node_registration(self, node), key=lambda d: d.index)]

    # ============================================================================================ HAMi's annotations

    @keyword(tags=("HAMi", "Node", "Wait"))
    def wait_until_node_registration_matches(
        self,
        node: str,
        gpu_count: int | None = None,
        memory_mib: int | None = None,
        model: str | None = None,
        split_count: int | None = None,
        cores: int | None = None,
        healthy: bool = True,
        timeout: timedelta | None = None,
        message: str | None = None,
    ) -> None:
        """Waits up to ``timeout`` until ``node``'s registration lists ``gpu_count`` GPUs with the given memory,
        model, split count and cores, all healthy.

        | =Argument= | =Description= |
        | ``gpu_count`` | Number of registered GPUs. |
        | ``memory_mib`` | ``devmem`` of every GPU (NVML total × ``deviceMemoryScaling``). |
        | ``model`` | Card model, e.g. ``NVIDIA H100 80GB HBM3``; compared with and without HAMi's ``NVIDIA-`` prefix. |
        | ``split_count`` | ``count`` of every GPU (``deviceSplitCount``, 10 by default). |
        | ``cores`` | ``devcore`` of every GPU (100 × ``deviceCoreScaling``). |
        | ``healthy`` | Every GPU's ``health`` (default True). |

        Arguments not given are not checked. The device plugin refreshes the annotation every 30 s, hence the
        wait; the failure reports every mismatch of the last reading.

        Example:
        | `Wait Until Node Registration Matches`    gpu-node-0    gpu_count=2    memory_mib=81559
        """
        key = self.ctx.vendor.register_annotation
        last: dict[str, list[str]] = {"problems": ["the node was not read yet"]}

        def condition(items: list[Any]) -> list[RegisteredDevice] | None:
            if not items:
                last["problems"] = ["the node does not exist"]
                return None
            devices = parse_node_register((items[0].metadata.annotations or {}).get(key))
            problems = _registration_problems(devices, gpu_count, memory_mib, model, split_count, cores, healthy)
            last["problems"] = problems
            return devices if not problems else None

        devices = self.watch_until(
            self.ctx.core.list_node,
            condition,
            self.ctx.timeout(timeout),
            f"Registration {key} of node {node} matching the expected GPUs",
            lambda _items: "Mismatches: " + "; ".join(last["problems"]) + ".",
            message=message,
            field_selector=f"metadata.name={node}",
        )
        logger.info(f"Node {node} registers: " + ", ".join(f"{d.id} {d.type} {d.devmem} MiB" for d in devices))

    @keyword("Wait Until Nodes Have No HAMi Leftovers", tags=("HAMi", "Node", "Wait"))
    def wait_until_nodes_have_no_hami_leftovers(
        self, nodes: list[str] | None = None, timeout: timedelta | None = None, message: str | None = None
    ) -> None:
        """Waits up to ``timeout`` until no node (or none of ``nodes``) has ``hami.io/node-nvidia-register``,
        ``hami.io/node-handshake*`` or ``hami.io/mutex.lock``.

        The check after an uninstall: HAMi should take back what it wrote on the nodes. The failure lists every
        leftover annotation per node (and who holds a node lock).

        Example:
        | `Wait Until Nodes Have No HAMi Leftovers`    ${GPU_NODES}    timeout=2 min
        """
        wanted = set(nodes or [])

        def leftovers(items: list[Any]) -> dict[str, list[str]]:
            found = {}
            for item in items:
                if wanted and item.metadata.name not in wanted:
                    continue
                annotations = item.metadata.annotations or {}
                keys = sorted(k for k in annotations if k.startswith(LEFTOVER_NODE_ANNOTATIONS))
                lock = parse_node_lock(annotations.get(NODE_LOCK_ANNOTATION))
                if lock and lock.pod:
                    keys = [
                        f"{k} (held by {lock.namespace}/{lock.pod})" if k == NODE_LOCK_ANNOTATION else k for k in keys
                    ]
                if keys:
                    found[item.metadata.name] = keys
            return found

        self.watch_until(
            self.ctx.core.list_node,
            lambda items: True if not leftovers(items) else None,
            self.ctx.timeout(timeout),
            "Removal of HAMi node annotations",
            lambda items: "Left over: " + "; ".join(f"{n}: {', '.join(k)}" for n, k in leftovers(items).items()) + ".",
            message=message,
        )

    @keyword(tags=("Node", "HAMi"))
    def wait_until_node_handshake_is_requesting(
        self, node: str, timeout: timedelta | None = None, message: str | None = None
    ) -> str:
        """Waits up to ``timeout`` until ``hami.io/node-handshake`` on ``node`` starts with ``Requesting_`` (HAMi's
        scheduler writes it on its register loop, every 15 s); returns the value.

        Example:
        | `Wait Until Node Handshake Is Requesting`    gpu-node-0    timeout=1 min
        """

        def requesting(items: list[Any]) -> str | None:
            value = ((items[0].metadata.annotations or {}) if items else {}).get(NODE_HANDSHAKE_ANNOTATION)
            return value if value and value.startswith("Requesting_") else None

        def describe(items: list[Any]) -> str:
            value = ((items[0].metadata.annotations or {}) if items else {}).get(NODE_HANDSHAKE_ANNOTATION)
            return f"Node {node} has {NODE_HANDSHAKE_ANNOTATION}={value!r}, expected 'Requesting_<time>'."

        return self.watch_until(
            self.ctx.core.list_node,
            requesting,
            self.ctx.timeout(timeout),
            f"HAMi's handshake on node {node}",
            describe,
            message,
            field_selector=f"metadata.name={node}",
        )

    # ============================================================================================ changes

    def _patch_annotations(self, node: str, changes: dict[str, str | None]) -> None:
        self.ctx.core.patch_node(node, {"metadata": {"annotations": changes}})

    @keyword(tags=("Node", "HAMi"))
    def set_node_annotation(self, node: str, key: str, value: str) -> None:
        """Sets an annotation on ``node`` (e.g. ``hami.io/device-cordon``); the previous value (or its absence) is
        restored when the test ends.

        The change is also recorded on the node (``hami-e2e/changes``, with the run's id), so a later run's
        preflight restores it if this run is killed first.

        Example:
        | `Set Node Annotation`    gpu-node-0    hami.io/device-cordon    ${uuid}
        """
        self.read_node(node)  # fails naming the node when it does not exist
        change_node(self.ctx.core, self.ctx.run_id, node, "annotation", key, value)
        description = f"annotation {key} on node {node}"
        if not any(c.description == description for c in self.ctx.pending_cleanups("test")):
            self.ctx.track(
                description, lambda: undo_run_change(self.ctx.core, self.ctx.run_id, node, "annotation", key)
            )

    @keyword("Remove HAMi Node Annotations", tags=("Node", "HAMi"))
    def remove_hami_node_annotations(self, node: str) -> list[str]:
        """Removes ``hami.io/node-nvidia-register``, ``hami.io/node-handshake*`` and ``hami.io/mutex.lock`` from
        ``node`` (what HAMi's own CI strips by hand after uninstall); returns the removed keys.

        Example:
        | `Remove HAMi Node Annotations`    gpu-node-0
        """
        annotations = self.read_node(node).metadata.annotations or {}
        keys = sorted(k for k in annotations if k.startswith(LEFTOVER_NODE_ANNOTATIONS))
        if keys:
            self._patch_annotations(node, dict.fromkeys(keys))
        return keys


def _registration_problems(
    devices: list[RegisteredDevice],
    gpu_count: int | None,
    memory_mib: int | None,
    model: str | None,
    split_count: int | None,
    cores: int | None,
    healthy: bool,
) -> list[str]:
    if not devices:
        return ["no GPU is registered"]
    problems = []
    if gpu_count is not None and len(devices) != gpu_count:
        problems.append(f"{len(devices)} GPU(s) registered, expected {gpu_count}")
    for d in devices:
        if memory_mib is not None and d.devmem != memory_mib:
            problems.append(f"{d.id} devmem {d.devmem} MiB, expected {memory_mib}")
        if model is not None and model not in (d.type, d.model, f"NVIDIA-{model}"):
            problems.append(f"{d.id} type {d.type!r}, expected {model!r}")
        if split_count is not None and d.count != split_count:
            problems.append(f"{d.id} count {d.count}, expected {split_count}")
        if cores is not None and d.devcore != cores:
            problems.append(f"{d.id} devcore {d.devcore}, expected {cores}")
        if d.health != healthy:
            problems.append(f"{d.id} health {d.health}, expected {healthy}")
    return problems
