"""Keywords on HAMi's mutating webhook: registered, answering, and what it did to pods."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from robot.api import logger
from robot.api.deco import keyword

from ..core.component import LibraryComponent


class WebhookKeywords(LibraryComponent):
    """HAMi's webhook (``vgpu.hami.io``): its registration, whether it answers, which pods it mutated."""

    def _webhook_configurations(self) -> list[Any]:
        return self.ctx.admission.list_mutating_webhook_configuration().items

    @keyword("HAMi Webhook Should Be Registered", tags=("HAMi", "Assertion"))
    def hami_webhook_should_be_registered(self, message: str | None = None) -> None:
        """Fails unless a MutatingWebhookConfiguration has webhook ``vgpu.hami.io`` for pod CREATE.

        Also logs its ``failurePolicy`` and target (Service or URL).

        Example:
        | `HAMi Webhook Should Be Registered`
        """
        wanted = self.ctx.hami.webhook_name
        for configuration in self._webhook_configurations():
            for webhook in configuration.webhooks or []:
                if webhook.name != wanted:
                    continue
                rules = webhook.rules or []
                if not any("pods" in (r.resources or []) and "CREATE" in (r.operations or []) for r in rules):
                    raise self.fail(
                        f"Webhook {wanted} in {configuration.metadata.name} does not cover pod CREATE: {rules}", message
                    )
                target = webhook.client_config.url or (
                    f"service {webhook.client_config.service.namespace}/{webhook.client_config.service.name}"
                    if webhook.client_config.service
                    else "?"
                )
                logger.info(
                    f"Webhook {wanted} in {configuration.metadata.name}: failurePolicy {webhook.failure_policy}, "
                    f"target {target}"
                )
                return
        names = [c.metadata.name for c in self._webhook_configurations()]
        raise self.fail(
            f"No MutatingWebhookConfiguration has webhook {wanted}; configurations: {', '.join(names) or 'none'}.",
            message,
        )

    @keyword("HAMi Webhook Should Not Be Registered", tags=("HAMi", "Assertion"))
    def hami_webhook_should_not_be_registered(self, message: str | None = None) -> None:
        """Fails if any MutatingWebhookConfiguration still has webhook ``vgpu.hami.io`` (after an uninstall).

        Example:
        | `HAMi Webhook Should Not Be Registered`
        """
        left = [
            c.metadata.name
            for c in self._webhook_configurations()
            if any(w.name == self.ctx.hami.webhook_name for w in c.webhooks or [])
        ]
        if left:
            raise self.fail(f"Webhook {self.ctx.hami.webhook_name} is still registered in {', '.join(left)}.", message)

    @keyword("Pod Should Be Mutated By HAMi Webhook", tags=("HAMi", "Pod", "Assertion"))
    def pod_should_be_mutated_by_hami_webhook(
        self, pod: str | None = None, namespace: str | None = None, message: str | None = None
    ) -> None:
        """Fails unless the pod's ``spec.schedulerName`` is HAMi's (``hami-scheduler``).

        A GPU pod with any other scheduler bypassed the webhook (TLS errors, no endpoints; ``failurePolicy:
        Ignore`` hides that), the most reported HAMi problem.

        Example:
        | `Pod Should Be Mutated By HAMi Webhook`    small
        """
        obj = self.read_pod(self.pod_name(pod), self.namespace(namespace))
        expected = self.ctx.hami.scheduler_name
        if obj.spec.scheduler_name != expected:
            raise self.fail(
                f"Pod {obj.metadata.name} has schedulerName {obj.spec.scheduler_name!r}, expected {expected!r}: "
                f"the HAMi webhook {self.ctx.hami.webhook_name} did not mutate it.",
                message,
            )

    @keyword("Pod Should Not Be Mutated By HAMi Webhook", tags=("HAMi", "Pod", "Assertion"))
    def pod_should_not_be_mutated_by_hami_webhook(
        self, pod: str | None = None, namespace: str | None = None, message: str | None = None
    ) -> None:
        """Fails if the pod's ``spec.schedulerName`` is HAMi's (for pods the webhook must leave alone).

        Example:
        | `Pod Should Not Be Mutated By HAMi Webhook`    plain
        """
        obj = self.read_pod(self.pod_name(pod), self.namespace(namespace))
        if obj.spec.scheduler_name == self.ctx.hami.scheduler_name:
            raise self.fail(
                f"Pod {obj.metadata.name} has schedulerName {obj.spec.scheduler_name!r}; expected the webhook to "
                "leave it unchanged.",
                message,
            )

    @keyword("Wait Until HAMi Webhook Answers", tags=("HAMi", "Wait"))
    def wait_until_hami_webhook_answers(self, timeout: timedelta | None = None, message: str | None = None) -> None:
        """Waits up to ``timeout`` until HAMi's webhook mutates a GPU pod: a server-side dry-run create of a pod
        asking for one GPU comes back with ``schedulerName`` set to HAMi's scheduler.

        A ready endpoint is not enough: until the Service routes to the new scheduler pod the webhook fails open
        (``failurePolicy: Ignore``) and a GPU pod created then bypasses HAMi for good. Nothing is created. The
        dry run goes to the test namespace, or to ``default`` when there is none or it is already being deleted
        (in a test teardown after the cleanup).

        Example:
        | `Wait Until HAMi Webhook Answers`    timeout=1 min
        """
        namespace = self._probe_namespace()
        body = {
            "metadata": {"generateName": "hami-e2e-webhook-probe-"},
            "spec": {
                "containers": [
                    {
                        "name": "probe",
                        "image": "hami-e2e/probe",
                        "command": ["true"],
                        "resources": {"limits": {self.ctx.vendor.gpu: "1"}},
                    }
                ]
            },
        }
        seen = {"last": "no answer yet"}

        def mutated() -> bool | None:
            pod = self.ctx.core.create_namespaced_pod(namespace, body, dry_run="All")
            seen["last"] = f"schedulerName {pod.spec.scheduler_name!r}"
            return True if pod.spec.scheduler_name == self.ctx.hami.scheduler_name else None

        self.poll(
            mutated,
            self.ctx.timeout(timeout),
            lambda: (
                f"Expected schedulerName {self.ctx.hami.scheduler_name!r}, last {seen['last']}. Look at the "
                "scheduler pod's logs and the API server's 'failing open' messages."
            ),
            f"HAMi's webhook mutating a dry-run GPU pod in namespace {namespace}",
            message=message,
        )

    def _probe_namespace(self) -> str:
        """The test namespace while it exists and is not being deleted, else ``default``."""
        from kubernetes.client.exceptions import ApiException

        name = self.ctx.namespace
        if not name:
            return "default"
        try:
            namespace = self.ctx.core.read_namespace(name)
        except ApiException as error:
            if error.status == 404:
                return "default"
            raise
        return "default" if namespace.metadata.deletion_timestamp else name
