"""Keywords that build, deploy, wait for, exec into and delete vGPU workloads in a per-test namespace."""

from __future__ import annotations

import copy
import os
import random
import re
import string
import time
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from ..parsers.annotations import format_event
from ..parsers.nvidia_smi import find_oom_events
from robot.api import logger
from robot.api.deco import keyword

from ..core.component import LibraryComponent, api_error_text, human
from ..core.context import VendorNames
from ..core.errors import HamiE2EFailure

#: Exec channel numbers of the Kubernetes streaming protocol (v4/v5.channel.k8s.io).
STDOUT_CHANNEL, STDERR_CHANNEL, ERROR_CHANNEL = 1, 2, 3

#: PyTorch probe that allocates N MiB on the first visible GPU; HAMi-core makes it fail above the limit.
ALLOCATION_PROBE = (
    "import sys, torch\n"
    "mib = int(sys.argv[1])\n"
    "block = torch.empty(mib * 1024 * 1024, dtype=torch.uint8, device='cuda')\n"
    "torch.cuda.synchronize()\n"
    "print(f'allocated {mib} MiB')\n"
)


ALLOCATION_PROBES = ("pytorch", "gpu-workload")


class NodePolicy(Enum):
    """Node ranking asked for with ``hami.io/node-scheduler-policy``."""

    binpack = "binpack"
    spread = "spread"


@dataclass
class ExecResult:
    """What a command run in a container gave back: exit status, stdout and stderr kept apart."""

    command: list[str]
    rc: int
    stdout: str
    stderr: str
    error: str = ""

    def __str__(self) -> str:
        return f"rc={self.rc}"


@dataclass
class _ContainerRequest:
    gpus: int | None = None
    gpumem: int | None = None
    gpumem_percentage: int | None = None
    gpucores: int | None = None
    priority: int | None = None

    def limits(self, names: VendorNames) -> dict[str, str]:
        pairs = [
            (names.gpu, self.gpus),
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


def _slug(text: str, limit: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].strip("-") or "suite"


def _random_suffix(length: int = 5) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=length))


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
                f"container {container.name} terminated {state.terminated.reason} "
                f"(exit {state.terminated.exit_code})"
            )
    return "Pod " + pod.metadata.name + ": " + "; ".join(parts) + "."


