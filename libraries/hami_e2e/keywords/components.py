"""Keywords on HAMi's running components: readiness, restarts and images of the scheduler and device plugin."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from robot.api import logger
from robot.api.deco import keyword

from ..core.component import LibraryComponent
from ..core.context import chart_fullname
from ..core.errors import HamiE2EFailure


def wait_for_components(
    component: LibraryComponent,
    timeout: timedelta | None,
    release: str | None,
    namespace: str | None,
    message: str | None = None,
) -> None:
    """Waits until the release's scheduler Deployment and device-plugin DaemonSet are rolled out (see `Wait Until
    HAMi Components Are Ready`); also used by the Helm keywords after an install, upgrade or rollback."""
    release, namespace = component.hami_release(release, namespace)
    fullname = chart_fullname(release)
    deadline = component.ctx.timeout(timeout)
    component.watch_until(
        component.ctx.apps.list_namespaced_deployment,
        lambda items: True if items and _deployment_ready(items[0]) else None,
        deadline,
        f"Rollout of Deployment {namespace}/{fullname}-scheduler",
        lambda items: _deployment_state(items[0]) if items else "The Deployment does not exist.",
        message=message,
        namespace=namespace,
        field_selector=f"metadata.name={fullname}-scheduler",
    )
    component.watch_until(
        component.ctx.apps.list_namespaced_daemon_set,
        lambda items: True if items and _daemonset_ready(items[0]) else None,
        deadline,
        f"Rollout of DaemonSet {namespace}/{fullname}-device-plugin",
        lambda items: _daemonset_state(items[0]) if items else "The DaemonSet does not exist.",
        message=message,
        namespace=namespace,
        field_selector=f"metadata.name={fullname}-device-plugin",
    )
    logger.info(f"HAMi release {release}: scheduler and device plugin are ready")


class ComponentKeywords(LibraryComponent):
    """The scheduler Deployment and device-plugin DaemonSet of the HAMi release."""

    @keyword("Wait Until HAMi Components Are Ready", tags=("HAMi", "Wait"))
    def wait_until_hami_components_are_ready(
        self,
        timeout: timedelta | None = None,
        release: str | None = None,
        namespace: str | None = None,
        message: str | None = None,
    ) -> None:
        """Waits up to ``timeout`` until the scheduler Deployment and the device-plugin DaemonSet of the release are
        fully rolled out.

        Deployment ``<fullname>-scheduler``: updated, ready and available replicas equal the wanted replicas.
        DaemonSet ``<fullname>-device-plugin``: at least one node scheduled (nodes need label ``gpu=on``), and
        every scheduled pod updated and ready. Uses Kubernetes watches; fails with the last status seen.

        Example:
        | `Wait Until HAMi Components Are Ready`    timeout=5 min
        """
        wait_for_components(self, timeout, release, namespace, message)

    @keyword("Wait Until HAMi Scheduler Service Has Endpoints", tags=("HAMi", "Wait"))
    def wait_until_hami_scheduler_service_has_endpoints(
        self,
        timeout: timedelta | None = None,
        release: str | None = None,
        namespace: str | None = None,
        message: str | None = None,
    ) -> None:
        """Waits up to ``timeout`` until Service ``<fullname>-scheduler`` has a ready endpoint (its leader-labelled
        pod).

        Until then the webhook fails open (its ``failurePolicy`` is ``Ignore``) and GPU pods created meanwhile
        bypass HAMi for good, so create GPU pods only after this.

        Example:
        | `Wait Until HAMi Scheduler Service Has Endpoints`    timeout=1 min
        """
        release, namespace = self.hami_release(release, namespace)
        service = f"{chart_fullname(release)}-scheduler"

        def ready(items: list[Any]) -> bool | None:
            for endpoint_slice in items:
                for endpoint in endpoint_slice.endpoints or []:
                    if endpoint.conditions is None or endpoint.conditions.ready is not False:
                        return True
            return None

        self.watch_until(
            self.ctx.discovery.list_namespaced_endpoint_slice,
            ready,
            self.ctx.timeout(timeout),
            f"A ready endpoint of Service {namespace}/{service}",
            lambda items: f"{len(items)} EndpointSlice(s), none with a ready endpoint.",
            message=message,
            namespace=namespace,
            label_selector=f"kubernetes.io/service-name={service}",
        )

    def _component_selector(self, component: str, release: str) -> str:
        return f"app.kubernetes.io/component={component},app.kubernetes.io/instance={release}"

    def _restart(self, component: str, node: str | None, timeout: timedelta | None) -> list[str]:
        release, namespace = self.hami_release(None, None)
        selector = self._component_selector(component, release)
        pods = self.ctx.core.list_namespaced_pod(namespace, label_selector=selector).items
        if node:
            pods = [p for p in pods if p.spec.node_name == node]
        if not pods:
            raise HamiE2EFailure(
                f"No {component} pod of release {release} in {namespace}"
                + (f" on node {node}" if node else "")
                + f" (selector {selector})."
            )
        old = {p.metadata.uid for p in pods}
        for pod in pods:
            self.ctx.core.delete_namespaced_pod(pod.metadata.name, namespace)
            logger.info(f"Deleted {namespace}/{pod.metadata.name} to restart {component}")

        def replaced(items: list[Any]) -> list[str] | None:
            fresh = [p for p in items if p.metadata.uid not in old and (not node or p.spec.node_name == node)]
            stale = [p for p in items if p.metadata.uid in old]
            if not stale and len(fresh) >= len(old) and all(_pod_ready(p) for p in fresh):
                return [p.metadata.name for p in fresh]
            return None

        return self.watch_until(
            self.ctx.core.list_namespaced_pod,
            replaced,
            self.ctx.timeout(timeout),
            f"Restart of {component}" + (f" on node {node}" if node else ""),
            lambda items: "Pods: " + ", ".join(f"{p.metadata.name} {p.status.phase}" for p in items) + ".",
            namespace=namespace,
            label_selector=selector,
        )

    @keyword("Restart HAMi Scheduler", tags=("HAMi", "Wait"))
    def restart_hami_scheduler(self, timeout: timedelta | None = None) -> list[str]:
        """Waits up to ``timeout`` until the HAMi scheduler pod(s), deleted here, are replaced by Ready ones; returns
        their names.

        Example:
        | `Restart HAMi Scheduler`    timeout=3 min
        """
        return self._restart(self.ctx.hami.scheduler_component, None, timeout)

    @keyword("Restart HAMi Device Plugin", tags=("HAMi", "Wait", "Node"))
    def restart_hami_device_plugin(self, node: str | None = None, timeout: timedelta | None = None) -> list[str]:
        """Waits up to ``timeout`` until the HAMi device-plugin pod(s), deleted here (the one on ``node``, or all),
        are replaced by Ready ones; returns their names.

        Example:
        | `Restart HAMi Device Plugin`    ${node}
        """
        return self._restart(self.ctx.hami.device_plugin_component, node, timeout)

    @keyword("Get HAMi Component Images", tags=("HAMi",))
    def get_hami_component_images(self, release: str | None = None, namespace: str | None = None) -> dict[str, str]:
        """Returns ``{<workload>/<container>: <image>}`` for the scheduler Deployment and device-plugin DaemonSet.

        Example:
        | &{images} =    `Get HAMi Component Images`
        """
        release, namespace = self.hami_release(release, namespace)
        fullname = chart_fullname(release)
        images: dict[str, str] = {}
        for reader, name in (
            (self.ctx.apps.read_namespaced_deployment, f"{fullname}-scheduler"),
            (self.ctx.apps.read_namespaced_daemon_set, f"{fullname}-device-plugin"),
        ):
            workload = reader(name, namespace)
            for container in workload.spec.template.spec.containers:
                images[f"{name}/{container.name}"] = container.image
        return images


def _pod_ready(pod: Any) -> bool:
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
    )


def _deployment_ready(deployment: Any) -> bool:
    wanted = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    status = deployment.status
    return (
        (status.observed_generation or 0) >= (deployment.metadata.generation or 0)
        and (status.updated_replicas or 0) == wanted
        and (status.ready_replicas or 0) == wanted
        and (status.available_replicas or 0) == wanted
        and (status.replicas or 0) == wanted
    )


def _deployment_state(deployment: Any) -> str:
    s = deployment.status
    conditions = "; ".join(f"{c.type}={c.status} {c.reason}: {c.message}" for c in s.conditions or [])
    return (
        f"Deployment {deployment.metadata.name}: wanted {deployment.spec.replicas}, updated {s.updated_replicas}, "
        f"ready {s.ready_replicas}, available {s.available_replicas}. {conditions}"
    )


def _daemonset_ready(daemonset: Any) -> bool:
    s = daemonset.status
    desired = s.desired_number_scheduled or 0
    return (
        desired > 0
        and (s.observed_generation or 0) >= (daemonset.metadata.generation or 0)
        and (s.updated_number_scheduled or 0) == desired
        and (s.number_ready or 0) == desired
    )


def _daemonset_state(daemonset: Any) -> str:
    s = daemonset.status
    hint = ""
    if not s.desired_number_scheduled:
        selector = daemonset.spec.template.spec.node_selector or {}
        hint = f" No node matches its nodeSelector {selector} (label GPU nodes, e.g. gpu=on)."
    return (
        f"DaemonSet {daemonset.metadata.name}: desired {s.desired_number_scheduled}, updated "
        f"{s.updated_number_scheduled}, ready {s.number_ready}.{hint}"
    )
