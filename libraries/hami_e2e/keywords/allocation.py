"""Keywords that read and assert what HAMi allocated to a pod: its devices, node and bind phase."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from robot.api import logger
from robot.api.deco import keyword

from ..core.component import LibraryComponent
from ..core.describe import describe_pod
from ..core.errors import HamiE2EFailure
from ..parsers.annotations import BIND_PHASE_ANNOTATION, VGPU_NODE_ANNOTATION, AllocatedDevice, parse_allocated_devices
from .nodes import read_node_registration

BindPhase = Literal["allocating", "success", "failed"]


def read_allocation(component: LibraryComponent, pod: str, namespace: str) -> tuple[Any, list[list[AllocatedDevice]]]:
    """The pod and, per container in annotation order (init containers first), the devices HAMi allocated to it.
    Reads once: fails naming the pod's state when HAMi has not written ``hami.io/vgpu-devices-allocated``."""
    key = component.ctx.vendor.allocated_annotation
    obj = component.read_pod(pod, namespace)
    value = (obj.metadata.annotations or {}).get(key)
    if not value:
        raise HamiE2EFailure(
            f"Pod {namespace}/{pod} has no {key} annotation: HAMi allocated nothing. {describe_pod(obj)}"
        )
    return obj, parse_allocated_devices(value)


def read_allocated_uuids(component: LibraryComponent, pod: str, namespace: str) -> list[str]:
    """The UUIDs of every GPU allocated to any container of the pod, in annotation order, without repeats."""
    uuids: list[str] = []
    for devices in read_allocation(component, pod, namespace)[1]:
        uuids += [d.uuid for d in devices if d.uuid not in uuids]
    return uuids


def gpu_memory_for_percentage(card_mib: int, percentage: int) -> int:
    """The MiB HAMi grants for ``nvidia.com/gpumem-percentage``: ``card_mib * percentage / 100`` in integers."""
    return card_mib * percentage // 100


def _containers_in_allocation_order(pod: Any) -> list[str]:
    """Container names in the order of the allocation annotation: init containers first."""
    return [c.name for c in (pod.spec.init_containers or [])] + [c.name for c in pod.spec.containers]


class AllocationKeywords(LibraryComponent):
    """HAMi's allocation annotations on pods, the pod's node, its bind phase, and the resource limits the webhook
    set. Reading an allocation does not wait: call them once the pod runs (or `Wait Until Pod Bind Phase Is`)."""

    @keyword("Get Allocated GPU UUIDs", tags=("HAMi", "Pod"))
    def get_allocated_gpu_uuids(self, pod: str | None = None, namespace: str | None = None) -> list[str]:
        """Returns the UUIDs of every GPU allocated to any container of the pod, in annotation order, no repeats.

        Example:
        | @{uuids} =    `Get Allocated GPU UUIDs`    small
        """
        return read_allocated_uuids(self, self.pod_name(pod), self.namespace(namespace))

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
        obj, containers = read_allocation(self, pod_name, ns)
        names = _containers_in_allocation_order(obj)
        raw = (obj.metadata.annotations or {}).get(self.ctx.vendor.allocated_annotation)
        if container is not None:
            if container not in names:
                raise self.fail(f"Pod {pod_name} has no container {container!r}; it has {', '.join(names)}.", message)
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
    def pod_should_be_allocated_on_its_node(
        self, pod: str | None = None, namespace: str | None = None, message: str | None = None
    ) -> None:
        """Fails unless ``hami.io/vgpu-node`` (annotation and label) equals ``spec.nodeName`` and every allocated
        UUID is registered on that node.

        Catches mis-allocations where the annotation and the real placement disagree (Project-HAMi/HAMi issues 958
        and 968).

        Example:
        | `Pod Should Be Allocated On Its Node`    small
        """
        pod_name, ns = self.pod_name(pod), self.namespace(namespace)
        obj, containers = read_allocation(self, pod_name, ns)
        node = obj.spec.node_name
        annotated = (obj.metadata.annotations or {}).get(VGPU_NODE_ANNOTATION)
        labelled = (obj.metadata.labels or {}).get(VGPU_NODE_ANNOTATION)
        if not node or annotated != node or labelled != node:
            raise self.fail(
                f"Pod {ns}/{pod_name}: spec.nodeName={node!r}, annotation {VGPU_NODE_ANNOTATION}={annotated!r}, "
                f"label {VGPU_NODE_ANNOTATION}={labelled!r}; expected all three equal.",
                message,
            )
        registered = {d.id for d in read_node_registration(self, node)}
        stray = sorted({d.uuid for devices in containers for d in devices} - registered)
        if stray:
            raise self.fail(
                f"Pod {ns}/{pod_name} was allocated {', '.join(stray)}, which node {node} does not register "
                f"(registered: {', '.join(sorted(registered))}).",
                message,
            )

    @keyword(tags=("HAMi", "Pod", "Wait"))
    def wait_until_pod_bind_phase_is(
        self,
        pod: str | None = None,
        phase: BindPhase = "success",
        namespace: str | None = None,
        timeout: timedelta | None = None,
        message: str | None = None,
    ) -> None:
        """Waits up to ``timeout`` until ``hami.io/bind-phase`` is ``phase`` (``allocating``, ``success`` or
        ``failed``).

        Fails at once if the phase reaches ``failed`` while another phase is expected.

        Example:
        | `Wait Until Pod Bind Phase Is`    small    success
        """
        pod_name, ns = self.pod_name(pod), self.namespace(namespace)

        def condition(items: list[Any]) -> bool | None:
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
            message=message,
            namespace=ns,
            field_selector=f"metadata.name={pod_name}",
        )

    @keyword(tags=("HAMi", "Pod", "Assertion"))
    def pod_resource_limit_should_be(
        self,
        pod: str | None,
        resource: str,
        expected: str,
        container: str = "cuda",
        namespace: str | None = None,
        message: str | None = None,
    ) -> None:
        """Fails unless the container's limit for ``resource`` is ``expected``.

        ``resource`` is a full name (``nvidia.com/gpucores``) or a vendor key from `Configure Vendor Names`
        (``gpu``, ``memory``, ``memory_percentage``, ``cores``). Use it to see what the webhook added.

        Example:
        | `Pod Resource Limit Should Be`    whole    cores    100
        """
        name = resource if "/" in resource else getattr(self.ctx.vendor, resource, resource)
        obj = self.read_pod(self.pod_name(pod), self.namespace(namespace))
        spec = next((c for c in obj.spec.containers + (obj.spec.init_containers or []) if c.name == container), None)
        if spec is None:
            raise self.fail(f"Pod {obj.metadata.name} has no container {container!r}.", message)
        actual = ((spec.resources.limits if spec.resources else None) or {}).get(name)
        if actual is None or str(actual) != str(expected):
            raise self.fail(
                f"Pod {obj.metadata.name} container {container}: limit {name} is {actual!r}, expected {expected!r}.",
                message,
            )

    @keyword("Get GPU Memory For Percentage", tags=("HAMi",))
    def get_gpu_memory_for_percentage(self, percentage: int, card_mib: int) -> int:
        """Returns the MiB HAMi grants for ``nvidia.com/gpumem-percentage`` ``percentage`` on a ``card_mib`` card.

        HAMi computes ``card_mib * percentage / 100`` in integers (rounded down).

        Example:
        | ${mib} =    `Get GPU Memory For Percentage`    25    ${GPU_MEMORY_MIB}
        """
        return gpu_memory_for_percentage(card_mib, percentage)
