"""Keywords that install, upgrade, roll back and uninstall HAMi through the ``helm`` CLI."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from robot.api import logger
from robot.api.deco import keyword

from ..core.commands import CommandResult
from ..core.component import LibraryComponent
from ..core.context import Context
from ..core.errors import HamiE2EFailure, HelmFailure
from .components import wait_for_components
from .namespaces import delete_namespace

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
    """HAMi's Helm release."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.installed: dict[tuple[str, str], InstalledRelease] = {}
        self._major: int | None = None

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
        """Waits up to ``timeout`` for helm to install the HAMi chart as a new release, then (``wait_ready``) up to
        ``timeout`` again until its components are ready.

        | =Argument= | =Description= |
        | ``chart`` | A repo reference (``hami-charts/hami``, see `Add Helm Repository`), an OCI reference (``oci://…``) or a local path. |
        | ``version`` | Pinned chart version, passed as ``--version`` (for a local path it is checked after install). |
        | ``release``, ``namespace`` | Default: the library import arguments (``hami`` in ``hami-system``). |
        | ``values_files`` | List of values files (``-f``). |
        | ``set_values`` | Dict of ``--set`` values, e.g. ``scheduler.leaderElect: "false"``. |
        | ``timeout`` | For helm (hooks) and for the readiness wait each. |
        | ``uninstall_after`` | ``suite`` (default), ``run``, ``test`` or ``never``: when the library uninstalls what it installed. |
        | ``wait_ready`` | Then wait as `Wait Until HAMi Components Are Ready` does. |

        Fails if the release already exists (uninstall it, or run with ``${HAMI_INSTALL}`` false to test an existing
        installation). Failures carry helm's stderr and ``helm status``. The release (and its namespace, when
        this keyword creates it) carries the run's labels, so a later run removes it if this one is killed.

        Example:
        | `Install HAMi Chart`    hami-charts/hami    version=2.10.0    values_files=${HAMI_VALUES_FILES}
        """
        release, namespace = self.hami_release(release, namespace)
        existing = self._release_record(release, namespace)
        if existing:
            raise HamiE2EFailure(
                f"Helm release {release} already exists in {namespace} (chart {existing.get('chart')}, status "
                f"{existing.get('status')}). Uninstall it first, or set HAMI_INSTALL to false to test it as it is."
            )
        # The release and a namespace made for it carry the run's labels (helm copies a release's labels onto its
        # storage Secrets), and are tracked before helm starts: a run stopped during the install still removes them.
        labels = ",".join(f"{key}={value}" for key, value in self.ctx.ownership_labels().items())
        args = ["install", release, chart, "-n", namespace, "--labels", labels]
        args += self._chart_args(chart, version, values_files, set_values, timeout)
        self.ctx.hami.release, self.ctx.hami.namespace = release, namespace
        scope = uninstall_after if uninstall_after != "never" else None
        self._create_release_namespace(namespace, scope)
        if scope:
            self.ctx.track(
                f"helm release {release} in {namespace}",
                lambda: self._uninstall_if_there(release, namespace),
                scope=scope,
                keepable=True,
            )
        self._helm(args, timeout)
        record = InstalledRelease(release, namespace, chart, version, list(values_files or []), dict(set_values or {}))
        self.installed[(release, namespace)] = record
        if version and _is_local_chart(chart):
            self.hami_release_chart_version_should_be(version, release, namespace)
        if wait_ready:
            wait_for_components(self, timeout, release, namespace)

    def _create_release_namespace(self, namespace: str, scope: str | None) -> None:
        """Creates the release's namespace, labelled as the run's, unless it exists; with a ``scope`` it is deleted
        then (after the release: cleanups run newest first)."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.ctx.core.read_namespace(namespace)
            return
        except ApiException as error:
            if error.status != 404:
                raise
        self.ctx.core.create_namespace({"metadata": {"name": namespace, "labels": self.ctx.ownership_labels()}})
        if scope:
            self.ctx.track(
                f"namespace {namespace}", lambda: delete_namespace(self, namespace, until_gone=True), scope=scope
            )

    def _uninstall_if_there(self, release: str, namespace: str) -> None:
        result = self._helm(["uninstall", release, "-n", namespace, "--timeout", "300s"], timedelta(minutes=5), False)
        if result.rc != 0 and "not found" not in result.stderr:
            raise self._failure(f"`helm uninstall {release}` failed (rc={result.rc})", result)

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
        """Waits up to ``timeout`` for ``helm upgrade`` of the HAMi release (and, with ``wait_ready``, for its
        components to be ready); returns the new revision.

        ``chart`` and ``version`` default to what `Install HAMi Chart` installed; ``reuse_values`` keeps the
        release's values and merges ``values_files``/``set_values`` on top.

        Example:
        | ${revision} =    `Upgrade HAMi Release`    version=${HAMI_CHART_VERSION}
        """
        release, namespace = self.hami_release(release, namespace)
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
            wait_for_components(self, timeout, release, namespace)
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
        """Waits up to ``timeout`` for helm to roll the HAMi release back to ``revision`` (0: the previous one) and,
        with ``wait_ready``, for its components to be ready; returns the new revision number.

        Example:
        | `Rollback HAMi Release`
        """
        release, namespace = self.hami_release(release, namespace)
        args = ["rollback", release, "-n", namespace, "--timeout", f"{int(self.ctx.timeout(timeout).total_seconds())}s"]
        if revision:
            args.insert(2, str(revision))
        self._helm(args, timeout)
        if wait_ready:
            wait_for_components(self, timeout, release, namespace)
        return int(self.get_hami_release_status(release, namespace)["revision"])

    @keyword("Uninstall HAMi Release", tags=("Helm", "HAMi"))
    def uninstall_hami_release(
        self,
        release: str | None = None,
        namespace: str | None = None,
        timeout: timedelta | None = None,
        wait: bool = True,
    ) -> None:
        """Waits up to ``timeout`` for helm to uninstall the HAMi release and, with ``wait``, until none of its pods
        is left.

        The release is forgotten by the library's cleanup (it is already gone).

        Example:
        | `Uninstall HAMi Release`    timeout=3 min
        """
        release, namespace = self.hami_release(release, namespace)
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
        release, namespace = self.hami_release(release, namespace)
        record = self._release_record(release, namespace)
        if record is None:
            raise HamiE2EFailure(f"Helm release {release} does not exist in namespace {namespace}.")
        return record

    @keyword("HAMi Release Status Should Be", tags=("Helm", "HAMi", "Assertion"))
    def hami_release_status_should_be(
        self,
        expected: str = "deployed",
        release: str | None = None,
        namespace: str | None = None,
        message: str | None = None,
    ) -> None:
        """Fails unless the release status is ``expected`` (``deployed``, ``failed``, ``pending-upgrade`` …).

        Example:
        | `HAMi Release Status Should Be`    deployed
        """
        status = self.get_hami_release_status(release, namespace)
        if status.get("status") != expected:
            if message:
                raise HelmFailure(message)
            raise self._failure(f"Release {status.get('name')} is {status.get('status')}, expected {expected}", None)

    @keyword("HAMi Release Chart Version Should Be", tags=("Helm", "HAMi", "Assertion"))
    def hami_release_chart_version_should_be(
        self, version: str, release: str | None = None, namespace: str | None = None, message: str | None = None
    ) -> None:
        """Fails unless the release runs chart version ``version`` (``helm list`` shows ``hami-<version>``).

        Example:
        | `HAMi Release Chart Version Should Be`    ${HAMI_CHART_VERSION}
        """
        status = self.get_hami_release_status(release, namespace)
        chart = str(status.get("chart", ""))
        if not chart.endswith(f"-{version}"):
            raise self.fail(f"Release {status.get('name')} runs chart {chart}, expected version {version}.", message)
