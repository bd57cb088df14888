"""Keywords that install, upgrade, roll back, uninstall and restart HAMi through the ``helm`` CLI and the kube API."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from robot.api import logger
from robot.api.deco import keyword

from ..core.component import LibraryComponent
from ..core.context import CommandResult
from ..core.errors import HamiE2EFailure, HelmFailure

UninstallAfter = Literal["test", "suite", "run", "never"]


@dataclass
class InstalledRelease:
    """What `Install HAMi Chart` installed, so later keywords and the cleanup know it."""

    release: str
    namespace: str
    chart: str
    version: str | None
    values_files: list[str] = field(default_factory=list)
    set_values: dict[str, str] = field(default_factory=dict)


def _is_local_chart(chart: str) -> bool:
    return not chart.startswith("oci://") and os.path.exists(chart)


class HelmKeywords(LibraryComponent):
    """HAMi's Helm release and the readiness of its components."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.installed: dict[tuple[str, str], InstalledRelease] = {}
        self._major: int | None = None

    # ============================================================================================ plumbing

    def _helm(self, args: list[str], timeout: timedelta | None = None, check: bool = True) -> CommandResult:
        """Runs ``helm <args>`` against the library's kubeconfig/context; logs the command and both streams."""
        command = [self.ctx.helm_binary, *args, *self.ctx.kube_args()]
        seconds = self.ctx.timeout(timeout).total_seconds() + 30
        logger.info("Running: " + " ".join(command))
        result = self.ctx.runner(command, seconds)
        logger.info(f"rc={result.rc}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")
        if check and result.rc != 0:
            raise self._failure(f"`helm {' '.join(args[:2])}` failed (rc={result.rc})", result)
        return result

    def _failure(self, headline: str, result: CommandResult | None) -> HelmFailure:
        parts = [headline + "."]
        if result is not None:
            parts.append(f"helm stderr: {result.stderr.strip() or '(empty)'}")
        parts.append("helm status: " + self.ctx.helm_status_text())
        return HelmFailure("\n".join(parts))

    def _helm_major(self) -> int:
        """The helm client's major version (3 or 4), asked once."""
        if self._major is None:
            match = re.search(r"v(\d+)\.", self.get_helm_version())
            self._major = int(match.group(1)) if match else 3
        return self._major

    def _release_record(self, release: str, namespace: str) -> dict[str, Any] | None:
        # helm 3 lists only deployed and failed releases unless --all; helm 4 lists every status and has no --all
        every_status = ["--all"] if self._helm_major() < 4 else []
        result = self._helm(["list", "-n", namespace, *every_status, "--filter", f"^{release}$", "-o", "json"])
        try:
            rows = json.loads(result.stdout or "[]")
        except json.JSONDecodeError:
            raise HelmFailure(f"`helm list` printed no JSON: {result.stdout[:300]!r}") from None
        return next((r for r in rows if r.get("name") == release), None)

    def _target(self, release: str | None, namespace: str | None) -> tuple[str, str]:
        return release or self.ctx.hami.release, namespace or self.ctx.hami.namespace

    # ============================================================================================ helm itself

    @keyword(tags=("Helm",))
    def get_helm_version(self) -> str:
        """Returns the helm client version (``helm version --short``); fails with a clear message if helm is missing.

        The binary is the ``helm_binary`` library import argument (``helm`` on PATH by default).

        Example:
        | ${version} =    `Get Helm Version`
        """
        result = self.ctx.runner([self.ctx.helm_binary, "version", "--short"], 60)
        if result.rc != 0:
            raise HamiE2EFailure(
                f"helm is not usable as {self.ctx.helm_binary!r} (rc={result.rc}): {result.stderr.strip()}. "
                "Install helm or set the library argument helm_binary / variable ${HELM_BINARY}."
            )
        return result.stdout.strip()

    @keyword(tags=("Helm",))
    def add_helm_repository(self, name: str, url: str) -> None:
        """Adds (or refreshes) the chart repository ``name`` at ``url`` so charts can be named ``<name>/<chart>``.

        Example:
        | `Add Helm Repository`    hami-charts    https://project-hami.github.io/HAMi/
        """
        self._helm(["repo", "add", name, url, "--force-update"])
        self._helm(["repo", "update", name])

    # ============================================================================================ release

    @keyword("Install HAMi Chart", tags=("Helm", "HAMi"))
    def install_hami_chart(
        self,
        chart: str,
        version: str | None = None,
        release: str | None = None,
        namespace: str | None = None,
        values_files: list[str] | None = None,
        set_values: dict[str, str] | None = None,
        timeout: timedelta | None = None,
        uninstall_after: UninstallAfter = "suite",
        wait_ready: bool = True,
    ) -> None:
        """Installs the HAMi chart as a new release and waits until its components are ready.

        | =Argument= | =Description= |
        | ``chart`` | A repo reference (``hami-charts/hami``, see `Add Helm Repository`), an OCI reference (``oci://…``) or a local path. |
        | ``version`` | Pinned chart version, passed as ``--version`` (for a local path it is checked after install). |
        | ``release``, ``namespace`` | Default: the library import arguments (``hami`` in ``hami-system``). |
        | ``values_files`` | List of values files (``-f``). |
        | ``set_values`` | Dict of ``--set`` values, e.g. ``scheduler.leaderElect: "false"``. |
        | ``timeout`` | For helm (hooks) and for the readiness wait each. |
        | ``uninstall_after`` | ``suite`` (default), ``run``, ``test`` or ``never``: when the library uninstalls what it installed. |
        | ``wait_ready`` | Then run `Wait Until HAMi Components Are Ready`. |

        Fails if the release already exists (uninstall it, or run with ``${HAMI_INSTALL}`` false to test an existing
        installation). Failures carry helm's stderr and ``helm status``.

        Example:
        | `Install HAMi Chart`    hami-charts/hami    version=2.10.0    values_files=${HAMI_VALUES_FILES}
        """
        release, namespace = self._target(release, namespace)
        existing = self._release_record(release, namespace)
        if existing:
            raise HamiE2EFailure(
                f"Helm release {release} already exists in {namespace} (chart {existing.get('chart')}, status "
                f"{existing.get('status')}). Uninstall it first, or set HAMI_INSTALL to false to test it as it is."
            )
        args = ["install", release, chart, "-n", namespace, "--create-namespace"]
        args += self._chart_args(chart, version, values_files, set_values, timeout)
        self.ctx.hami.release, self.ctx.hami.namespace = release, namespace
        self._helm(args, timeout)
        record = InstalledRelease(release, namespace, chart, version, list(values_files or []), dict(set_values or {}))
        self.installed[(release, namespace)] = record
        if uninstall_after != "never":
            self.ctx.track(
                f"helm release {release} in {namespace}",
                lambda: self._helm(["uninstall", release, "-n", namespace, "--timeout", "300s"], timedelta(minutes=5)),
                scope=uninstall_after,
                keepable=True,
            )
        if version and _is_local_chart(chart):
            self.hami_release_chart_version_should_be(version, release, namespace)
        if wait_ready:
            self.wait_until_hami_components_are_ready(timeout, release, namespace)

    def _chart_args(
        self,
        chart: str,
        version: str | None,
        values_files: list[str] | None,
        set_values: dict[str, str] | None,
        timeout: timedelta | None,
    ) -> list[str]:
        args: list[str] = []
        if version and not _is_local_chart(chart):
            args += ["--version", str(version)]
        for path in values_files or []:
            args += ["-f", str(path)]
        for key, value in (set_values or {}).items():
            args += ["--set", f"{key}={value}"]
        args += ["--timeout", f"{int(self.ctx.timeout(timeout).total_seconds())}s"]
        return args

    @keyword("Upgrade HAMi Release", tags=("Helm", "HAMi"))
    def upgrade_hami_release(
        self,
        chart: str | None = None,
        version: str | None = None,
        release: str | None = None,
        namespace: str | None = None,
        values_files: list[str] | None = None,
        set_values: dict[str, str] | None = None,
        reuse_values: bool = True,
        timeout: timedelta | None = None,
        wait_ready: bool = True,
    ) -> int:
        """Runs ``helm upgrade`` on the HAMi release and returns the new revision.

        ``chart`` and ``version`` default to what `Install HAMi Chart` installed; ``reuse_values`` keeps the
        release's values and merges ``values_files``/``set_values`` on top.

        Example:
        | ${revision} =    `Upgrade HAMi Release`    version=${HAMI_CHART_VERSION}
        """
        release, namespace = self._target(release, namespace)
        record = self.installed.get((release, namespace))
        chart = chart or (record.chart if record else None)
        if not chart:
            raise HamiE2EFailure(
                f"No chart given and the library did not install release {release}; pass chart= (and version=)."
            )
        version = version or (record.version if record else None)
        args = ["upgrade", release, chart, "-n", namespace]
        if reuse_values:
            args.append("--reuse-values")
        args += self._chart_args(chart, version, values_files, set_values, timeout)
        self._helm(args, timeout)
        if wait_ready:
            self.wait_until_hami_components_are_ready(timeout, release, namespace)
        return int(self.get_hami_release_status(release, namespace)["revision"])

    @keyword("Rollback HAMi Release", tags=("Helm", "HAMi"))
    def rollback_hami_release(
        self,
        revision: int = 0,
        release: str | None = None,
        namespace: str | None = None,
        timeout: timedelta | None = None,
        wait_ready: bool = True,
    ) -> int:
        """Rolls the HAMi release back to ``revision`` (0: the previous one) and returns the new revision number.

        Example:
        | `Rollback HAMi Release`
        """
        release, namespace = self._target(release, namespace)
        args = ["rollback", release, "-n", namespace, "--timeout", f"{int(self.ctx.timeout(timeout).total_seconds())}s"]
        if revision:
            args.insert(2, str(revision))
        self._helm(args, timeout)
        if wait_ready:
            self.wait_until_hami_components_are_ready(timeout, release, namespace)
        return int(self.get_hami_release_status(release, namespace)["revision"])

    @keyword("Uninstall HAMi Release", tags=("Helm", "HAMi"))
    def uninstall_hami_release(
        self,
        release: str | None = None,
        namespace: str | None = None,
        timeout: timedelta | None = None,
        wait: bool = True,
    ) -> None:
        """Uninstalls the HAMi release; with ``wait`` waits until none of its pods is left.

        The release is forgotten by the library's cleanup (it is already gone).

        Example:
        | `Uninstall HAMi Release`    timeout=3 min
        """
        release, namespace = self._target(release, namespace)
        self._helm(
            ["uninstall", release, "-n", namespace, "--timeout", f"{int(self.ctx.timeout(timeout).total_seconds())}s"],
            timeout,
        )
        self.ctx.untrack(f"helm release {release} in {namespace}")
        self.installed.pop((release, namespace), None)
        if wait:
            selector = f"app.kubernetes.io/instance={release}"
            self.watch_until(
                self.ctx.core.list_namespaced_pod,
                lambda items: True if not items else None,
                self.ctx.timeout(timeout),
                f"Removal of the pods of release {release}",
                lambda items: "Still there: " + ", ".join(p.metadata.name for p in items) + ".",
                namespace=namespace,
                label_selector=selector,
            )

    @keyword("Get HAMi Release Status", tags=("Helm", "HAMi"))
    def get_hami_release_status(self, release: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        """Returns ``name``, ``namespace``, ``revision``, ``status``, ``chart`` and ``app_version`` of the release.

        Fails if the release does not exist.

        Example:
        | &{status} =    `Get HAMi Release Status`
        | Should Be Equal    ${status}[status]    deployed
        """
        release, namespace = self._target(release, namespace)
        record = self._release_record(release, namespace)
        if record is None:
            raise HamiE2EFailure(f"Helm release {release} does not exist in namespace {namespace}.")
        return record

    @keyword("HAMi Release Status Should Be", tags=("Helm", "HAMi", "Assertion"))
    def hami_release_status_should_be(
        self, expected: str = "deployed", release: str | None = None, namespace: str | None = None
    ) -> None:
        """Fails unless the release status is ``expected`` (``deployed``, ``failed``, ``pending-upgrade`` …).

        Example:
        | `HAMi Release Status Should Be`    deployed
        """
        status = self.get_hami_release_status(release, namespace)
        if status.get("status") != expected:
            raise self._failure(f"Release {status.get('name')} is {status.get('status')}, expected {expected}", None)

    @keyword("HAMi Release Chart Version Should Be", tags=("Helm", "HAMi", "Assertion"))
    def hami_release_chart_version_should_be(
        self, version: str, release: str | None = None, namespace: str | None = None
    ) -> None:
        """Fails unless the release runs chart version ``version`` (``helm list`` shows ``hami-<version>``).

        Example:
        | `HAMi Release Chart Version Should Be`    ${HAMI_CHART_VERSION}
        """
        status = self.get_hami_release_status(release, namespace)
        chart = str(status.get("chart", ""))
        if not chart.endswith(f"-{version}"):
            raise HamiE2EFailure(f"Release {status.get('name')} runs chart {chart}, expected version {version}.")

    # ============================================================================================ readiness

    @keyword("Wait Until HAMi Components Are Ready", tags=("HAMi", "Wait"))
    def wait_until_hami_components_are_ready(
        self, timeout: timedelta | None = None, release: str | None = None, namespace: str | None = None
    ) -> None:
        """Waits until the scheduler Deployment and the device-plugin DaemonSet of the release are fully rolled out.

        Deployment ``<fullname>-scheduler``: updated, ready and available replicas equal the wanted replicas.
        DaemonSet ``<fullname>-device-plugin``: at least one node scheduled (nodes need label ``gpu=on``), and
        every scheduled pod updated and ready. Uses Kubernetes watches; fails with the last status seen.

        Example:
        | `Wait Until HAMi Components Are Ready`    timeout=5 min
        """
        release, namespace = self._target(release, namespace)
        fullname = release if "hami" in release else f"{release}-hami"
        deadline = self.ctx.timeout(timeout)
        self.watch_until(
            self.ctx.apps.list_namespaced_deployment,
            lambda items: True if items and _deployment_ready(items[0]) else None,
            deadline,
            f"Rollout of Deployment {namespace}/{fullname}-scheduler",
            lambda items: _deployment_state(items[0]) if items else "The Deployment does not exist.",
            namespace=namespace,
            field_selector=f"metadata.name={fullname}-scheduler",
        )
        self.watch_until(
            self.ctx.apps.list_namespaced_daemon_set,
            lambda items: True if items and _daemonset_ready(items[0]) else None,
            deadline,
            f"Rollout of DaemonSet {namespace}/{fullname}-device-plugin",
            lambda items: _daemonset_state(items[0]) if items else "The DaemonSet does not exist.",
            namespace=namespace,
            field_selector=f"metadata.name={fullname}-device-plugin",
        )
        logger.info(f"HAMi release {release}: scheduler and device plugin are ready")

    @keyword(tags=("Helm", "HAMi"))
    def wait_until_hami_webhook_answers(self, timeout: timedelta | None = None) -> None:
        """Waits up to ``timeout`` until HAMi's webhook mutates a GPU pod: a server-side dry-run create of a pod
        asking for one GPU comes back with ``schedulerName`` set to HAMi's scheduler.

        A ready endpoint is not enough: until the Service routes to the new scheduler pod the webhook fails open
        (``failurePolicy: Ignore``) and a GPU pod created then bypasses HAMi for good. Nothing is created.

        Example:
        | `Wait Until HAMi Webhook Answers`    timeout=1 min
        """
        from kubernetes.client.exceptions import ApiException

        namespace = self.ctx.namespace or "default"
        body = {"metadata": {"generateName": "hami-e2e-webhook-probe-"},
                "spec": {"containers": [{"name": "probe", "image": "hami-e2e/probe", "command": ["true"],
                                         "resources": {"limits": {self.ctx.vendor.gpu: "1"}}}]}}
        deadline = time.monotonic() + self.ctx.timeout(timeout).total_seconds()
        seen = "no answer yet"
        while True:
            try:
                pod = self.ctx.core.create_namespaced_pod(namespace, body, dry_run="All")
                seen = f"schedulerName {pod.spec.scheduler_name!r}"
                if pod.spec.scheduler_name == self.ctx.hami.scheduler_name:
                    return
            except ApiException as error:
                seen = f"API error {error.status}: {error.reason}"
            if time.monotonic() > deadline:
                raise HamiE2EFailure(
                    f"HAMi's webhook did not mutate a dry-run GPU pod in namespace {namespace} within "
                    f"{self.ctx.timeout(timeout)}: expected schedulerName {self.ctx.hami.scheduler_name!r}, last "
                    f"{seen}. Look at the scheduler pod's logs and the API server's 'failing open' messages.")
            time.sleep(self.ctx.poll_interval.total_seconds())

    @keyword("HAMi Scheduler Service Should Have Endpoints", tags=("HAMi", "Wait"))
    def hami_scheduler_service_should_have_endpoints(
        self, timeout: timedelta | None = None, release: str | None = None, namespace: str | None = None
    ) -> None:
        """Waits until Service ``<fullname>-scheduler`` has a ready endpoint (its leader-labelled pod).

        Until then the webhook fails open and GPU pods bypass HAMi (hami-behaviour.md §11), so create GPU pods
        only after this.

        Example:
        | `HAMi Scheduler Service Should Have Endpoints`    timeout=1 min
        """
        release, namespace = self._target(release, namespace)
        service = f"{release if 'hami' in release else release + '-hami'}-scheduler"

        def ready(items: list[Any]):
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
            namespace=namespace,
            label_selector=f"kubernetes.io/service-name={service}",
        )

    # ============================================================================================ restarts

    def _component_selector(self, component: str, release: str) -> str:
        return f"app.kubernetes.io/component={component},app.kubernetes.io/instance={release}"

    def _restart(self, component: str, node: str | None, timeout: timedelta | None) -> list[str]:
        release, namespace = self._target(None, None)
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

        def replaced(items: list[Any]):
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
        """Deletes the HAMi scheduler pod(s) and waits until replacements are Ready; returns their names.

        Example:
        | `Restart HAMi Scheduler`    timeout=3 min
        """
        return self._restart(self.ctx.hami.scheduler_component, None, timeout)

    @keyword("Restart HAMi Device Plugin", tags=("HAMi", "Wait", "Node"))
    def restart_hami_device_plugin(self, node: str | None = None, timeout: timedelta | None = None) -> list[str]:
        """Deletes the HAMi device-plugin pod (on ``node``, or all) and waits until replacements are Ready.

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
        release, namespace = self._target(release, namespace)
        fullname = release if "hami" in release else f"{release}-hami"
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

