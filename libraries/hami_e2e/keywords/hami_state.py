"""Keywords that read and assert what HAMi wrote: pod allocations, webhook mutation, events, node registration,
node labels and annotations, the webhook configuration, and Prometheus metrics."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..parsers.annotations import (
    BIND_PHASE_ANNOTATION,
    NODE_HANDSHAKE_ANNOTATION,
    NODE_LOCK_ANNOTATION,
    NODE_REGISTER_ANNOTATION,
    VGPU_NODE_ANNOTATION,
    AllocatedDevice,
    RegisteredDevice,
    Sample,
    find_samples,
    format_event,
    hami_annotations,
    parse_allocated_devices,
    parse_node_lock,
    parse_node_register,
    parse_prometheus_text,
)
from robot.api import logger
from robot.api.deco import keyword

from ..core.component import LibraryComponent, text_matches
from ..core.errors import HamiE2EFailure
from .workloads import describe_pod

#: Node annotations HAMi leaves behind if nobody cleans up (hami-behaviour.md §2.3, §6.3).
LEFTOVER_NODE_ANNOTATIONS = (NODE_REGISTER_ANNOTATION, NODE_HANDSHAKE_ANNOTATION, NODE_LOCK_ANNOTATION)


class HamiStateKeywords(LibraryComponent):
    """Assertions on HAMi's annotations, events, node registration, webhook and metrics."""

    # ============================================================================================ pod allocation

    def _containers_in_allocation_order(self, pod: Any) -> list[str]:
        """Container names in the order of the allocation annotation: init containers first."""
        return [c.name for c in (pod.spec.init_containers or [])] + [c.name for c in pod.spec.containers]

    def _allocation(self, pod_name: str, ns: str, timeout: timedelta | None) -> tuple[Any, list[list[AllocatedDevice]]]:
        key = self.ctx.vendor.allocated_annotation

        def condition(items: list[Any]):
            if not items:
                raise HamiE2EFailure(f"Pod {ns}/{pod_name} does not exist.")
            value = (items[0].metadata.annotations or {}).get(key)
            return (items[0], parse_allocated_devices(value)) if value else None

        return self.watch_until(
            self.ctx.core.list_namespaced_pod,
            condition,
            self.ctx.timeout(timeout),
            f"Annotation {key} on pod {ns}/{pod_name}",
            lambda items: describe_pod(items[0]) if items else "",
            namespace=ns,
            field_selector=f"metadata.name={pod_name}",
        )

    @keyword(tags=("HAMi", "Pod"))
    def get_allocated_devices(
        self,
        pod: str | None = None,
        container: str | None = None,
        namespace: str | None = None,
        timeout: timedelta | None = None,
    ) -> list[AllocatedDevice]:
        """Returns the devices HAMi allocated to one container (default: the first container that got any).

        Reads ``hami.io/vgpu-devices-allocated`` (waiting up to ``timeout`` for it to appear). Each item has
        ``uuid``, ``type``, ``memory_mib`` and ``cores``.

        Example:
        | @{devices} =    `Get Allocated Devices`    small    container=cuda
        | Should Be Equal As Integers    ${devices}[0].memory_mib    3000
        """
        pod_name, ns = self.pod_name(pod), self.namespace(namespace)
        obj, containers = self._allocation(pod_name, ns, timeout)
        names = self._containers_in_allocation_order(obj)
        if container is None:
            return next((devices for devices in containers if devices), [])
        if container not in names:
            raise HamiE2EFailure(f"Pod {pod_name} has no container {container!r}; it has {', '.join(names)}.")
        index = names.index(container)
        return containers[index] if index < len(containers) else []

    @keyword("Get Allocated GPU UUIDs", tags=("HAMi", "Pod"))
    def get_allocated_gpu_uuids(self, pod: str | None = None, namespace: str | None = None) -> list[str]:
        """Returns the UUIDs of every GPU allocated to any container of the pod, in annotation order, no repeats.

        Example:
        | @{uuids} =    `Get Allocated GPU UUIDs`    small
        """
        pod_name, ns = self.pod_name(pod), self.namespace(namespace)
        _obj, containers = self._allocation(pod_name, ns, None)
        uuids: list[str] = []
        for devices in containers:
            uuids += [d.uuid for d in devices if d.uuid not in uuids]
        return uuids

    @keyword(tags=("HAMi", "Pod", "Assertion"))
    def pod_allocation_should_be(
        self,
        pod: str | None = None,
        gpumem: int | None = None,
        gpucores: int | None = None,
        gpus: int | None = None,
        container: str | None = None,
        namespace: str | None = None,
        message: str | None = None,
    ) -> None:
        """Fails unless HAMi allocated ``gpus`` devices of ``gpumem`` MiB and ``gpucores`` % to the container(s).

        | =Argument= | =Description= |
        | ``container`` | Check only this container; default: every container that asks for a GPU resource. |
        | ``gpumem`` | Expected MiB per device (for ``gpumem-percentage`` pass the resolved MiB). |
        | ``gpucores`` | Expected cores per device. |
        | ``gpus`` | Expected number of devices per container. |
        | ``message`` | Replaces the generated failure text. |

        Arguments left as ``None`` are not checked. The failure names the pod, container, expected and actual
        values and the raw annotation.

        Example:
        | `Pod Allocation Should Be`    small    gpumem=3000    gpucores=30    gpus=1
        """
        pod_name, ns = self.pod_name(pod), self.namespace(namespace)
        obj, containers = self._allocation(pod_name, ns, None)
        names = self._containers_in_allocation_order(obj)
        raw = (obj.metadata.annotations or {}).get(self.ctx.vendor.allocated_annotation)
        if container is not None:
            if container not in names:
                raise HamiE2EFailure(f"Pod {pod_name} has no container {container!r}; it has {', '.join(names)}.")
            targets = [container]
        else:
            targets = [c.name for c in (obj.spec.init_containers or []) + obj.spec.containers if self._asks_gpu(c)]
        problems = []
        for name in targets:
            index = names.index(name)
            devices = containers[index] if index < len(containers) else []
            if gpus is not None and len(devices) != gpus:
                problems.append(f"container {name} got {len(devices)} device(s), expected {gpus}")
            for device in devices:
                if gpumem is not None and device.memory_mib != gpumem:
                    problems.append(f"container {name} {device.uuid} has {device.memory_mib} MiB, expected {gpumem}")
                if gpucores is not None and device.cores != gpucores:
                    problems.append(f"container {name} {device.uuid} has {device.cores} cores, expected {gpucores}")
            if not devices and gpus is None:
                problems.append(f"container {name} got no device")
        if problems:
            raise self.fail(f"Allocation of pod {ns}/{pod_name}: {'; '.join(problems)}. Annotation: {raw!r}", message)
        logger.info(f"Allocation of pod {ns}/{pod_name}: {raw}")

    def _asks_gpu(self, container: Any) -> bool:
        names = self.ctx.vendor
        limits = (container.resources.limits if container.resources else None) or {}
        return any(r in limits for r in (names.gpu, names.memory, names.memory_percentage, names.cores))

    @keyword(tags=("HAMi", "Pod", "Assertion"))
    def pod_should_be_allocated_on_its_node(self, pod: str | None = None, namespace: str | None = None) -> None:
        """Fails unless ``hami.io/vgpu-node`` (annotation and label) equals ``spec.nodeName`` and every allocated
        UUID is registered on that node.

        Catches mis-allocations where the annotation and the real placement disagree (HAMi#958, #968).

        Example:
        | `Pod Should Be Allocated On Its Node`    small
        """
        pod_name, ns = self.pod_name(pod), self.namespace(namespace)
        obj, containers = self._allocation(pod_name, ns, None)
        node = obj.spec.node_name
        annotated = (obj.metadata.annotations or {}).get(VGPU_NODE_ANNOTATION)
        labelled = (obj.metadata.labels or {}).get(VGPU_NODE_ANNOTATION)
        if not node or annotated != node or labelled != node:
            raise HamiE2EFailure(
                f"Pod {ns}/{pod_name}: spec.nodeName={node!r}, annotation {VGPU_NODE_ANNOTATION}={annotated!r}, "
                f"label {VGPU_NODE_ANNOTATION}={labelled!r}; expected all three equal."
            )
        registered = {d.id for d in self.get_node_registration(node)}
        stray = sorted({d.uuid for devices in containers for d in devices} - registered)
        if stray:
            raise HamiE2EFailure(
                f"Pod {ns}/{pod_name} was allocated {', '.join(stray)}, which node {node} does not register "
                f"(registered: {', '.join(sorted(registered))})."
            )

    @keyword(tags=("HAMi", "Pod", "Assertion", "Wait"))
    def pod_bind_phase_should_be(
        self,
        pod: str | None = None,
        phase: str = "success",
        namespace: str | None = None,
        timeout: timedelta | None = None,
    ) -> None:
        """Waits until ``hami.io/bind-phase`` is ``phase`` (``allocating``, ``success`` or ``failed``).

        Fails at once if the phase reaches ``failed`` while another phase is expected.

        Example:
        | `Pod Bind Phase Should Be`    small    success
        """
        pod_name, ns = self.pod_name(pod), self.namespace(namespace)

        def condition(items: list[Any]):
            value = (items[0].metadata.annotations or {}).get(BIND_PHASE_ANNOTATION) if items else None
            if value == phase:
                return True
            if value == "failed":
                raise HamiE2EFailure(f"Pod {ns}/{pod_name} bind-phase is failed, expected {phase}.")
            return None

        def describe(items: list[Any]) -> str:
            value = (items[0].metadata.annotations or {}).get(BIND_PHASE_ANNOTATION) if items else None
            return f"{BIND_PHASE_ANNOTATION} is {value!r}. " + (describe_pod(items[0]) if items else "")

        self.watch_until(
            self.ctx.core.list_namespaced_pod,
            condition,
            self.ctx.timeout(timeout),
            f"{BIND_PHASE_ANNOTATION}={phase} on pod {ns}/{pod_name}",
            describe,
            namespace=ns,
            field_selector=f"metadata.name={pod_name}",
        )

    @keyword("Pod Should Be Mutated By HAMi Webhook", tags=("HAMi", "Pod", "Assertion"))
    def pod_should_be_mutated_by_hami_webhook(self, pod: str | None = None, namespace: str | None = None) -> None:
        """Fails unless the pod's ``spec.schedulerName`` is HAMi's (``hami-scheduler``).

        A GPU pod with any other scheduler bypassed the webhook (TLS errors, no endpoints; ``failurePolicy:
        Ignore`` hides that), the most reported HAMi problem.

        Example:
        | `Pod Should Be Mutated By HAMi Webhook`    small
        """
        obj = self.read_pod(self.pod_name(pod), self.namespace(namespace))
        expected = self.ctx.hami.scheduler_name
        if obj.spec.scheduler_name != expected:
            raise HamiE2EFailure(
                f"Pod {obj.metadata.name} has schedulerName {obj.spec.scheduler_name!r}, expected {expected!r}: "
                f"the HAMi webhook {self.ctx.hami.webhook_name} did not mutate it."
            )

    @keyword("Pod Should Not Be Mutated By HAMi Webhook", tags=("HAMi", "Pod", "Assertion"))
    def pod_should_not_be_mutated_by_hami_webhook(
        self, pod: str | None = None, namespace: str | None = None
    ) -> None:
        """Fails if the pod's ``spec.schedulerName`` is HAMi's (for pods the webhook must leave alone).

        Example:
        | `Pod Should Not Be Mutated By HAMi Webhook`    plain
        """
        obj = self.read_pod(self.pod_name(pod), self.namespace(namespace))
        if obj.spec.scheduler_name == self.ctx.hami.scheduler_name:
            raise HamiE2EFailure(
                f"Pod {obj.metadata.name} has schedulerName {obj.spec.scheduler_name!r}; expected the webhook to "
                "leave it unchanged."
            )

    @keyword(tags=("HAMi", "Pod", "Assertion"))
    def pod_resource_limit_should_be(
        self,
        pod: str | None,
        resource: str,
        expected: str | None,
        container: str = "cuda",
        namespace: str | None = None,
    ) -> None:
        """Fails unless the container's limit for ``resource`` is ``expected`` (``None``: the limit is absent).

        ``resource`` is a full name (``nvidia.com/gpucores``) or a vendor key from `Configure Vendor Names`
        (``gpu``, ``memory``, ``memory_percentage``, ``cores``). Use it to see what the webhook added.

        Example:
        | `Pod Resource Limit Should Be`    whole    cores    100
        """
        name = resource if "/" in resource else getattr(self.ctx.vendor, resource, resource)
        obj = self.read_pod(self.pod_name(pod), self.namespace(namespace))
        spec = next((c for c in obj.spec.containers + (obj.spec.init_containers or []) if c.name == container), None)
        if spec is None:
            raise HamiE2EFailure(f"Pod {obj.metadata.name} has no container {container!r}.")
        actual = ((spec.resources.limits if spec.resources else None) or {}).get(name)
        if (None if actual is None else str(actual)) != (None if expected is None else str(expected)):
            raise HamiE2EFailure(
                f"Pod {obj.metadata.name} container {container}: limit {name} is {actual!r}, expected {expected!r}."
            )

    # ============================================================================================ events

    @keyword(tags=("HAMi", "Pod"))
    def get_pod_events(self, pod: str | None = None, namespace: str | None = None) -> list[str]:
        """Returns the pod's events, oldest first, as ``<time> <type> <reason> Pod/<name>: <message>`` lines.

        Example:
        | @{events} =    `Get Pod Events`    small
        """
        return [format_event(e) for e in self.list_pod_events(self.pod_name(pod), self.namespace(namespace))]

    @keyword(tags=("HAMi", "Pod", "Assertion", "Wait"))
    def pod_should_have_event(
        self,
        pod: str | None = None,
        reason: str = "",
        message: str | None = None,
        namespace: str | None = None,
        timeout: timedelta | None = None,
    ) -> str:
        """Waits until the pod has an event with ``reason`` whose message contains ``message``; returns the message.

        ``message`` accepts ``GLOB:`` and ``REGEXP:`` prefixes. HAMi's events: ``FilteringSucceed``
        (``find fit node(<node>), …``), ``FilteringFailed``, ``BindingSucceed``
        (``Successfully binding node [<node>] to <ns>/<pod>``), ``BindingFailed``.

        Example:
        | `Pod Should Have Event`    small    BindingSucceed    Successfully binding node [${node}]
        """
        return self.wait_for_pod_event(self.pod_name(pod), self.namespace(namespace), reason, message, timeout)

    @keyword(tags=("HAMi", "Pod", "Assertion"))
    def pod_should_not_have_event(
        self, pod: str | None = None, reason: str = "", message: str | None = None, namespace: str | None = None
    ) -> None:
        """Fails if the pod has (now) an event with ``reason`` whose message matches ``message``.

        Example:
        | `Pod Should Not Have Event`    small    FilteringFailed
        """
        pod_name, ns = self.pod_name(pod), self.namespace(namespace)
        for event in self.list_pod_events(pod_name, ns):
            if event.reason == reason and (message is None or text_matches(message, event.message or "")):
                raise HamiE2EFailure(f"Pod {ns}/{pod_name} has an unexpected event: {format_event(event)}")

    # ============================================================================================ nodes

    def _read_node(self, node: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.ctx.core.read_node(node)
        except ApiException as error:
            if error.status == 404:
                raise HamiE2EFailure(f"Node {node} does not exist.") from None
            raise

    @keyword("Get GPU Nodes", tags=("HAMi", "Node"))
    def get_gpu_nodes(self, label_selector: str = "gpu=on") -> list[str]:
        """Returns the names of the nodes matching ``label_selector`` (HAMi's device plugin needs ``gpu=on``), sorted.

        Example:
        | @{nodes} =    `Get GPU Nodes`    gpu=on
        """
        return sorted(n.metadata.name for n in self.ctx.core.list_node(label_selector=label_selector).items)

    @keyword(tags=("HAMi", "Node"))
    def get_node_registration(self, node: str) -> list[RegisteredDevice]:
        """Returns the GPUs HAMi's device plugin registered on ``node`` (``hami.io/node-nvidia-register``).

        Each item has ``id`` (UUID), ``index``, ``count`` (split count), ``devmem`` (MiB), ``devcore``, ``type``,
        ``numa``, ``mode`` and ``health``. An empty list means the node is not registered.

        Example:
        | @{gpus} =    `Get Node Registration`    gpu-node-0
        """
        annotations = self._read_node(node).metadata.annotations or {}
        return parse_node_register(annotations.get(self.ctx.vendor.register_annotation))

    @keyword("GPU Nodes Should Be", tags=("Node", "Assertion"))
    def gpu_nodes_should_be(self, expected: list[str], label_selector: str = "gpu=on", ready: bool = True) -> None:
        """Fails unless the nodes matching ``label_selector`` are exactly ``expected`` (and, by default, Ready).

        Example:
        | `GPU Nodes Should Be`    ${GPU_NODES}    label_selector=${GPU_NODE_LABEL}
        """
        nodes = self.ctx.core.list_node(label_selector=label_selector).items
        found = sorted(n.metadata.name for n in nodes)
        if found != sorted(expected):
            raise HamiE2EFailure(
                f"Nodes labelled {label_selector}: {', '.join(found) or 'none'}; expected {', '.join(sorted(expected))}."
            )
        if ready:
            not_ready = [
                n.metadata.name
                for n in nodes
                if not any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            ]
            if not_ready:
                raise HamiE2EFailure(f"GPU node(s) not Ready: {', '.join(sorted(not_ready))}.")

    @keyword("Node Allocatable Should Be", tags=("Node", "Assertion"))
    def node_allocatable_should_be(self, node: str, resource: str, expected: int) -> None:
        """Fails unless ``status.allocatable[resource]`` of ``node`` is ``expected``.

        ``resource`` is a full name or a vendor key (``gpu`` …). With HAMi's device plugin the node shows
        ``nvidia.com/gpu`` = physical GPUs × ``deviceSplitCount``.

        Example:
        | `Node Allocatable Should Be`    gpu-node-0    gpu    20
        """
        name = resource if "/" in resource else getattr(self.ctx.vendor, resource, resource)
        allocatable = self._read_node(node).status.allocatable or {}
        actual = allocatable.get(name)
        if actual is None or str(actual) != str(expected):
            raise HamiE2EFailure(f"Node {node} allocatable {name} is {actual!r}, expected {expected}.")

    @keyword("Node Should Advertise Split GPU Slots", tags=("Node", "HAMi", "Assertion"))
    def node_should_advertise_split_gpu_slots(self, node: str, gpus: int, split_count: int) -> None:
        """Fails unless ``node``'s allocatable GPU resource is ``gpus`` × ``split_count`` (HAMi's vGPU slots).

        Example:
        | `Node Should Advertise Split GPU Slots`    gpu-node-0    ${GPUS_PER_NODE}    ${DEVICE_SPLIT_COUNT}
        """
        self.node_allocatable_should_be(node, "gpu", gpus * split_count)

    @keyword("Get GPU Memory For Percentage", tags=("HAMi",))
    def get_gpu_memory_for_percentage(self, percentage: int, card_mib: int) -> int:
        """Returns the MiB HAMi grants for ``nvidia.com/gpumem-percentage`` ``percentage`` on a ``card_mib`` card.

        HAMi computes ``card_mib * percentage / 100`` in integers (rounded down).

        Example:
        | ${mib} =    `Get GPU Memory For Percentage`    25    ${GPU_MEMORY_MIB}
        """
        return card_mib * percentage // 100

    @keyword("Get GPU Count Above Node Capacity", tags=("HAMi", "Node"))
    def get_gpu_count_above_node_capacity(self, gpus_per_node: int) -> int:
        """Returns ``gpus_per_node`` + 1: a ``nvidia.com/gpu`` request no node can satisfy (``NodeInsufficientDevice``).

        Example:
        | ${too_many} =    `Get GPU Count Above Node Capacity`    ${GPUS_PER_NODE}
        """
        return gpus_per_node + 1

    @keyword("Get GPU UUIDs Of Node", tags=("HAMi", "Node"))
    def get_gpu_uuids_of_node(self, node: str) -> list[str]:
        """Returns the registered GPU UUIDs of ``node`` in device index order.

        Example:
        | @{uuids} =    `Get GPU UUIDs Of Node`    gpu-node-0
        """
        return [d.id for d in sorted(self.get_node_registration(node), key=lambda d: d.index)]

    @keyword(tags=("HAMi", "Node", "Assertion", "Wait"))
    def node_registration_should_match(
        self,
        node: str,
        gpu_count: int | None = None,
        memory_mib: int | None = None,
        model: str | None = None,
        split_count: int | None = None,
        cores: int | None = None,
        healthy: bool | None = True,
        timeout: timedelta | None = None,
    ) -> None:
        """Waits until ``node``'s registration lists ``gpu_count`` GPUs with the given memory, model and split count.

        | =Argument= | =Description= |
        | ``gpu_count`` | Number of registered GPUs. |
        | ``memory_mib`` | ``devmem`` of every GPU (NVML total × ``deviceMemoryScaling``). |
        | ``model`` | Card model, e.g. ``NVIDIA H100 80GB HBM3``; compared with and without HAMi's ``NVIDIA-`` prefix. |
        | ``split_count`` | ``count`` of every GPU (``deviceSplitCount``, 10 by default). |
        | ``cores`` | ``devcore`` of every GPU (100 × ``deviceCoreScaling``). |
        | ``healthy`` | Every GPU's ``health`` (default True); ``None`` skips the check. |

        The device plugin refreshes the annotation every 30 s, so this waits (``timeout``) and reports every
        mismatch of the last reading.

        Example:
        | `Node Registration Should Match`    gpu-node-0    gpu_count=2    memory_mib=81559    model=NVIDIA H100 80GB HBM3
        """
        key = self.ctx.vendor.register_annotation
        last: dict[str, list[str]] = {"problems": ["the node was not read yet"]}

        def condition(items: list[Any]):
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
            field_selector=f"metadata.name={node}",
        )
        logger.info(f"Node {node} registers: " + ", ".join(f"{d.id} {d.type} {d.devmem} MiB" for d in devices))

    @keyword(tags=("HAMi", "Node", "Assertion", "Wait"))
    def node_should_not_be_locked(self, node: str, timeout: timedelta | None = None) -> None:
        """Waits until ``node`` has no ``hami.io/mutex.lock`` (the device plugin removes it after Allocate).

        Example:
        | `Node Should Not Be Locked`    gpu-node-0    timeout=1 min
        """

        def condition(items: list[Any]):
            return True if items and NODE_LOCK_ANNOTATION not in (items[0].metadata.annotations or {}) else None

        def describe(items: list[Any]) -> str:
            value = (items[0].metadata.annotations or {}).get(NODE_LOCK_ANNOTATION) if items else None
            lock = parse_node_lock(value)
            return f"Lock held by {lock.namespace}/{lock.pod} since {lock.time}." if lock else ""

        self.watch_until(
            self.ctx.core.list_node,
            condition,
            self.ctx.timeout(timeout),
            f"Release of {NODE_LOCK_ANNOTATION} on node {node}",
            describe,
            field_selector=f"metadata.name={node}",
        )

    @keyword("Nodes Should Have No HAMi Leftovers", tags=("HAMi", "Node", "Assertion", "Wait"))
    def nodes_should_have_no_hami_leftovers(
        self, nodes: list[str] | None = None, timeout: timedelta | None = None
    ) -> None:
        """Waits until no node (or none of ``nodes``) has ``hami.io/node-nvidia-register``,
        ``hami.io/node-handshake*`` or ``hami.io/mutex.lock``.

        The check after an uninstall (peer row A3); the failure lists every leftover annotation per node.

        Example:
        | `Nodes Should Have No HAMi Leftovers`    timeout=2 min
        """
        wanted = set(nodes or [])

        def leftovers(items: list[Any]) -> dict[str, list[str]]:
            found = {}
            for node in items:
                if wanted and node.metadata.name not in wanted:
                    continue
                keys = [k for k in (node.metadata.annotations or {}) if k.startswith(LEFTOVER_NODE_ANNOTATIONS)]
                if keys:
                    found[node.metadata.name] = sorted(keys)
            return found

        self.watch_until(
            self.ctx.core.list_node,
            lambda items: True if not leftovers(items) else None,
            self.ctx.timeout(timeout),
            "Removal of HAMi node annotations",
            lambda items: "Left over: "
            + "; ".join(f"{n}: {', '.join(k)}" for n, k in leftovers(items).items())
            + ".",
        )

    def _patch_node_metadata(self, node: str, field: str, changes: dict[str, str | None]) -> None:
        self.ctx.core.patch_node(node, {"metadata": {field: changes}})

    def _set_tracked(self, node: str, field: str, key: str, value: str | None) -> None:
        current = getattr(self._read_node(node).metadata, field) or {}
        before = current.get(key)
        self._patch_node_metadata(node, field, {key: value})
        kind = field[:-1]
        description = f"{kind} {key} on node {node}"
        if not any(c.description == description for c in self.ctx.pending_cleanups("test")):
            self.ctx.track(description, lambda: self._patch_node_metadata(node, field, {key: before}))

    @keyword(tags=("Node",))
    def set_node_label(self, node: str, key: str, value: str) -> None:
        """Sets a label on ``node``; the previous value (or absence) is restored when the test ends.

        Example:
        | `Set Node Label`    gpu-node-1    gpu    off
        """
        self._set_tracked(node, "labels", key, value)

    @keyword(tags=("Node",))
    def remove_node_label(self, node: str, key: str) -> None:
        """Removes a label from ``node``; it is put back when the test ends.

        Example:
        | `Remove Node Label`    gpu-node-1    gpu
        """
        self._set_tracked(node, "labels", key, None)

    @keyword(tags=("Node", "HAMi"))
    def set_node_annotation(self, node: str, key: str, value: str) -> None:
        """Sets an annotation on ``node`` (e.g. ``hami.io/device-cordon``); restored when the test ends.

        Example:
        | `Set Node Annotation`    gpu-node-0    hami.io/device-cordon    ${uuid}
        """
        self._set_tracked(node, "annotations", key, value)

    @keyword(tags=("Node", "HAMi"))
    def snapshot_node_annotations(self, node: str, prefix: str = "hami.io/", scope: str = "test") -> dict[str, str]:
        """Records ``node``'s annotations starting with ``prefix`` and restores them when ``scope`` ends.

        The restore puts back changed or removed keys and deletes keys that appeared. `Restore Node Annotations`
        does the same at once. Returns the recorded annotations.

        Example:
        | `Snapshot Node Annotations`    gpu-node-0    scope=suite
        """
        snapshot = {k: v for k, v in (self._read_node(node).metadata.annotations or {}).items() if k.startswith(prefix)}
        self.ctx.untrack(f"annotations {prefix}* on node {node}")
        self.ctx.track(
            f"annotations {prefix}* on node {node}", lambda: self._restore(node, prefix, snapshot), scope=scope
        )
        logger.info(f"Snapshot of {prefix}* on node {node}: {snapshot}")
        return snapshot

    def _restore(self, node: str, prefix: str, snapshot: dict[str, str]) -> None:
        current = {k: v for k, v in (self._read_node(node).metadata.annotations or {}).items() if k.startswith(prefix)}
        changes: dict[str, str | None] = {k: None for k in current if k not in snapshot}
        changes.update({k: v for k, v in snapshot.items() if current.get(k) != v})
        if changes:
            self._patch_node_metadata(node, "annotations", changes)

    @keyword(tags=("Node", "HAMi"))
    def restore_node_annotations(self, node: str, prefix: str = "hami.io/") -> None:
        """Restores the annotations recorded by `Snapshot Node Annotations` now (instead of at scope end).

        Example:
        | `Restore Node Annotations`    gpu-node-0
        """
        description = f"annotations {prefix}* on node {node}"
        for scope in ("test", "suite", "run"):
            for item in self.ctx.pending_cleanups(scope):
                if item.description == description:
                    item.undo()
                    self.ctx.untrack(description)
                    return
        raise HamiE2EFailure(f"No snapshot of {prefix}* annotations on node {node} was taken.")

    @keyword("Remove HAMi Node Annotations", tags=("Node", "HAMi"))
    def remove_hami_node_annotations(self, node: str) -> list[str]:
        """Removes ``hami.io/node-nvidia-register``, ``hami.io/node-handshake*`` and ``hami.io/mutex.lock`` from
        ``node`` (what HAMi's own CI strips by hand after uninstall); returns the removed keys.

        Example:
        | `Remove HAMi Node Annotations`    gpu-node-0
        """
        annotations = self._read_node(node).metadata.annotations or {}
        keys = sorted(k for k in annotations if k.startswith(LEFTOVER_NODE_ANNOTATIONS))
        if keys:
            self._patch_node_metadata(node, "annotations", {k: None for k in keys})
        return keys

    @keyword("Get Node HAMi Annotations", tags=("Node", "HAMi"))
    def get_node_hami_annotations(self, node: str) -> dict[str, str]:
        """Returns the ``hami.io/*`` annotations of ``node``.

        Example:
        | &{annotations} =    `Get Node HAMi Annotations`    gpu-node-0
        """
        return hami_annotations(self._read_node(node).metadata.annotations)

    @keyword(tags=("Node", "HAMi", "Assertion"))
    def node_handshake_should_be_requesting(self, node: str) -> None:
        """Fails unless ``hami.io/node-handshake`` on ``node`` starts with ``Requesting_`` (written by the scheduler).

        Example:
        | `Node Handshake Should Be Requesting`    gpu-node-0
        """
        value = (self._read_node(node).metadata.annotations or {}).get(NODE_HANDSHAKE_ANNOTATION)
        if not value or not value.startswith("Requesting_"):
            raise HamiE2EFailure(f"Node {node} has {NODE_HANDSHAKE_ANNOTATION}={value!r}, expected 'Requesting_<time>'.")

    # ============================================================================================ webhook

    def _webhook_configurations(self) -> list[Any]:
        return self.ctx.admission.list_mutating_webhook_configuration().items

    @keyword("HAMi Webhook Should Be Registered", tags=("HAMi", "Assertion"))
    def hami_webhook_should_be_registered(self) -> None:
        """Fails unless a MutatingWebhookConfiguration has webhook ``vgpu.hami.io`` for pod CREATE.

        Also logs its ``failurePolicy`` and target (Service or URL).

        Example:
        | `HAMi Webhook Should Be Registered`
        """
        wanted = self.ctx.hami.webhook_name
        for configuration in self._webhook_configurations():
            for webhook in configuration.webhooks or []:
                if webhook.name != wanted:
                    continue
                rules = webhook.rules or []
                if not any("pods" in (r.resources or []) and "CREATE" in (r.operations or []) for r in rules):
                    raise HamiE2EFailure(
                        f"Webhook {wanted} in {configuration.metadata.name} does not cover pod CREATE: {rules}"
                    )
                target = webhook.client_config.url or (
                    f"service {webhook.client_config.service.namespace}/{webhook.client_config.service.name}"
                    if webhook.client_config.service
                    else "?"
                )
                logger.info(
                    f"Webhook {wanted} in {configuration.metadata.name}: failurePolicy {webhook.failure_policy}, "
                    f"target {target}"
                )
                return
        names = [c.metadata.name for c in self._webhook_configurations()]
        raise HamiE2EFailure(
            f"No MutatingWebhookConfiguration has webhook {wanted}; configurations: {', '.join(names) or 'none'}."
        )

    @keyword("HAMi Webhook Should Not Be Registered", tags=("HAMi", "Assertion"))
    def hami_webhook_should_not_be_registered(self) -> None:
        """Fails if any MutatingWebhookConfiguration still has webhook ``vgpu.hami.io`` (after an uninstall).

        Example:
        | `HAMi Webhook Should Not Be Registered`
        """
        left = [
            c.metadata.name
            for c in self._webhook_configurations()
            if any(w.name == self.ctx.hami.webhook_name for w in c.webhooks or [])
        ]
        if left:
            raise HamiE2EFailure(f"Webhook {self.ctx.hami.webhook_name} is still registered in {', '.join(left)}.")

    # ============================================================================================ metrics

    def _fetch_metrics(self, url: str) -> list[Sample]:
        """To ease unit testing: the only place that does HTTP."""
        import requests

        response = requests.get(url, timeout=10)
        if response.status_code != 200:
            raise HamiE2EFailure(f"GET {url} answered HTTP {response.status_code}: {response.text[:300]}")
        return parse_prometheus_text(response.text)

    @keyword(tags=("Metrics", "HAMi"))
    def get_metric_samples(self, url: str, name: str | None = None, **labels: str) -> list[Sample]:
        """Reads a Prometheus endpoint and returns the samples (optionally only ``name`` with ``labels``).

        Each sample has ``name``, ``labels`` (dict) and ``value`` (float).

        Example:
        | @{samples} =    `Get Metric Samples`    ${SCHEDULER_METRICS_URL}    hami_gpu_memory_limit_bytes    node=gpu-node-0
        """
        samples = self._fetch_metrics(url)
        return find_samples(samples, name, labels) if name else samples

    @keyword(tags=("Metrics", "HAMi", "Assertion", "Wait"))
    def metric_should_be_present(
        self, url: str, name: str, timeout: timedelta | None = None, **labels: str
    ) -> float:
        """Waits until ``url`` exposes a series ``name`` carrying every ``labels`` item; returns its value.

        Scheduler metrics lag up to 15 s behind (register loop), so give a timeout above that.

        Example:
        | `Metric Should Be Present`    ${SCHEDULER_METRICS_URL}    hami_vgpu_memory_allocated_bytes
        | ...    namespace=${ns}    pod=small    timeout=45s
        """
        last: dict[str, list[Sample]] = {"samples": []}

        def attempt():
            last["samples"] = self._fetch_metrics(url)
            found = find_samples(last["samples"], name, labels)
            return found[0].value if found else None

        value = self.poll(
            attempt,
            self.ctx.timeout(timeout),
            lambda: _near_misses(last["samples"], name),
            f"Series {name}{_labels(labels)} at {url}",
            interval=timedelta(seconds=2),
        )
        logger.info(f"{name}{_labels(labels)} = {value:.15g}")
        return value

    @keyword(tags=("Metrics", "HAMi", "Assertion", "Wait"))
    def metric_should_be_absent(self, url: str, name: str, timeout: timedelta | None = None, **labels: str) -> None:
        """Waits until ``url`` exposes no series ``name`` carrying every ``labels`` item (e.g. after a delete).

        Example:
        | `Metric Should Be Absent`    ${SCHEDULER_METRICS_URL}    hami_vgpu_memory_allocated_bytes    pod=small
        """
        last: dict[str, list[Sample]] = {"found": []}

        def attempt():
            last["found"] = find_samples(self._fetch_metrics(url), name, labels)
            return True if not last["found"] else None

        self.poll(
            attempt,
            self.ctx.timeout(timeout),
            lambda: "Still present: " + "; ".join(str(s) for s in last["found"][:5]) + ".",
            f"Disappearance of {name}{_labels(labels)} at {url}",
            interval=timedelta(seconds=2),
        )

    @keyword(tags=("Metrics", "HAMi", "Assertion", "Wait"))
    def metric_value_should_be(
        self, url: str, name: str, expected: float, timeout: timedelta | None = None, **labels: str
    ) -> None:
        """Waits until the series ``name`` with ``labels`` has value ``expected`` (sum over matching series).

        Example:
        | `Metric Value Should Be`    ${SCHEDULER_METRICS_URL}    hami_vgpu_memory_allocated_bytes    3145728000
        | ...    pod=small    namespace=${ns}
        """
        last: dict[str, float | None] = {"value": None}

        def attempt():
            found = find_samples(self._fetch_metrics(url), name, labels)
            last["value"] = sum(s.value for s in found) if found else None
            return True if found and last["value"] == float(expected) else None

        self.poll(
            attempt,
            self.ctx.timeout(timeout),
            lambda: f"Last value: {last['value']}, expected {float(expected):.15g}.",
            f"{name}{_labels(labels)} == {float(expected):.15g} at {url}",
            interval=timedelta(seconds=2),
        )


    # ============================================================================================ HAMi metrics

    @keyword("Scheduler Metrics Should Show Pod Allocation", tags=("Metrics", "HAMi", "Assertion", "Wait"))
    def scheduler_metrics_should_show_pod_allocation(
        self,
        url: str,
        pod: str | None = None,
        gpumem: int | None = None,
        gpucores: int | None = None,
        namespace: str | None = None,
        timeout: timedelta | None = None,
    ) -> None:
        """Waits until the scheduler's per-container series for the pod match its allocation.

        ``hami_vgpu_memory_allocated_bytes`` must sum to ``gpumem`` × 1048576 and ``hami_vgpu_core_allocated_ratio``
        to ``gpucores`` over the pod's series (labels ``namespace``, ``pod``, plus ``node``, ``container_index``,
        ``device_uuid``). The node label must equal the pod's node and the UUIDs its allocated GPUs.

        Example:
        | `Scheduler Metrics Should Show Pod Allocation`    ${SCHEDULER_METRICS_URL}    small    gpumem=3000    gpucores=30
        """
        pod_name, ns = self.pod_name(pod), self.namespace(namespace)
        node = self.read_pod(pod_name, ns).spec.node_name
        uuids = set(self.get_allocated_gpu_uuids(pod_name, ns))
        labels = {"namespace": ns, "pod": pod_name}
        wanted = [("hami_vgpu_memory_allocated_bytes", gpumem * 1048576 if gpumem is not None else None),
                  ("hami_vgpu_core_allocated_ratio", gpucores)]
        last: dict[str, str] = {"seen": ""}

        def attempt():
            samples = self._fetch_metrics(url)
            problems = []
            for name, expected in wanted:
                found = find_samples(samples, name, labels)
                if not found:
                    problems.append(f"no {name}{_labels(labels)}")
                    continue
                total = sum(s.value for s in found)
                if expected is not None and total != float(expected):
                    problems.append(f"{name} sums to {total:.15g}, expected {float(expected):.15g}")
                for sample in found:
                    if sample.labels.get("node") != node or sample.labels.get("device_uuid") not in uuids:
                        problems.append(f"{sample} does not match node {node} / GPUs {', '.join(sorted(uuids))}")
            last["seen"] = "; ".join(problems)
            return True if not problems else None

        self.poll(
            attempt,
            self.ctx.timeout(timeout),
            lambda: f"Last reading: {last['seen']}.",
            f"Scheduler metrics for pod {ns}/{pod_name}",
            interval=timedelta(seconds=2),
        )

    @keyword("Scheduler Metrics Should Show GPU Limits Of Node", tags=("Metrics", "HAMi", "Assertion", "Wait"))
    def scheduler_metrics_should_show_gpu_limits_of_node(
        self, url: str, node: str, timeout: timedelta | None = None
    ) -> None:
        """Waits until every GPU registered on ``node`` has ``hami_gpu_memory_limit_bytes`` = devmem × 1048576 and
        ``hami_gpu_core_limit_ratio`` = devcore, with labels ``node`` and ``device_uuid``.

        Example:
        | `Scheduler Metrics Should Show GPU Limits Of Node`    ${SCHEDULER_METRICS_URL}    gpu-node-0
        """
        devices = self.get_node_registration(node)
        if not devices:
            raise HamiE2EFailure(f"Node {node} has no registered GPU to compare the metrics with.")
        last: dict[str, str] = {"seen": ""}

        def attempt():
            samples = self._fetch_metrics(url)
            problems = []
            for device in devices:
                labels = {"node": node, "device_uuid": device.id}
                for name, expected in (
                    ("hami_gpu_memory_limit_bytes", device.devmem * 1048576),
                    ("hami_gpu_core_limit_ratio", device.devcore),
                ):
                    found = find_samples(samples, name, labels)
                    if not found:
                        problems.append(f"no {name}{_labels(labels)}")
                    elif found[0].value != float(expected):
                        problems.append(f"{found[0]}, expected {float(expected):.15g}")
            last["seen"] = "; ".join(problems)
            return True if not problems else None

        self.poll(
            attempt,
            self.ctx.timeout(timeout),
            lambda: f"Last reading: {last['seen']}.",
            f"GPU limit metrics of node {node}",
            interval=timedelta(seconds=2),
        )


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""


def _near_misses(samples: list[Sample], name: str) -> str:
    same = [s for s in samples if s.name == name]
    if not same:
        return f"No series named {name} at all ({len(samples)} samples read)."
    return f"Series named {name}: " + "; ".join(str(s) for s in same[:5]) + ("; …" if len(same) > 5 else "") + "."


def _registration_problems(
    devices: list[RegisteredDevice],
    gpu_count: int | None,
    memory_mib: int | None,
    model: str | None,
    split_count: int | None,
    cores: int | None,
    healthy: bool | None,
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
        if healthy is not None and d.health != healthy:
            problems.append(f"{d.id} health {d.health}, expected {healthy}")
    return problems
