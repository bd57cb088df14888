"""Keywords that give each test a namespace of its own."""

from __future__ import annotations

import random
import re
import string

from robot.api import logger
from robot.api.deco import keyword

from ..core.component import LibraryComponent


class NamespaceKeywords(LibraryComponent):
    """The per-test namespace: created, made the default of the pod keywords, deleted with the test."""

    @keyword(tags=("Pod", "Namespace"))
    def create_test_namespace(self, prefix: str = "hami-e2e", scope: str = "test") -> str:
        """Creates a namespace ``<prefix>-<suite>-<random>`` for this test and makes it the default namespace.

        | =Argument= | =Description= |
        | ``prefix`` | Start of the name. |
        | ``scope``  | When the namespace is deleted: ``test`` (default, at test end, even after a failure), ``suite`` or ``run``. |

        The namespace is labelled ``app.kubernetes.io/managed-by=hami-e2e`` and ``hami-e2e/run=<run id>``, so a
        later run's preflight finds it if this run is killed before it deletes it. With
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
                    **self.ctx.ownership_labels(),  # managed-by hami-e2e, and this run's id (leftovers)
                    # Test pods run as root with plain images; do not let a restrictive default block them.
                    "pod-security.kubernetes.io/enforce": "privileged",
                },
                "annotations": {"hami-e2e/test": (self.ctx.test_name or "")[:200]},
            }
        }
        self.ctx.core.create_namespace(body)
        self.ctx.track(f"namespace {name}", lambda: delete_namespace(self, name), scope=scope, keepable=True)
        self.ctx.namespace = name
        logger.info(f"Created namespace {name}")
        return name

    @keyword(tags=("Pod", "Namespace"))
    def get_test_namespace(self) -> str:
        """Returns the namespace of the current test (the one `Create Test Namespace` made), for keywords of other
        libraries that need it spelled out, such as KubeLibrary's. Fails when the test has none yet.

        Example:
        | ${ns} =    `Get Test Namespace`
        | @{pods} =    List Namespaced Pod By Pattern    small    ${ns}
        """
        return self.namespace(None)


def delete_namespace(component: LibraryComponent, name: str, until_gone: bool = False) -> None:
    """Deletes the namespace and waits until its pods are gone (default timeout), so the next test's pods never
    meet GPUs this test's pods still hold (HAMi counts a pod until it is deleted, and a
    pod HAMi turned away is retried only on cluster events or after minutes). With ``until_gone`` it also waits
    until the namespace itself is gone, for a name that is used again (HAMi's namespace).

    Pods that are still Pending go first: deleting a running GPU pod makes HAMi filter the pending ones again,
    and HAMi 2.10.0 keeps the share of a pod that is deleted while it binds it (its bind then fails with
    "not found" and nothing releases the share), which would leak into the next test."""
    from kubernetes.client.exceptions import ApiException

    core = component.ctx.core
    try:
        pending = core.list_namespaced_pod(namespace=name, field_selector="status.phase=Pending").items
        for pod in pending:
            core.delete_namespaced_pod(pod.metadata.name, name, grace_period_seconds=0)
        if pending:
            component.watch_until(
                core.list_namespaced_pod,
                lambda items: True if not items else None,
                component.ctx.default_timeout,
                f"Deletion of the pending pods of namespace {name}",
                lambda items: "Still there: " + ", ".join(p.metadata.name for p in items) if items else "",
                namespace=name,
                field_selector="status.phase=Pending",
            )
        core.delete_namespace(name, propagation_policy="Background")
    except ApiException as error:
        if error.status == 404:
            return
        if error.status != 409:  # 409: it is being deleted already (a run killed while deleting it); wait for it
            raise
    component.watch_until(
        core.list_namespaced_pod,
        lambda items: True if not items else None,
        component.ctx.default_timeout,
        f"Deletion of the pods of namespace {name}",
        lambda items: "Still there: " + ", ".join(p.metadata.name for p in items) if items else "",
        namespace=name,
    )
    if until_gone:
        component.watch_until(
            core.list_namespace,
            lambda items: True if not items else None,
            component.ctx.default_timeout,
            f"Deletion of namespace {name}",
            lambda items: f"Namespace {name} is still {items[0].status.phase}." if items else "",
            field_selector=f"metadata.name={name}",
        )


def _slug(text: str, limit: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].strip("-") or "suite"


def _random_suffix(length: int = 5) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=length))
