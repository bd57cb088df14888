"""Keywords that create, wait for, inspect and delete pods."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml
from robot.api import logger
from robot.api.deco import keyword

from ..core.component import LibraryComponent
from ..core.describe import api_error_text, describe_pod
from ..core.errors import HamiE2EFailure
from ..parsers.events import format_event

T = TypeVar("T")


class PodKeywords(LibraryComponent):
    """Pods: create from a spec or manifest, wait for their phase and events, read their state and logs, delete."""

    # ============================================================================================ create

    @keyword(tags=("Pod",))
    def create_pod_from_spec(self, spec: dict[str, Any], namespace: str | None = None) -> str:
        """Creates the pod described by ``spec`` (a dict, e.g. from `Build GPU Pod Spec`) and returns its name.

        Does not wait; use `Wait Until Pod Is Running` and friends. A refusal by the API server or by an admission
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
            head, _, text = api_error_text(error).partition(": ")
            raise HamiE2EFailure(f"Creating pod {ns}/{name} was refused ({head}): {text}") from None
        self.ctx.last_pod = created.metadata.name
        logger.info(f"Created pod {ns}/{created.metadata.name}")
        return str(created.metadata.name)

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
        pod: str | None,
        namespace: str | None,
        timeout: timedelta | None,
        what: str,
        condition: Callable[[Any], T | None],
        message: str | None,
    ) -> T:
        pod_name, ns = self.pod_name(pod), self.namespace(namespace)
        last: dict[str, Any] = {}

        def check(items: list[Any]) -> T | None:
            obj = items[0] if items else None
            last["pod"] = obj
            return condition(obj)

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
            message=message,
            namespace=ns,
            field_selector=f"metadata.name={pod_name}",
        )

    @keyword(tags=("Pod", "Wait"))
    def wait_until_pod_is_running(
        self,
        pod: str | None = None,
        namespace: str | None = None,
        timeout: timedelta | None = None,
        message: str | None = None,
    ) -> str:
        """Waits up to ``timeout`` (Kubernetes watch) until the pod is ``Running``; returns the node it runs on.

        | =Argument= | =Description= |
        | ``pod`` | Pod name; default: the last pod this test created. |
        | ``namespace`` | Default: the test namespace. |
        | ``timeout`` | Default: the library's ``default_timeout`` (``${POD_START_TIMEOUT}`` in resources). |
        | ``message`` | Replaces the generated failure text. |

        Fails at once if the pod ends ``Failed`` or ``Succeeded``; on timeout the message gives the phase, the
        scheduling condition, container states and the latest events.

        Example:
        | ${node} =    `Wait Until Pod Is Running`    small    timeout=3 min
        """

        def condition(obj: Any) -> str | None:
            if obj is None:
                return None
            phase = obj.status.phase
            if phase == "Running":
                return str(obj.spec.node_name)
            if phase in ("Failed", "Succeeded"):
                raise HamiE2EFailure(f"Expected pod {obj.metadata.name} to be Running. {describe_pod(obj)}")
            return None

        return self._wait_for_pod(pod, namespace, timeout, "Running", condition, message)

    @keyword(tags=("Pod", "Wait"))
    def wait_until_pod_has_succeeded(
        self,
        pod: str | None = None,
        namespace: str | None = None,
        timeout: timedelta | None = None,
        message: str | None = None,
    ) -> None:
        """Waits up to ``timeout`` until the pod's phase is ``Succeeded`` (every container exited 0 and none is
        restarted); fails at once if it is ``Failed``.

        Example:
        | `Wait Until Pod Has Succeeded`    probe    timeout=5 min
        """

        def condition(obj: Any) -> bool | None:
            if obj is not None and obj.status.phase == "Succeeded":
                return True
            if obj is not None and obj.status.phase == "Failed":
                raise HamiE2EFailure(f"Expected pod {obj.metadata.name} to succeed. {describe_pod(obj)}")
            return None

        self._wait_for_pod(pod, namespace, timeout, "Success", condition, message)

    def _wait_for_pod_deleted(self, pod: str, namespace: str, timeout: timedelta | None) -> None:
        self._wait_for_pod(pod, namespace, timeout, "Deletion", lambda obj: True if obj is None else None, None)

    @keyword(tags=("Pod", "Wait", "HAMi"))
    def wait_until_pod_is_pending_with_reason(
        self,
        pod: str | None = None,
        reason: str = "FilteringFailed",
        text: str | None = None,
        namespace: str | None = None,
        timeout: timedelta | None = None,
        message: str | None = None,
    ) -> str:
        """Waits up to ``timeout`` for an event ``reason`` (with ``text`` in its message) on a pod that stays
        ``Pending`` unbound; returns the event's message.

        | =Argument= | =Description= |
        | ``reason`` | Exact event reason, e.g. ``FilteringFailed`` (HAMi) or ``FailedScheduling`` (kube-scheduler). |
        | ``text`` | Part of the event message; ``GLOB:`` and ``REGEXP:`` prefixes work as in `Run Keyword And Expect Error`. |
        | ``message`` | Replaces the generated failure text. |

        Fails if the pod is bound to a node or runs.

        Example:
        | `Wait Until Pod Is Pending With Reason`    greedy    FilteringFailed    CardInsufficientMemory
        """
        pod_name, ns = self.pod_name(pod), self.namespace(namespace)
        found = self.wait_for_pod_event(pod_name, ns, reason, text, timeout, message)
        obj = self.read_pod(pod_name, ns)
        if obj.status.phase != "Pending" or obj.spec.node_name:
            raise self.fail(
                f"Pod {ns}/{pod_name} got event {reason} ({found}) but is not Pending and unbound. {describe_pod(obj)}",
                message,
            )
        logger.info(f"Pod {ns}/{pod_name} is Pending: {reason}: {found}")
        return found

    @keyword(tags=("Pod", "Wait", "HAMi"))
    def wait_until_pod_has_event(
        self,
        pod: str | None = None,
        reason: str = "",
        text: str | None = None,
        namespace: str | None = None,
        timeout: timedelta | None = None,
        message: str | None = None,
    ) -> str:
        """Waits up to ``timeout`` until the pod has an event with ``reason`` whose message contains ``text``;
        returns that message.

        ``text`` accepts ``GLOB:`` and ``REGEXP:`` prefixes. HAMi's events: ``FilteringSucceed``
        (``find fit node(<node>), …``), ``FilteringFailed``, ``BindingSucceed``
        (``Successfully binding node [<node>] to <ns>/<pod>``), ``BindingFailed``. ``message`` replaces the
        generated failure text.

        Example:
        | `Wait Until Pod Has Event`    small    BindingSucceed    Successfully binding node [${node}]
        """
        return self.wait_for_pod_event(self.pod_name(pod), self.namespace(namespace), reason, text, timeout, message)

    # ============================================================================================ state

    @keyword(tags=("Pod", "Assertion"))
    def pod_phase_should_be(
        self, pod: str | None, phase: str, namespace: str | None = None, message: str | None = None
    ) -> None:
        """Fails unless the pod's phase is ``phase`` now (no waiting; see `Wait Until Pod Is Running`).

        Example:
        | `Pod Phase Should Be`    neighbour    Running
        """
        obj = self.read_pod(self.pod_name(pod), self.namespace(namespace))
        if obj.status.phase != phase:
            raise self.fail(
                f"Pod {obj.metadata.name} phase is {obj.status.phase}, expected {phase}. {describe_pod(obj)}", message
            )

    @keyword(tags=("Pod", "Assertion"))
    def pod_restart_count_should_be(
        self, pod: str | None = None, expected: int = 0, namespace: str | None = None, message: str | None = None
    ) -> None:
        """Fails unless the sum of the pod's container restart counts is ``expected`` (default 0).

        Example:
        | `Pod Restart Count Should Be`    long-running    0
        """
        obj = self.read_pod(self.pod_name(pod), self.namespace(namespace))
        counts = {c.name: c.restart_count for c in obj.status.container_statuses or []}
        if sum(counts.values()) != expected:
            raise self.fail(
                f"Pod {obj.metadata.name} restarted {sum(counts.values())} times {counts}, expected {expected}.",
                message,
            )

    @keyword(tags=("Pod",))
    def get_pod_node(self, pod: str | None = None, namespace: str | None = None) -> str:
        """Returns ``spec.nodeName`` of the pod (empty while unscheduled).

        Example:
        | ${node} =    `Get Pod Node`    small
        """
        return str(self.read_pod(self.pod_name(pod), self.namespace(namespace)).spec.node_name or "")

    @keyword(tags=("Pod", "Logs"))
    def get_pod_logs(
        self,
        pod: str | None = None,
        container: str | None = None,
        namespace: str | None = None,
        previous: bool = False,
        tail_lines: int | None = None,
    ) -> str:
        """Returns the logs of a container (stdout and stderr as kubelet stores them).

        ``container`` defaults to the pod's only container; ``previous`` reads the run before the last restart;
        ``tail_lines`` keeps only the last lines.

        Example:
        | ${logs} =    `Get Pod Logs`    probe    previous=True
        """
        from kubernetes.client.exceptions import ApiException

        pod_name, ns = self.pod_name(pod), self.namespace(namespace)
        kwargs: dict[str, Any] = {"previous": previous}
        if container:
            kwargs["container"] = container
        if tail_lines is not None:
            kwargs["tail_lines"] = tail_lines
        try:
            return str(self.ctx.core.read_namespaced_pod_log(pod_name, ns, **kwargs))
        except ApiException as error:
            where = f"{ns}/{pod_name}" + (f"/{container}" if container else "")
            raise HamiE2EFailure(f"Reading the logs of {where} failed: {api_error_text(error)}") from None

    # ============================================================================================ delete

    @keyword(tags=("Pod", "Wait"))
    def delete_pod(
        self,
        pod: str | None = None,
        namespace: str | None = None,
        wait: bool = True,
        timeout: timedelta | None = None,
        grace_period: int = 0,
    ) -> None:
        """Waits up to ``timeout`` until the pod, deleted here, is gone; with ``wait=False`` only deletes it.

        ``grace_period`` is the pod's termination grace period in seconds (default 0: stop at once).

        Example:
        | `Delete Pod`    neighbour-1
        """
        from kubernetes.client.exceptions import ApiException

        pod_name, ns = self.pod_name(pod), self.namespace(namespace)
        try:
            self.ctx.core.delete_namespaced_pod(pod_name, ns, grace_period_seconds=grace_period)
        except ApiException as error:
            if error.status != 404:
                raise HamiE2EFailure(f"Deleting pod {ns}/{pod_name} failed: {api_error_text(error)}") from None
        if wait:
            self._wait_for_pod_deleted(pod_name, ns, timeout)
