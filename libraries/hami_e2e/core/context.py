"""State shared by every keyword component: cluster connection, default timeouts, created objects."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from robot.api import logger

from .commands import CommandResult, run_command
from .errors import is_stop_signal
from .ownership import RUN_ID_ENV, RunLock, ownership_labels, run_id_from_environment

#: The Kubernetes clients a `Context` builds on first use (cached properties), dropped by `Context.connect`.
_CLIENTS = ("api_client", "core", "apps", "admission", "discovery", "version_api")

#: Cleanup scopes: ``test`` (end of the current test), ``suite`` (end of the suite that was running when the thing
#: was created; resolved to ``suite:<full suite name>``) and ``run`` (end of the whole execution).
SCOPES = ("test", "suite", "run")


@dataclass
class Cleanup:
    """One thing a keyword created, with the call that removes it."""

    description: str
    undo: Callable[[], Any]
    scope: str  # "test", "suite:<full suite name>" or "run"
    keepable: bool = False  # kept for debugging when the test failed and keep_on_failure is on


@dataclass
class VendorNames:
    """Extended resource names and pod annotation keys of one vendor (defaults: NVIDIA, HAMi v2.10)."""

    gpu: str = "nvidia.com/gpu"
    memory: str = "nvidia.com/gpumem"
    memory_percentage: str = "nvidia.com/gpumem-percentage"
    cores: str = "nvidia.com/gpucores"
    priority: str = "nvidia.com/priority"
    use_type: str = "nvidia.com/use-gputype"
    nouse_type: str = "nvidia.com/nouse-gputype"
    use_uuid: str = "nvidia.com/use-gpuuuid"
    nouse_uuid: str = "nvidia.com/nouse-gpuuuid"
    register_annotation: str = "hami.io/node-nvidia-register"
    allocated_annotation: str = "hami.io/vgpu-devices-allocated"


@dataclass
class WorkloadDefaults:
    """What every pod the library builds gets unless a keyword argument says otherwise."""

    image: str = "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0"
    command: list[str] = field(default_factory=lambda: ["sleep", "infinity"])
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    node_selector: dict[str, str] = field(default_factory=dict)
    image_pull_policy: str = "IfNotPresent"
    termination_grace_period: int = 0
    allocation_probe: str = "pytorch"  # or "gpu-workload" (the sandbox's CUDA driver API program)


@dataclass
class HamiTarget:
    """Where HAMi lives on the target and how its objects are named (chart `hami` defaults)."""

    namespace: str = "hami-system"
    release: str = "hami"
    scheduler_name: str = "hami-scheduler"
    webhook_name: str = "vgpu.hami.io"
    scheduler_component: str = "hami-scheduler"
    device_plugin_component: str = "hami-device-plugin"
    local_log_files: list[str] = field(default_factory=list)


def chart_fullname(release: str) -> str:
    """The HAMi chart's ``<fullname>``, the prefix of its Deployment, DaemonSet and Service names: the release name
    if it contains ``hami``, else ``<release>-hami``."""
    return release if "hami" in release else f"{release}-hami"


@dataclass
class Context:
    """Connection settings and bookkeeping, shared by all components of one library instance.

    The Kubernetes client is created on first use, so importing the library (libdoc, ``--dryrun``,
    the GPU host tier) never touches a cluster.
    """

    kubeconfig: str | None = None
    kube_context: str | None = None
    default_timeout: timedelta = timedelta(seconds=60)
    poll_interval: timedelta = timedelta(milliseconds=200)
    cleanups: list[Cleanup] = field(default_factory=list)
    helm_binary: str = "helm"
    keep_on_failure: bool = False
    hami: HamiTarget = field(default_factory=HamiTarget)
    vendor: VendorNames = field(default_factory=VendorNames)
    workload: WorkloadDefaults = field(default_factory=WorkloadDefaults)
    runner: Callable[[list[str], float], CommandResult] = run_command
    #: Per-test state, reset by the listener when a test starts.
    namespace: str | None = None
    last_pod: str | None = None
    test_name: str | None = None
    test_tags: list[str] = field(default_factory=list)
    diagnostics_collected: bool = False
    #: Per-run state.
    suite_name: str | None = None
    suite_stack: list[str] = field(default_factory=list)
    suite_started: dict[str, datetime] = field(default_factory=dict)
    capabilities: dict[str, tuple[bool, str]] = field(default_factory=dict)
    #: The run's preflight verdict (`hami_e2e.core.preflight.Verdict`), once `Run Preflight` gave it.
    preflight: Any = None
    #: Names this execution on everything it creates (`ownership`).
    run_id: str = field(default_factory=run_id_from_environment)
    run_lock: RunLock | None = None
    #: What the sandbox loaded (its hami.json) when the target is the sandbox.
    sandbox_hami: dict[str, Any] | None = None

    # ---------------------------------------------------------------------------------------------- clients
    # Typed Any: the keywords read the API's objects as they come (every field of the client's models is Optional).

    @cached_property
    def api_client(self) -> Any:  # kubernetes.client.ApiClient
        from kubernetes import client, config

        cfg = client.Configuration()
        kubeconfig = os.path.expanduser(self.kubeconfig) if self.kubeconfig else None
        config.load_kube_config(config_file=kubeconfig, context=self.kube_context or None, client_configuration=cfg)
        return client.ApiClient(cfg)

    @cached_property
    def core(self) -> Any:  # kubernetes.client.CoreV1Api
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    @cached_property
    def apps(self) -> Any:  # kubernetes.client.AppsV1Api
        from kubernetes import client

        return client.AppsV1Api(self.api_client)

    @cached_property
    def admission(self) -> Any:  # kubernetes.client.AdmissionregistrationV1Api
        from kubernetes import client

        return client.AdmissionregistrationV1Api(self.api_client)

    @cached_property
    def discovery(self) -> Any:  # kubernetes.client.DiscoveryV1Api
        from kubernetes import client

        return client.DiscoveryV1Api(self.api_client)

    @cached_property
    def version_api(self) -> Any:  # kubernetes.client.VersionApi
        from kubernetes import client

        return client.VersionApi(self.api_client)

    def connect(self, kubeconfig: str | None, kube_context: str | None = None, helm_binary: str | None = None) -> None:
        """Point the library at a (possibly other) cluster: the next keyword builds its clients from ``kubeconfig``
        and ``kube_context``; ``helm_binary`` replaces the helm executable when given."""
        self.kubeconfig, self.kube_context = kubeconfig, kube_context
        if helm_binary:
            self.helm_binary = helm_binary
        for name in _CLIENTS:
            self.__dict__.pop(name, None)

    def timeout(self, value: timedelta | None) -> timedelta:
        return self.default_timeout if value is None else value

    def helm_status_text(self) -> str:
        """``helm status`` of the HAMi release (or helm's error), for failure messages and diagnostics."""
        command = [self.helm_binary, "status", self.hami.release, "-n", self.hami.namespace, *self.kube_args()]
        result = self.runner(command, 60)
        text = result.stdout if result.rc == 0 else f"rc={result.rc}: {result.stderr}"
        return text.strip() or f"(rc={result.rc}, no output)"

    def kube_args(self) -> list[str]:
        """``--kubeconfig``/``--kube-context`` for helm and kubectl, matching the Python client's target."""
        args = []
        if self.kubeconfig:
            args += ["--kubeconfig", os.path.expanduser(self.kubeconfig)]
        if self.kube_context:
            args += ["--kube-context", self.kube_context]
        return args

    def claim_run(self) -> None:
        """Takes the run's lock (once), so later runs leave this run's objects alone while it runs; a run whose id a
        wrapper handed down (``HAMI_E2E_RUN_ID``) is one pass of several, and the wrapper holds the lock."""
        if self.run_lock is not None or os.environ.get(RUN_ID_ENV) == self.run_id:
            return
        self.run_lock = RunLock(self.run_id)
        try:
            self.run_lock.acquire()
        except OSError as error:
            logger.warn(
                f"Cannot take the run lock {self.run_lock.path} ({error}): a run started meanwhile could take this "
                "run's objects for leftovers."
            )

    def release_run(self) -> None:
        """Gives up the run's lock: from now on this run's objects count as leftovers."""
        if self.run_lock is not None:
            self.run_lock.release()

    def ownership_labels(self) -> dict[str, str]:
        """``app.kubernetes.io/managed-by=hami-e2e`` and ``hami-e2e/run=<run id>``: every object the run creates
        carries them, so a later run can tell its leftovers from objects it did not create."""
        return ownership_labels(self.run_id)

    # ---------------------------------------------------------------------------------------------- cleanup

    def _resolve_scope(self, scope: str) -> str:
        if scope == "suite":
            return f"suite:{self.suite_name or ''}"
        if scope not in ("test", "run") and not scope.startswith("suite:"):
            raise ValueError(f"unknown cleanup scope {scope!r}; use one of {', '.join(SCOPES)}")
        return scope

    def track(self, description: str, undo: Callable[[], Any], scope: str = "test", keepable: bool = False) -> None:
        """Remember how to remove something a keyword created; `run_cleanups` undoes it in reverse order.

        ``scope`` is ``test``, ``suite`` (the suite running now) or ``run`` (end of the execution). ``keepable``
        things (namespaces, releases) stay after a failed test when ``keep_on_failure`` is on; the rest (node
        labels, annotations) is always restored so later tests see the cluster as it was.
        """
        self.cleanups.append(Cleanup(description, undo, self._resolve_scope(scope), keepable))

    def untrack(self, description: str) -> None:
        """Forget cleanups with this description (the keyword already removed the thing itself)."""
        self.cleanups = [c for c in self.cleanups if c.description != description]

    def pending_cleanups(self, scope: str) -> list[Cleanup]:
        resolved = self._resolve_scope(scope)
        return [c for c in self.cleanups if c.scope == resolved]

    def run_cleanups(self, scope: str) -> list[str]:
        """Undo everything tracked for ``scope`` (newest first); returns the errors instead of raising them.

        An item stays tracked until its undo has returned, so a run stopped in the middle of a cleanup (a second
        Ctrl-C raises SystemExit) still finds it in `run_all_cleanups`. An undo interrupted by Robot Framework's
        graceful stop (the first Ctrl-C or SIGTERM raises in whatever keyword runs) is tried once more."""
        resolved = self._resolve_scope(scope)
        errors: list[str] = []
        for item in reversed([c for c in self.cleanups if c.scope == resolved]):
            error = self._undo(item)
            if error:
                errors.append(error)
        return errors

    def run_all_cleanups(self) -> list[str]:
        """Undo everything still tracked, whatever its scope (newest first): what an aborted run does last."""
        errors: list[str] = []
        for item in reversed(list(self.cleanups)):
            error = self._undo(item)
            if error:
                errors.append(error)
        return errors

    def _undo(self, item: Cleanup) -> str | None:
        error: str | None = None
        for attempt in (1, 2):
            try:
                item.undo()
                logger.info(f"Cleaned up {item.description}")
            except Exception as failure:  # noqa: BLE001 - every cleanup must get its turn
                if attempt == 1 and is_stop_signal(failure):
                    logger.info(f"Stop signal while cleaning up {item.description}: finishing the cleanup first")
                    continue
                error = f"{item.description}: {failure}"
            break
        self.cleanups = [c for c in self.cleanups if c is not item]
        return error

    def drop_keepable_cleanups(self, scope: str) -> list[str]:
        """Forget the keepable cleanups of ``scope`` without running them (keep-on-failure); returns them."""
        resolved = self._resolve_scope(scope)
        kept = [c.description for c in self.cleanups if c.scope == resolved and c.keepable]
        self.cleanups = [c for c in self.cleanups if not (c.scope == resolved and c.keepable)]
        return kept

    def finish_test(self, failed: bool) -> None:
        """Undo what the test created (newest first); with ``keep_on_failure`` a failed test keeps its keepable
        things (namespaces, releases) and a warning names them. Cleanup errors become warnings."""
        if failed and self.keep_on_failure:
            kept = self.drop_keepable_cleanups("test")
            if kept:
                logger.warn("KEEP_ON_FAILURE: kept " + ", ".join(kept) + " of the failed test for debugging.")
        for error in self.run_cleanups("test"):
            logger.warn(f"Cleanup failed: {error}")

    def reset_test_state(self, name: str | None = None, tags: list[str] | None = None) -> None:
        self.namespace = None
        self.last_pod = None
        self.test_name = name
        self.test_tags = list(tags or [])
        self.diagnostics_collected = False
