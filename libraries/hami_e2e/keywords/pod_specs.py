"""Keywords that build vGPU pod manifests and set what every test pod gets.

``resources/gpu_pods.resource`` composes them with `Create Pod From Spec` into ``Create GPU Pod`` and ``Create Pod
Without GPU``, so the arguments of a vGPU pod are defined once, here, in `Build GPU Pod Spec`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from robot.api.deco import keyword

from ..core.component import LibraryComponent
from ..core.context import VendorNames
from ..core.errors import HamiE2EFailure

AllocationProbe = Literal["pytorch", "gpu-workload"]
RestartPolicy = Literal["Always", "OnFailure", "Never"]
ImagePullPolicy = Literal["IfNotPresent", "Always", "Never"]


class NodePolicy(Enum):
    """Node ranking asked for with ``hami.io/node-scheduler-policy``."""

    binpack = "binpack"
    spread = "spread"


@dataclass
class _ContainerRequest:
    """The HAMi resources of one container; ``gpus`` 0 and ``None`` values are left out of the limits."""

    gpus: int = 0
    gpumem: int | None = None
    gpumem_percentage: int | None = None
    gpucores: int | None = None
    priority: int | None = None

    def limits(self, names: VendorNames) -> dict[str, str]:
        pairs = [
            (names.gpu, self.gpus or None),
            (names.memory, self.gpumem),
            (names.memory_percentage, self.gpumem_percentage),
            (names.cores, self.gpucores),
            (names.priority, self.priority),
        ]
        return {name: str(value) for name, value in pairs if value is not None}


def _csv(value: str | list[str] | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


class PodSpecKeywords(LibraryComponent):
    """Pod defaults, vendor resource names and vGPU pod manifests."""

    @keyword(tags=("Pod", "Configuration"))
    def configure_workload_defaults(
        self,
        image: str | None = None,
        command: list[str] | None = None,
        tolerations: list[dict[str, Any]] | None = None,
        node_selector: dict[str, str] | None = None,
        image_pull_policy: ImagePullPolicy | None = None,
        allocation_probe: AllocationProbe | None = None,
    ) -> None:
        """Sets what every pod built by `Build GPU Pod Spec` gets unless the keyword call says otherwise.

        | =Argument= | =Description= |
        | ``image`` | Container image, e.g. ``${CUDA_IMAGE}``. |
        | ``command`` | Container command (a list), e.g. ``sleep infinity``. |
        | ``tolerations`` | List of toleration dicts (from a variable file). |
        | ``node_selector`` | Node selector dict added to every pod. |
        | ``image_pull_policy`` | ``IfNotPresent`` (default), ``Always`` or ``Never``. |
        | ``allocation_probe`` | How `GPU Memory Allocation Should Succeed` and its siblings allocate: ``pytorch`` (default; the image needs PyTorch with CUDA) or ``gpu-workload`` (the sandbox's CUDA driver API program, ``gpu-workload alloc <MiB>``). |

        Arguments not given keep their current value.

        Example:
        | `Configure Workload Defaults`    image=${CUDA_IMAGE}    tolerations=${POD_TOLERATIONS}
        """
        defaults = self.ctx.workload
        if image:
            defaults.image = image
        if command:
            defaults.command = list(command)
        if tolerations is not None:
            defaults.tolerations = list(tolerations)
        if node_selector is not None:
            defaults.node_selector = dict(node_selector)
        if image_pull_policy:
            defaults.image_pull_policy = image_pull_policy
        if allocation_probe:
            defaults.allocation_probe = allocation_probe

    @keyword(tags=("Pod", "Configuration"))
    def configure_vendor_names(self, **names: str) -> None:
        """Sets the extended resource names and annotation keys the pod keywords use (default: NVIDIA).

        Keys: ``gpu``, ``memory``, ``memory_percentage``, ``cores``, ``priority``, ``use_type``, ``nouse_type``,
        ``use_uuid``, ``nouse_uuid``, ``register_annotation``, ``allocated_annotation``. The values come from
        ``variables/vendors/<vendor>.yaml``, so a renamed resource (chart value ``resourceName`` …) is one edit.

        Example:
        | `Configure Vendor Names`    &{VENDOR_NAMES}
        """
        known = set(VendorNames.__dataclass_fields__)
        unknown = sorted(set(names) - known)
        if unknown:
            raise HamiE2EFailure(f"Unknown vendor name key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        for key, value in names.items():
            setattr(self.ctx.vendor, key, str(value))

    @keyword("Build GPU Pod Spec", tags=("Pod",))
    def build_gpu_pod_spec(
        self,
        pod: str,
        gpus: int = 1,
        gpumem: int | None = None,
        gpumem_percentage: int | None = None,
        gpucores: int | None = None,
        containers: int = 1,
        image: str | None = None,
        command: list[str] | None = None,
        use_gpu_type: str | list[str] | None = None,
        nouse_gpu_type: str | list[str] | None = None,
        use_gpu_uuid: str | list[str] | None = None,
        nouse_gpu_uuid: str | list[str] | None = None,
        node_policy: NodePolicy | None = None,
        gpu_policy: str | None = None,
        privileged: bool = False,
        env: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        node_name: str | None = None,
        priority: int | None = None,
        restart_policy: RestartPolicy = "Always",
        scheduler_name: str | None = None,
    ) -> dict[str, Any]:
        """Builds a pod manifest (a dict) asking HAMi for vGPUs; nothing is sent to the cluster.

        | =Argument= | =Description= |
        | ``pod`` | Pod name. |
        | ``gpus`` | Physical GPUs per container (``nvidia.com/gpu``, default 1); ``0`` leaves the resource out: a pod without GPU, or, with ``gpumem``/``gpucores``, one whose GPU count HAMi's webhook must add. |
        | ``gpumem`` | Device memory per GPU in MiB (``nvidia.com/gpumem``). |
        | ``gpumem_percentage`` | Percent of each GPU's memory (``nvidia.com/gpumem-percentage``). |
        | ``gpucores`` | Percent of each GPU's compute (``nvidia.com/gpucores``). |
        | ``containers`` | Number of identical containers: ``cuda``, ``cuda-1``, ``cuda-2`` … |
        | ``image``, ``command`` | Override `Configure Workload Defaults`. |
        | ``use_gpu_type``, ``nouse_gpu_type`` | GPU type include/exclude lists (comma string or list). |
        | ``use_gpu_uuid``, ``nouse_gpu_uuid`` | GPU UUID include/exclude lists. |
        | ``node_policy`` | ``binpack`` or ``spread`` (``hami.io/node-scheduler-policy``). |
        | ``gpu_policy`` | ``spread``, ``binpack``, ``topology-aware``, ``mutex``, ``numa`` or a chain like ``binpack,numa``. |
        | ``privileged`` | Sets ``securityContext.privileged: true`` on every container. |
        | ``env`` | Extra environment variables (dict). |
        | ``annotations``, ``labels`` | Extra pod metadata. |
        | ``node_name`` | Sets ``spec.nodeName`` (the webhook must refuse it for GPU pods). |
        | ``priority`` | Task priority (``nvidia.com/priority``). |
        | ``restart_policy`` | ``Always`` (default), ``OnFailure`` or ``Never``. |
        | ``scheduler_name`` | Sets ``spec.schedulerName`` (the webhook leaves pods of other schedulers alone). |

        Resource names come from `Configure Vendor Names`. Use `Add Container To Pod Spec` for containers that
        differ, and `Create Pod From Spec` to deploy the result (``Create GPU Pod`` of ``gpu_pods.resource`` does
        both).

        Example:
        | ${spec} =    `Build GPU Pod Spec`    shared    gpumem=3000    gpucores=30    containers=2
        """
        names = self.ctx.vendor
        request = _ContainerRequest(gpus, gpumem, gpumem_percentage, gpucores, priority)
        pod_annotations = dict(annotations or {})
        for key, value in (
            (names.use_type, use_gpu_type),
            (names.nouse_type, nouse_gpu_type),
            (names.use_uuid, use_gpu_uuid),
            (names.nouse_uuid, nouse_gpu_uuid),
            ("hami.io/node-scheduler-policy", node_policy.value if node_policy else None),
            ("hami.io/gpu-scheduler-policy", gpu_policy),
        ):
            joined = _csv(value)
            if joined is not None:
                pod_annotations[key] = joined
        spec: dict[str, Any] = {
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": self.ctx.workload.termination_grace_period,
            "containers": [],
        }
        if self.ctx.workload.tolerations:
            spec["tolerations"] = copy.deepcopy(self.ctx.workload.tolerations)
        if self.ctx.workload.node_selector:
            spec["nodeSelector"] = dict(self.ctx.workload.node_selector)
        if node_name:
            spec["nodeName"] = node_name
        if scheduler_name:
            spec["schedulerName"] = scheduler_name
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod,
                "labels": {**self.ctx.ownership_labels(), **(labels or {})},
                "annotations": pod_annotations,
            },
            "spec": spec,
        }
        for index in range(containers):
            container_name = "cuda" if index == 0 else f"cuda-{index}"
            spec["containers"].append(self._container(container_name, request, image, command, privileged, env))
        return manifest

    def _container(
        self,
        name: str,
        request: _ContainerRequest,
        image: str | None,
        command: list[str] | None,
        privileged: bool,
        env: dict[str, str] | None,
    ) -> dict[str, Any]:
        container: dict[str, Any] = {
            "name": name,
            "image": image or self.ctx.workload.image,
            "imagePullPolicy": self.ctx.workload.image_pull_policy,
            "command": list(command or self.ctx.workload.command),
        }
        limits = request.limits(self.ctx.vendor)
        if limits:
            container["resources"] = {"limits": limits}
        if env:
            container["env"] = [{"name": str(k), "value": str(v)} for k, v in env.items()]
        if privileged:
            container["securityContext"] = {"privileged": True}
        return container

    @keyword(tags=("Pod",))
    def add_container_to_pod_spec(
        self,
        spec: dict[str, Any],
        name: str,
        gpus: int = 0,
        gpumem: int | None = None,
        gpumem_percentage: int | None = None,
        gpucores: int | None = None,
        image: str | None = None,
        command: list[str] | None = None,
        privileged: bool = False,
        env: dict[str, str] | None = None,
        init: bool = False,
    ) -> dict[str, Any]:
        """Adds a container (or, with ``init=True``, an init container) to a spec from `Build GPU Pod Spec`.

        Without any GPU argument the container asks for no GPU (``gpus`` defaults to 0 here). Returns the same
        (changed) spec.

        Example:
        | ${spec} =    `Build GPU Pod Spec`    mixed    gpumem=2000
        | `Add Container To Pod Spec`    ${spec}    sidecar
        | `Add Container To Pod Spec`    ${spec}    warmup    gpumem=1000    init=True    command=${TRUE_COMMAND}
        """
        request = _ContainerRequest(gpus, gpumem, gpumem_percentage, gpucores)
        container = self._container(name, request, image, command, privileged, env)
        spec["spec"].setdefault("initContainers" if init else "containers", []).append(container)
        return spec