class WorkloadKeywords(LibraryComponent):
    """Namespaces, vGPU pod specs, pods, waits, exec and logs."""

    # ============================================================================================ namespace

    @keyword(tags=("Pod", "Namespace"))
    def create_test_namespace(self, prefix: str = "hami-e2e", scope: str = "test") -> str:
        """Creates a namespace ``<prefix>-<suite>-<random>`` for this test and makes it the default namespace.

        | =Argument= | =Description= |
        | ``prefix`` | Start of the name. |
        | ``scope``  | When the namespace is deleted: ``test`` (default, at test end, even after a failure), ``suite`` or ``run``. |

        The namespace is labelled ``app.kubernetes.io/managed-by=hami-e2e`` so leftovers are easy to find. With
        ``keep_on_failure`` (library import argument, ``${KEEP_ON_FAILURE}``) a failed test's namespace is kept.
        Every pod keyword uses this namespace when no ``namespace`` is given. Returns the name.

        Example:
        | ${ns} =    `Create Test Namespace`
        """
        suite = (self.ctx.suite_name or "suite").split(".")[-1]
        name = f"{prefix}-{_slug(suite, 63 - len(prefix) - 7)}-{_random_suffix()}"
        body = {
            "metadata": {
                "name": name,
                "labels": {
                    "app.kubernetes.io/managed-by": "hami-e2e",
                    # Test pods run as root with plain images; do not let a restrictive default block them.
                    "pod-security.kubernetes.io/enforce": "privileged",
                },
                "annotations": {"hami-e2e/test": (self.ctx.test_name or "")[:200]},
            }
        }
        self.ctx.core.create_namespace(body)
        self.ctx.track(f"namespace {name}", lambda: self._delete_namespace(name, wait_for_pods=True), scope=scope,
                       keepable=True)
        self.ctx.namespace = name
        logger.info(f"Created namespace {name}")
        return name

    def _delete_namespace(self, name: str, wait_for_pods: bool = False) -> None:
        """Deletes the namespace; with ``wait_for_pods`` waits until its pods are gone (default timeout), so the
        next test's pods never meet GPUs this test's pods still hold (HAMi counts a pod until it is deleted, and a
        pod HAMi turned away is retried only on cluster events or after minutes)."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.ctx.core.delete_namespace(name, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise
            return
        if wait_for_pods:
            self.watch_until(
                self.ctx.core.list_namespaced_pod,
                lambda items: True if not items else None,
                self.ctx.default_timeout,
                f"Deletion of the pods of namespace {name}",
                lambda items: "Still there: " + ", ".join(p.metadata.name for p in items) if items else "",
                namespace=name,
            )

    @keyword(tags=("Pod", "Namespace"))
    def delete_namespace(self, name: str, wait: bool = False, timeout: timedelta | None = None) -> None:
        """Deletes namespace ``name``; with ``wait=True`` waits until it is gone.

        Example:
        | `Delete Namespace`    ${ns}    wait=True    timeout=2 min
        """
        self._delete_namespace(name)
        self.ctx.untrack(f"namespace {name}")
        if wait:
            self.watch_until(
                self.ctx.core.list_namespace,
                lambda items: True if not items else None,
                self.ctx.timeout(timeout),
                f"Deletion of namespace {name}",
                lambda items: f"It is still {items[0].status.phase}." if items else "",
                field_selector=f"metadata.name={name}",
            )

    # ============================================================================================ settings

    @keyword(tags=("Pod", "Configuration"))
    def configure_workload_defaults(
        self,
        image: str | None = None,
        command: list[str] | None = None,
        tolerations: list[dict[str, Any]] | None = None,
        node_selector: dict[str, str] | None = None,
        image_pull_policy: str | None = None,
        allocation_probe: str | None = None,
    ) -> None:
        """Sets what every pod built by `Build GPU Pod Spec` gets unless the keyword call says otherwise.

        | =Argument= | =Description= |
        | ``image`` | Container image, e.g. ``${CUDA_IMAGE}``. |
        | ``command`` | Container command (a list), e.g. ``sleep infinity``. |
        | ``tolerations`` | List of toleration dicts (from a variable file). |
        | ``node_selector`` | Node selector dict added to every pod. |
        | ``image_pull_policy`` | ``IfNotPresent`` (default), ``Always`` or ``Never``. |
        | ``allocation_probe`` | How `Allocate GPU Memory In Pod` allocates: ``pytorch`` (default; the image needs PyTorch with CUDA) or ``gpu-workload`` (the sandbox's CUDA driver API program, ``gpu-workload alloc <MiB>``). |

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
            if allocation_probe not in ALLOCATION_PROBES:
                raise HamiE2EFailure(f"allocation_probe {allocation_probe!r} is not one of {sorted(ALLOCATION_PROBES)}")
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

    # ============================================================================================ specs

    @keyword("Build GPU Pod Spec", tags=("Pod",))
    def build_gpu_pod_spec(
        self,
        name: str,
        gpus: int | None = 1,
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
        restart_policy: str = "Always",
        scheduler_name: str | None = None,
    ) -> dict[str, Any]:
        """Builds a pod manifest (a dict) asking HAMi for vGPUs; nothing is sent to the cluster.

        | =Argument= | =Description= |
        | ``name`` | Pod name. |
        | ``gpus`` | Physical GPUs per container (``nvidia.com/gpu``); ``None`` leaves it out (the webhook then adds 1). |
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
        differ, and `Create Pod From Spec` to deploy the result.

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
                "name": name,
                "labels": {"app.kubernetes.io/managed-by": "hami-e2e", **(labels or {})},
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
        gpus: int | None = None,
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

        Without any GPU argument the container asks for no GPU. Returns the same (changed) spec.

        Example:
        | ${spec} =    `Build GPU Pod Spec`    mixed    gpumem=2000
        | `Add Container To Pod Spec`    ${spec}    sidecar
        | `Add Container To Pod Spec`    ${spec}    warmup    gpumem=1000    init=True    command=${TRUE_COMMAND}
        """
        request = _ContainerRequest(gpus, gpumem, gpumem_percentage, gpucores)
        container = self._container(name, request, image, command, privileged, env)
        spec["spec"].setdefault("initContainers" if init else "containers", []).append(container)
        return spec

    # ============================================================================================ create

    @keyword(tags=("Pod",))
    def create_pod_from_spec(self, spec: dict[str, Any], namespace: str | None = None) -> str:
        """Creates the pod described by ``spec`` (a dict, e.g. from `Build GPU Pod Spec`) and returns its name.

        Does not wait; use `Wait For Pod Running` and friends. A refusal by the API server or by an admission
        webhook fails with the server's text, ``Creating pod <ns>/<name> was refused (HTTP <code> <reason>):
        <message>``, so negative tests can pin it with `Run Keyword And Expect Error`.

        Example:
        | Run Keyword And Expect Error    GLOB:*denied the request: container cuda is privileged
        | ...    `Create Pod From Spec`    ${spec}
        """
        from kubernetes.client.exceptions import ApiException

        ns = self.namespace(namespace)
        name = spec.get("metadata", {}).get("name", "")
        logger.debug("Pod manifest:\n" + yaml.safe_dump(spec, sort_keys=False))
        try:
            created = self.ctx.core.create_namespaced_pod(ns, body=spec)
        except ApiException as error:
            text = api_error_text(error)
            head, _, message = text.partition(": ")
            raise HamiE2EFailure(f"Creating pod {ns}/{name} was refused ({head}): {message}") from None
        self.ctx.last_pod = created.metadata.name
        logger.info(f"Created pod {ns}/{created.metadata.name}")
        return created.metadata.name

    @keyword("Create GPU Pod", tags=("Pod",))
    def create_gpu_pod(
        self,
        name: str,
        gpus: int | None = 1,
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
        restart_policy: str = "Always",
        scheduler_name: str | None = None,
        namespace: str | None = None,
    ) -> str:
        """Builds a vGPU pod with `Build GPU Pod Spec` (same arguments) and creates it; returns its name.

        ``namespace`` defaults to the test namespace. Does not wait: follow with `Wait For Pod Running` or
        `Wait For Pod Pending With Reason`.

        Example:
        | `Create GPU Pod`    small    gpumem=3000    gpucores=30
        | `Wait For Pod Running`    small
        """
        options = {k: v for k, v in locals().items() if k not in ("self", "name", "namespace")}
        spec = self.build_gpu_pod_spec(name, **options)
        return self.create_pod_from_spec(spec, namespace)

    @keyword(tags=("Pod",))
    def create_pod_from_manifest(self, manifest: str, namespace: str | None = None) -> str:
        """Creates a pod from a YAML file path or YAML text and returns its name.

        ``${NAMESPACE}`` in the text is replaced with the target namespace (the test namespace by default); a
        ``metadata.namespace`` in the manifest is overridden.

        Example:
        | `Create Pod From Manifest`    ${CURDIR}/manifests/two-containers.yaml
        """
        ns = self.namespace(namespace)
        text = Path(manifest).read_text() if "\n" not in manifest and os.path.isfile(manifest) else manifest
        spec = yaml.safe_load(text.replace("${NAMESPACE}", ns))
        if not isinstance(spec, dict) or spec.get("kind", "Pod") != "Pod":
            raise HamiE2EFailure(f"The manifest is not a single Pod: {str(spec)[:200]}")
        spec.setdefault("metadata", {})["namespace"] = ns
        return self.create_pod_from_spec(spec, ns)

    # ============================================================================================ waits

    def _wait_for_pod(
        self,
        name: str | None,
        namespace: str | None,
        timeout: timedelta | None,
        what: str,
        condition,
    ) -> Any:
        pod_name, ns = self.pod_name(name), self.namespace(namespace)
        last: dict[str, Any] = {}

        def check(items: list[Any]):
            pod = items[0] if items else None
            last["pod"] = pod
            return condition(pod)

        def describe(_items: list[Any]) -> str:
            text = describe_pod(last.get("pod"))
            if last.get("pod") is not None:
                events = self.list_pod_events(pod_name, ns)[-5:]
                if events:
                    text += " Recent events: " + " | ".join(format_event(e) for e in events)
            return text

        return self.watch_until(
            self.ctx.core.list_namespaced_pod,
            check,
            self.ctx.timeout(timeout),
            f"{what} of pod {ns}/{pod_name}",
            describe,
            namespace=ns,
            field_selector=f"metadata.name={pod_name}",
        )

    @keyword(tags=("Pod", "Wait"))
    def wait_for_pod_running(
        self, name: str | None = None, namespace: str | None = None, timeout: timedelta | None = None
    ) -> str:
        """Waits (Kubernetes watch) until the pod is ``Running`` and returns the node it runs on.

        | =Argument= | =Description= |
        | ``name`` | Pod name; default: the last pod this test created. |
        | ``namespace`` | Default: the test namespace. |
        | ``timeout`` | Default: the library's ``default_timeout`` (``${POD_START_TIMEOUT}`` in resources). |

        Fails at once if the pod ends ``Failed`` or ``Succeeded``; on timeout the message gives the phase, the
        scheduling condition, container states and the latest events.

        Example:
        | ${node} =    `Wait For Pod Running`    small    timeout=3 min
        """

        def condition(pod):
            if pod is None:
                return None
            phase = pod.status.phase
            if phase == "Running":
                return pod.spec.node_name
            if phase in ("Failed", "Succeeded"):
                raise HamiE2EFailure(f"Expected pod {pod.metadata.name} to be Running. {describe_pod(pod)}")
            return None

        return self._wait_for_pod(name, namespace, timeout, "Running", condition)

    @keyword(tags=("Pod", "Wait"))
    def wait_for_pod_succeeded(
        self, name: str | None = None, namespace: str | None = None, timeout: timedelta | None = None
    ) -> None:
        """Waits until the pod's phase is ``Succeeded``; fails at once if it is ``Failed``.

        Example:
        | `Wait For Pod Succeeded`    probe    timeout=5 min
        """

        def condition(pod):
            if pod is not None and pod.status.phase == "Succeeded":
                return True
            if pod is not None and pod.status.phase == "Failed":
                raise HamiE2EFailure(f"Expected pod {pod.metadata.name} to succeed. {describe_pod(pod)}")
            return None

        self._wait_for_pod(name, namespace, timeout, "Success", condition)

    @keyword(tags=("Pod", "Wait"))
    def wait_for_pod_failed(
        self,
        name: str | None = None,
        reason: str | None = None,
        namespace: str | None = None,
        timeout: timedelta | None = None,
    ) -> str:
        """Waits until the pod's phase is ``Failed`` (optionally with ``status.reason`` ``reason``).

        Returns ``status.message``. ``UnexpectedAdmissionError`` is the reason kubelet gives when the device
        plugin's Allocate failed.

        Example:
        | `Wait For Pod Failed`    bypass    reason=UnexpectedAdmissionError
        """

        def condition(pod):
            if pod is None or pod.status.phase != "Failed":
                if pod is not None and pod.status.phase == "Succeeded":
                    raise HamiE2EFailure(f"Expected pod {pod.metadata.name} to fail. {describe_pod(pod)}")
                return None
            if reason and pod.status.reason != reason:
                raise HamiE2EFailure(
                    f"Pod {pod.metadata.name} failed with reason {pod.status.reason!r}, expected {reason!r}. "
                    f"{describe_pod(pod)}"
                )
            return pod.status.message or ""

        return self._wait_for_pod(name, namespace, timeout, "Failure", condition)

    @keyword(tags=("Pod", "Wait"))
    def wait_for_pod_deleted(
        self, name: str | None = None, namespace: str | None = None, timeout: timedelta | None = None
    ) -> None:
        """Waits until the pod no longer exists.

        Example:
        | `Wait For Pod Deleted`    small
        """
        self._wait_for_pod(name, namespace, timeout, "Deletion", lambda pod: True if pod is None else None)

    @keyword(tags=("Pod", "Wait", "HAMi"))
    def wait_for_pod_pending_with_reason(
        self,
        name: str | None = None,
        reason: str = "FilteringFailed",
        message: str | None = None,
        namespace: str | None = None,
        timeout: timedelta | None = None,
    ) -> str:
        """Waits for an event ``reason`` (with ``message`` in its text) on a pod that stays ``Pending`` unbound.

        | =Argument= | =Description= |
        | ``reason`` | Exact event reason, e.g. ``FilteringFailed`` (HAMi) or ``FailedScheduling`` (kube-scheduler). |
        | ``message`` | Substring of the event message; ``GLOB:`` and ``REGEXP:`` prefixes work as in `Run Keyword And Expect Error`. |

        Returns the matching event message. Fails if the pod is bound to a node or runs.

        Example:
        | `Wait For Pod Pending With Reason`    greedy    FilteringFailed    CardInsufficientMemory
        """
        pod_name, ns = self.pod_name(name), self.namespace(namespace)
        found = self.wait_for_pod_event(pod_name, ns, reason, message, timeout)
        pod = self.read_pod(pod_name, ns)
        if pod.status.phase != "Pending" or pod.spec.node_name:
            raise HamiE2EFailure(
                f"Pod {ns}/{pod_name} got event {reason} ({found}) but is not Pending and unbound. {describe_pod(pod)}"
            )
        logger.info(f"Pod {ns}/{pod_name} is Pending: {reason}: {found}")
        return found

    # ============================================================================================ state

    @keyword(tags=("Pod", "Assertion"))
    def pod_phase_should_be(
        self, name: str | None, phase: str, namespace: str | None = None, message: str | None = None
    ) -> None:
        """Fails unless the pod's phase is ``phase`` now (no waiting; see `Wait For Pod Running`).

        Example:
        | `Pod Phase Should Be`    neighbour    Running
        """
        pod = self.read_pod(self.pod_name(name), self.namespace(namespace))
        if pod.status.phase != phase:
            raise self.fail(f"Pod {pod.metadata.name} phase is {pod.status.phase}, expected {phase}. "
                            f"{describe_pod(pod)}", message)

    @keyword(tags=("Pod", "Assertion"))
    def pod_restart_count_should_be(
        self, name: str | None = None, expected: int = 0, namespace: str | None = None
    ) -> None:
        """Fails unless the sum of the pod's container restart counts is ``expected`` (default 0).

        Example:
        | `Pod Restart Count Should Be`    long-running    0
        """
        pod = self.read_pod(self.pod_name(name), self.namespace(namespace))
        counts = {c.name: c.restart_count for c in pod.status.container_statuses or []}
        if sum(counts.values()) != expected:
            raise HamiE2EFailure(
                f"Pod {pod.metadata.name} restarted {sum(counts.values())} times {counts}, expected {expected}."
            )

    @keyword(tags=("Pod",))
    def get_pod_node(self, name: str | None = None, namespace: str | None = None) -> str:
        """Returns ``spec.nodeName`` of the pod (empty while unscheduled).

        Example:
        | ${node} =    `Get Pod Node`    small
        """
        return self.read_pod(self.pod_name(name), self.namespace(namespace)).spec.node_name or ""

    @keyword(tags=("Pod",))
    def get_pod_names(self, namespace: str | None = None) -> list[str]:
        """Returns the names of the pods in the namespace (default: the test namespace), sorted.

        Example:
        | @{pods} =    `Get Pod Names`
        """
        ns = self.namespace(namespace)
        items = self.ctx.core.list_namespaced_pod(ns).items
        return sorted(p.metadata.name for p in items)

    # ============================================================================================ exec, logs

    @keyword(tags=("Pod", "Exec"))
    def exec_in_pod(
        self,
        name: str | None,
        command: list[str] | str,
        container: str | None = None,
        namespace: str | None = None,
        timeout: timedelta | None = None,
        expected_rc: int | None = 0,
    ) -> ExecResult:
        """Runs ``command`` in a container and returns its exit status, stdout and stderr separately.

        | =Argument= | =Description= |
        | ``command`` | A list (``@{cmd}``) or a string, which runs through ``/bin/sh -c``. |
        | ``container`` | Default: the pod's first container. |
        | ``expected_rc`` | Fails unless the exit status is this (default 0); ``None`` accepts any. |

        Uses the Kubernetes exec stream (``v5.channel.k8s.io``, falling back to v4) and reads the exit status from
        the error channel. The returned object has ``rc``, ``stdout``, ``stderr`` and ``error`` (the server's
        status text when the command could not start). Output is logged at INFO.

        Example:
        | ${result} =    `Exec In Pod`    small    nvidia-smi -L
        | Should Contain    ${result.stdout}    GPU-
        """
        pod_name, ns = self.pod_name(name), self.namespace(namespace)
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else [str(c) for c in command]
        seconds = self.ctx.timeout(timeout).total_seconds()
        result = self._exec(pod_name, ns, argv, container, seconds)
        logger.info(
            f"exec in {ns}/{pod_name}{'/' + container if container else ''}: {argv}\nrc={result.rc}"
            f"{' (' + result.error + ')' if result.error else ''}\n--- stdout ---\n{result.stdout}"
            f"\n--- stderr ---\n{result.stderr}"
        )
        if expected_rc is not None and result.rc != expected_rc:
            raise HamiE2EFailure(
                f"Command {argv} in pod {ns}/{pod_name} exited with {result.rc}, expected {expected_rc}."
                f"{' ' + result.error if result.error else ''} stderr: {result.stderr.strip()[-500:]!r}"
            )
        return result

    def _exec(self, pod: str, namespace: str, argv: list[str], container: str | None, seconds: float) -> ExecResult:
        """To ease unit testing: the only place that opens an exec stream."""
        from kubernetes.stream import stream

        kwargs: dict[str, Any] = dict(command=argv, stderr=True, stdin=False, stdout=True, tty=False)
        if container:
            kwargs["container"] = container
        client = stream(
            self.ctx.core.connect_get_namespaced_pod_exec, pod, namespace, _preload_content=False, **kwargs
        )
        stdout, stderr = [], []
        deadline = time.monotonic() + seconds
        try:
            while client.is_open() and time.monotonic() < deadline:
                client.update(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                stdout.append(client.read_channel(STDOUT_CHANNEL))
                stderr.append(client.read_channel(STDERR_CHANNEL))
            timed_out = client.is_open()
            stdout.append(client.read_channel(STDOUT_CHANNEL))
            stderr.append(client.read_channel(STDERR_CHANNEL))
            status_text = client.read_channel(ERROR_CHANNEL)
        finally:
            client.close()
        if timed_out:
            return ExecResult(argv, 124, "".join(stdout), "".join(stderr), f"timed out after {human(seconds)}")
        rc, error = parse_exec_status(status_text)
        return ExecResult(argv, rc, "".join(stdout), "".join(stderr), error)

    @keyword(tags=("Pod", "Logs"))
    def get_pod_logs(
        self,
        name: str | None = None,
        container: str | None = None,
        namespace: str | None = None,
        previous: bool = False,
        tail_lines: int | None = None,
    ) -> str:
        """Returns the logs of a container (stdout and stderr as kubelet stores them).

        Example:
        | ${logs} =    `Get Pod Logs`    probe    previous=True
        """
        from kubernetes.client.exceptions import ApiException

        pod_name, ns = self.pod_name(name), self.namespace(namespace)
        kwargs: dict[str, Any] = {"previous": previous}
        if container:
            kwargs["container"] = container
        if tail_lines is not None:
            kwargs["tail_lines"] = tail_lines
        try:
            return self.ctx.core.read_namespaced_pod_log(pod_name, ns, **kwargs)
        except ApiException as error:
            where = f"{ns}/{pod_name}" + (f"/{container}" if container else "")
            raise HamiE2EFailure(f"Reading the logs of {where} failed: {api_error_text(error)}") from None

    # ============================================================================================ delete

    @keyword(tags=("Pod",))
    def delete_pod(
        self,
        name: str | None = None,
        namespace: str | None = None,
        wait: bool = True,
        timeout: timedelta | None = None,
        grace_period: int = 0,
    ) -> None:
        """Deletes the pod and, by default, waits until it is gone.

        Example:
        | `Delete Pod`    neighbour-1
        """
        from kubernetes.client.exceptions import ApiException

        pod_name, ns = self.pod_name(name), self.namespace(namespace)
        try:
            self.ctx.core.delete_namespaced_pod(pod_name, ns, grace_period_seconds=grace_period)
        except ApiException as error:
            if error.status != 404:
                raise HamiE2EFailure(f"Deleting pod {ns}/{pod_name} failed: {api_error_text(error)}") from None
        if wait:
            self.wait_for_pod_deleted(pod_name, ns, timeout)

    # ============================================================================================ HAMi-core probes

    @keyword("Allocate GPU Memory In Pod", tags=("Pod", "Exec", "HAMi"))
    def allocate_gpu_memory_in_pod(
        self,
        name: str | None,
        mib: int,
        container: str | None = None,
        namespace: str | None = None,
        python: str = "python3",
        timeout: timedelta | None = None,
    ) -> ExecResult:
        """Allocates ``mib`` MiB of device memory inside the container; returns the `Exec In Pod` result.

        The probe is the one `Configure Workload Defaults` chose: PyTorch (the image must have PyTorch with CUDA,
        ``${PYTORCH_IMAGE}``) or, on the sandbox, ``gpu-workload alloc <mib>`` (CUDA driver API). Any exit status
        is accepted; use `GPU Memory Allocation Should Succeed` or `GPU Memory Allocation Should Fail With HAMi
        OOM` to assert.

        Example:
        | ${result} =    `Allocate GPU Memory In Pod`    probe    2500
        """
        if self.ctx.workload.allocation_probe == "gpu-workload":
            argv = ["gpu-workload", "alloc", str(mib)]
        else:
            argv = [python, "-c", ALLOCATION_PROBE, str(mib)]
        return self.exec_in_pod(name, argv, container, namespace, timeout, expected_rc=None)

    @keyword("GPU Memory Allocation Should Succeed", tags=("Pod", "Exec", "HAMi", "Assertion"))
    def gpu_memory_allocation_should_succeed(
        self, name: str | None, mib: int, container: str | None = None, namespace: str | None = None
    ) -> None:
        """Fails unless allocating ``mib`` MiB in the container works (exit 0, no HAMi-core OOM line).

        Example:
        | `GPU Memory Allocation Should Succeed`    probe    1000
        """
        result = self.allocate_gpu_memory_in_pod(name, mib, container, namespace)
        if result.rc != 0 or find_oom_events(result.stderr + "\n" + result.stdout):
            raise HamiE2EFailure(
                f"Allocating {mib} MiB in pod {self.pod_name(name)} failed (rc={result.rc}); expected success "
                f"below the limit. stderr: {result.stderr.strip()[-800:]!r}"
            )

    @keyword("GPU Memory Allocation Should Fail With HAMi OOM", tags=("Pod", "Exec", "HAMi", "Assertion"))
    def gpu_memory_allocation_should_fail_with_hami_oom(
        self,
        name: str | None,
        mib: int,
        limit_mib: int | None = None,
        container: str | None = None,
        namespace: str | None = None,
    ) -> None:
        """Fails unless allocating ``mib`` MiB fails with HAMi-core's ``Device <n> OOM <requested> / <limit>`` line.

        With ``limit_mib`` the ``<limit>`` bytes in that line must equal ``limit_mib`` × 1048576, i.e. HAMi-core
        enforced exactly the pod's ``gpumem``.

        Example:
        | `GPU Memory Allocation Should Fail With HAMi OOM`    probe    4000    limit_mib=3000
        """
        result = self.allocate_gpu_memory_in_pod(name, mib, container, namespace)
        events = find_oom_events(result.stderr + "\n" + result.stdout)
        pod = self.pod_name(name)
        if result.rc == 0 or not events:
            raise HamiE2EFailure(
                f"Allocating {mib} MiB in pod {pod} gave rc={result.rc} and "
                f"{'an' if events else 'no'} HAMi-core OOM line; expected a failure with "
                f"'[HAMI-core ERROR … Device <n> OOM …]'. stderr: {result.stderr.strip()[-800:]!r}"
            )
        limit = events[0].limit_bytes
        if limit_mib is not None and limit != limit_mib * 1048576:
            raise HamiE2EFailure(
                f"HAMi-core in pod {pod} enforced a limit of {limit} bytes ({limit / 1048576:g} MiB), "
                f"expected {limit_mib} MiB ({limit_mib * 1048576} bytes)."
            )


def parse_exec_status(text: str) -> tuple[int, str]:
    """Exit status from the exec error channel (a ``metav1.Status``); returns ``(rc, error text)``.

    ``Success`` is 0; ``NonZeroExitCode`` carries the status in ``details.causes[reason=ExitCode]``; kwok says
    ``InternalError`` with a message ending in ``exit status <n>``. A status without an exit code (e.g. the
    executable was not found) gives rc -1 and the server's message.
    """
    if not text or not text.strip():
        return -1, "the exec stream ended without an exit status"
    try:
        status = yaml.safe_load(text)
    except yaml.YAMLError:
        return -1, text.strip()
    if not isinstance(status, dict):
        return -1, text.strip()
    if status.get("status") == "Success":
        return 0, ""
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message")), ""
            except (TypeError, ValueError):
                break
    message = str(status.get("message") or text.strip())
    # kwok (the sandbox's kubelet) reports a non-zero exit as InternalError "... exit status <n>".
    exited = re.search(r"exit status (\d+)\s*$", message)
    if exited:
        return int(exited.group(1)), ""
    return -1, message
