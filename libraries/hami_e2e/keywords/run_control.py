"""Keywords that decide whether a test can run on this target, and that end a test cleanly."""

from __future__ import annotations

from robot.api import logger
from robot.api.deco import keyword
from robot.api.exceptions import SkipExecution

from ..core.component import LibraryComponent
from ..core.describe import api_error_text


class RunControlKeywords(LibraryComponent):
    """Target reachability, capability-based skips, the preflight verdict and per-test cleanup."""

    @keyword(tags=("Target",))
    def cluster_should_be_reachable(self, message: str | None = None) -> str:
        """Fails unless the Kubernetes API server of the configured kubeconfig answers; returns its version.

        The failure names the kubeconfig and context, never their contents.

        Example:
        | ${version} =    `Cluster Should Be Reachable`
        """
        try:
            info = self.ctx.version_api.get_code(_request_timeout=15)
        except Exception as error:  # noqa: BLE001 - any reason means "not reachable"
            raise self.fail(
                f"The cluster of kubeconfig {self.ctx.kubeconfig or '(default)'} "
                f"(context {self.ctx.kube_context or 'current'}) is not reachable: {api_error_text(error)}",
                message,
            ) from None
        logger.info(f"Kubernetes {info.git_version} ({info.platform})")
        return info.git_version

    @keyword(tags=("Target",))
    def set_target_capability(self, tag: str, available: bool, reason: str = "") -> None:
        """Declares whether tests tagged ``tag`` can run on this target, and why not.

        `Skip Test If Target Lacks Capabilities` then skips tests carrying ``tag`` with ``reason``.

        Example:
        | `Set Target Capability`    needs-hami    ${HAMI_AVAILABLE}    ${HAMI_UNAVAILABLE_REASON}
        """
        self.ctx.capabilities[tag] = (bool(available), reason or f"the target lacks {tag}")

    @keyword("Declare GPU Inventory", tags=("Target",))
    def declare_gpu_inventory(self, gpu_nodes: list[str], gpus_per_node: int) -> None:
        """Declares the ``multi-node`` and ``multi-gpu`` capabilities from the expected GPU inventory.

        Tests tagged ``multi-node`` skip with fewer than two GPU nodes, ``multi-gpu`` with fewer than two GPUs per
        node, and the skip message says what the target has.

        Example:
        | `Declare GPU Inventory`    ${GPU_NODES}    ${GPUS_PER_NODE}
        """
        nodes = len(gpu_nodes)
        self.set_target_capability(
            "multi-node", nodes >= 2, f"needs at least 2 GPU nodes; the target has {nodes} (GPU_NODES)"
        )
        self.set_target_capability(
            "multi-gpu",
            gpus_per_node >= 2,
            f"needs at least 2 GPUs on one node; the target has {gpus_per_node} per node (GPUS_PER_NODE)",
        )

    @keyword(tags=("Target",))
    def skip_test_if_target_lacks_capabilities(self) -> None:
        """Skips the current test if one of its tags names a capability declared unavailable.

        The skip message is the reason given to `Set Target Capability`, so report.html says exactly why.

        Example:
        | `Skip Test If Target Lacks Capabilities`
        """
        tags = self.ctx.test_tags or self._robot_test_tags()
        missing = [reason for tag, (ok, reason) in self.ctx.capabilities.items() if not ok and tag in tags]
        if missing:
            raise SkipExecution("; ".join(dict.fromkeys(missing)))

    def _robot_test_tags(self) -> list[str]:
        from robot.libraries.BuiltIn import BuiltIn

        return list(BuiltIn().get_variable_value("@{TEST TAGS}", []) or [])

    @keyword(tags=("Target",))
    def record_preflight_result(self, status: str, message: str = "") -> None:
        """Remembers the preflight suite's verdict (``${SUITE STATUS}``, ``${SUITE MESSAGE}``) for later suites.

        Example:
        | `Record Preflight Result`    ${SUITE STATUS}    ${SUITE MESSAGE}
        """
        self.ctx.preflight = (status == "PASS", message or status)

    @keyword(tags=("Target",))
    def skip_if_preflight_failed(self) -> None:
        """Skips (from a Suite Setup: the whole suite) when the preflight suite ran in this execution and failed.

        Without a preflight verdict (a run of selected suites) nothing happens.

        Example:
        | `Skip If Preflight Failed`
        """
        if self.ctx.preflight is not None and not self.ctx.preflight[0]:
            raise SkipExecution(
                f"Preflight failed, so this suite cannot give a meaningful result: {self.ctx.preflight[1]}"
            )

    @keyword(tags=("Target",))
    def clean_up_test_resources(self) -> None:
        """Deletes what the current test created (namespace, node label and annotation changes), newest first.

        With ``keep_on_failure`` and a failed test, the namespace is kept (a warning names it); node labels and
        annotations are restored anyway.
        Cleanup errors become warnings; every item gets its turn.

        Example:
        | `Clean Up Test Resources`
        """
        from robot.libraries.BuiltIn import BuiltIn

        self.ctx.finish_test(BuiltIn().get_variable_value("${TEST STATUS}") == "FAIL")
