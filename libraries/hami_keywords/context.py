"""State shared by every keyword component: cluster connection, default timeouts, created objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any, Callable

from robot.api import logger


@dataclass
class Cleanup:
    """One thing a keyword created, with the call that removes it."""

    description: str
    undo: Callable[[], Any]
    scope: str  # "test" or "suite"


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

    @cached_property
    def api_client(self):  # -> kubernetes.client.ApiClient
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(
            config_file=self.kubeconfig or None, context=self.kube_context or None, client_configuration=cfg
        )
        return client.ApiClient(cfg)

    @cached_property
    def core(self):  # -> kubernetes.client.CoreV1Api
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    @cached_property
    def apps(self):  # -> kubernetes.client.AppsV1Api
        from kubernetes import client

        return client.AppsV1Api(self.api_client)

    @cached_property
    def admission(self):  # -> kubernetes.client.AdmissionregistrationV1Api
        from kubernetes import client

        return client.AdmissionregistrationV1Api(self.api_client)

    def timeout(self, value: timedelta | None) -> timedelta:
        return self.default_timeout if value is None else value

    def track(self, description: str, undo: Callable[[], Any], scope: str = "test") -> None:
        """Remember how to remove something a keyword created; `run_cleanups` undoes it in reverse order."""
        self.cleanups.append(Cleanup(description, undo, scope))

    def run_cleanups(self, scope: str) -> list[str]:
        """Undo everything tracked for ``scope`` (newest first); returns the errors instead of raising them."""
        errors: list[str] = []
        keep = [c for c in self.cleanups if c.scope != scope]
        for item in reversed([c for c in self.cleanups if c.scope == scope]):
            try:
                item.undo()
                logger.info(f"Cleaned up {item.description}")
            except Exception as error:  # noqa: BLE001 - every cleanup must get its turn
                errors.append(f"{item.description}: {error}")
        self.cleanups = keep
        return errors
