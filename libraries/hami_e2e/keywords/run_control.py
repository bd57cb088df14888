"""Keywords that decide whether a test can run on this target: the run's preflight verdict, capability-based
skips, and the cleanup at the end of a test."""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path
from typing import Any

from robot.api import logger
from robot.api.deco import keyword
from robot.api.exceptions import SkipExecution
from robot.libraries.BuiltIn import BuiltIn

from ..core import preflight
from ..core.component import LibraryComponent
from ..core.describe import api_error_text
from ..core.errors import HamiE2EFailure, is_stop_signal
from ..core.preflight import PreflightFailure, Verdict
from .leftovers import remove_leftovers

VENDORS_DIR = Path(__file__).resolve().parents[3] / "variables" / "vendors"
#: A test with one of these tags turns a failure into a skip (``--skiponfailure``): it does not report the verdict.
SKIP_ON_FAILURE_PREFIX = "known-bug:"


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

    # ============================================================================================ preflight

    @keyword(tags=("Target", "Preflight"))
    def run_preflight(self, target: str = "sandbox", target_failure: str = "") -> bool:
        """Gives the run's preflight verdict (once per run; later calls return it again): checks the inputs and
        the target without changing it, removes the leftovers of earlier runs, and returns whether it passed.

        Never fails: a failed verdict is reported by the first test that starts (`Stop Test If Preflight Failed`,
        `Preflight Should Have Passed`), and every later test and suite skips with the same reason. The checks,
        in order, each failing with one sentence that names the cause and the file or variable to fix:

        | =Check= | =Reads= |
        | ``CHANGE-ME`` placeholders | every variable (the file names come from ``--variablefile``) |
        | the vendor is known | ``VENDOR``, ``variables/vendors/`` |
        | the target could be prepared | ``target_failure``: the failure of `Prepare Target` (the sandbox did not start) |
        | the kubeconfig file, its context, cluster and user | ``KUBECONFIG`` (else ``$KUBECONFIG``, ``~/.kube/config``), ``KUBE_CONTEXT`` |
        | the API server answers and takes the credentials | the context's server and user |
        | helm runs and is 3.14 or newer | ``HELM_BINARY`` (the sandbox's own helm on the sandbox) |
        | the chart exists in the pinned version (when the run installs HAMi) | ``HAMI_CHART``, ``HAMI_CHART_VERSION``, ``HAMI_CHART_REPO_NAME``, ``HAMI_CHART_REPO_URL`` |
        | (then: leftovers of earlier runs are removed, see below) | |
        | the GPU nodes exist, carry the GPU label and are Ready | ``GPU_NODES``, ``GPU_NODE_LABEL`` |
        | GPUs HAMi registered match | ``GPUS_PER_NODE``, ``GPU_MODEL``, ``GPU_MEMORY_MIB`` (nodes HAMi has not registered are not checked) |

        Leftovers are what an earlier run created and did not remove (it was killed): namespaces, the Helm
        releases it installed and node labels and annotations it changed, found by their ``hami-e2e/run`` labels
        (`hami_e2e.core.ownership`); a run that still goes on keeps its objects, and nothing without the suite's
        labels is touched. What was removed is logged as a warning and named in the report's metadata.

        Example:
        | ${passed} =    `Run Preflight`    ${TARGET}    target_failure=${message}
        """
        if self.ctx.preflight is not None:
            return bool(self.ctx.preflight.passed)
        self.ctx.claim_run()
        started = time.monotonic()
        verdict = Verdict(passed=True)
        try:
            self._check(target, target_failure, verdict)
        except PreflightFailure as failure:
            verdict.passed, verdict.cause = False, str(failure)
        except Exception as error:  # whatever broke, it is the run's one verdict, not a crash
            if is_stop_signal(error):
                raise
            verdict.passed = False
            verdict.cause = (
                f"The preflight stopped at an unexpected error: {type(error).__name__}: {api_error_text(error)}"
            )
        verdict.seconds = time.monotonic() - started
        self.ctx.preflight = verdict
        self._report(verdict)
        return verdict.passed

    def _check(self, target: str, target_failure: str, verdict: Verdict) -> None:
        variables = _variables()
        checks = verdict.checks
        checks.append(preflight.check_placeholders(variables, preflight.variable_files(sys.argv[1:])))
        checks.append(preflight.check_vendor(str(variables.get("VENDOR", "nvidia")), VENDORS_DIR))
        if target_failure:
            raise PreflightFailure(_target_failure_sentence(target, target_failure))
        sandbox = target == "sandbox"
        files, where = preflight.kubeconfig_files(
            self.ctx.kubeconfig or "", "the sandbox's kubeconfig" if sandbox else "variable KUBECONFIG"
        )
        kube = preflight.check_kubeconfig(files, where, self.ctx.kube_context or "")
        checks.append(preflight.check_api_server(kube, preflight.api_client(kube)))
        checks.append(
            preflight.check_helm(self.ctx.helm_binary, "the sandbox's helm" if sandbox else "variable HELM_BINARY")
        )
        if _true(variables.get("HAMI_INSTALL")) and _true(variables.get("HAMI_AVAILABLE", True)):
            source = preflight.ChartSource(
                str(variables.get("HAMI_CHART", "")),
                str(variables.get("HAMI_CHART_VERSION", "")),
                str(variables.get("HAMI_CHART_REPO_NAME", "") or ""),
                str(variables.get("HAMI_CHART_REPO_URL", "") or ""),
            )
            checks.append(preflight.check_chart(self.ctx.helm_binary, source))
        verdict.removed = remove_leftovers(self, self.ctx.run_id)
        vendor_names = variables.get("VENDOR_NAMES") or {}
        inventory = preflight.Inventory(
            nodes=_as_list(variables.get("GPU_NODES")),
            label=str(variables.get("GPU_NODE_LABEL", "gpu=on")),
            gpus_per_node=_whole_number(variables, "GPUS_PER_NODE"),
            model=str(variables.get("GPU_MODEL", "")),
            memory_mib=_whole_number(variables, "GPU_MEMORY_MIB"),
            register_annotation=str(vendor_names.get("register_annotation", self.ctx.vendor.register_annotation)),
        )
        nodes = preflight.check_gpu_nodes(self.ctx.core, inventory)
        checks.append(f"GPU nodes {', '.join(inventory.nodes)} labelled {inventory.label} and Ready")
        checks.append(preflight.check_registration(nodes, inventory))

    def _report(self, verdict: Verdict) -> None:
        for line in verdict.checks:
            logger.info(f"Preflight: {line}")
        if verdict.removed:
            text = "Removed leftovers of earlier runs: " + "; ".join(verdict.removed) + "."
            logger.warn(text)
            BuiltIn().set_suite_metadata("Leftovers removed", "; ".join(verdict.removed), top=True)
        if verdict.passed:
            summary = f"passed in {verdict.seconds:.1f} s"
            logger.info(f"Preflight {summary}: {len(verdict.checks)} checks.")
        else:
            summary = f"FAILED after {verdict.seconds:.1f} s: {verdict.cause}"
            logger.error(f"Preflight failed: {verdict.cause}")
        BuiltIn().set_suite_metadata("Preflight", summary, top=True)
        BuiltIn().set_suite_metadata("Run id", self.ctx.run_id, top=True)

    @keyword(tags=("Target", "Preflight"))
    def get_preflight_verdict(self) -> str:
        """Returns ``PASS`` or ``FAIL`` once `Run Preflight` gave the run's verdict, ``NONE`` before.

        Example:
        | ${verdict} =    `Get Preflight Verdict`
        | IF    $verdict == 'NONE'    Prepare Run
        """
        verdict = self.ctx.preflight
        return "NONE" if verdict is None else "PASS" if verdict.passed else "FAIL"

    @keyword(tags=("Target", "Preflight", "Assertion"))
    def preflight_should_have_passed(self, message: str | None = None) -> None:
        """Fails with the preflight's cause when the run's verdict failed (the test that reports it; later tests
        skip); logs what was checked and removed when it passed.

        Example:
        | `Preflight Should Have Passed`
        """
        verdict = self._verdict()
        if not verdict.passed:
            self._stop(verdict, message)
        for line in verdict.checks:
            logger.info(f"Checked: {line}")
        for line in verdict.removed:
            logger.info(f"Removed: {line}")

    @keyword(tags=("Target", "Preflight"))
    def stop_test_if_preflight_failed(self) -> None:
        """In a Test Setup: the first test of a run whose preflight failed fails with the cause; every later test
        skips with it. Nothing happens when the preflight passed.

        Example:
        | `Stop Test If Preflight Failed`
        """
        verdict = self._verdict()
        if not verdict.passed:
            self._stop(verdict, None)

    def _stop(self, verdict: Verdict, message: str | None) -> None:
        tags = self.ctx.test_tags or self._robot_test_tags()
        if verdict.reported_by is None and not any(t.startswith(SKIP_ON_FAILURE_PREFIX) for t in tags):
            verdict.reported_by = self.ctx.test_name or "this test"
            raise HamiE2EFailure(message or f"Preflight failed: {verdict.cause}")
        raise SkipExecution(_skip_text(verdict))

    def _verdict(self) -> Verdict:
        if self.ctx.preflight is None:
            raise HamiE2EFailure(
                "No preflight verdict: `Run Preflight` runs in Prepare Suite (resources/common.resource)."
            )
        verdict: Verdict = self.ctx.preflight
        return verdict

    @keyword(tags=("Target", "Preflight"))
    def skip_if_preflight_failed(self) -> None:
        """In a Suite Setup: skips the whole suite when the run's preflight failed and a test has reported it
        already. The first suite after a failed preflight is not skipped: its first test reports the cause.

        Example:
        | `Skip If Preflight Failed`
        """
        verdict = self.ctx.preflight
        if verdict is not None and not verdict.passed and verdict.reported_by is not None:
            raise SkipExecution(_skip_text(verdict))

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


def _skip_text(verdict: Verdict) -> str:
    return f"Preflight failed (reported by test '{verdict.reported_by}'): {verdict.cause}"


def _variables() -> dict[str, Any]:
    """The run's variables by bare name (``KUBECONFIG``), as the suite sees them."""
    return {str(name): value for name, value in BuiltIn().get_variables(no_decoration=True).items()}


def _as_list(value: Any) -> list[str]:
    """A list variable, also when given on the command line (``--variable 'GPU_NODES:["a", "b"]'`` is a string,
    which Robot Framework converts the same way for a ``list`` argument)."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            value = [part.strip() for part in value.split(",")]
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value or []]


def _whole_number(variables: dict[str, Any], name: str) -> int:
    try:
        return int(str(variables.get(name, 0)).strip())
    except ValueError:
        raise PreflightFailure(f"{name} is {variables.get(name)!r}, not a whole number.") from None


def _true(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "yes", "1")


def _target_failure_sentence(target: str, failure: str) -> str:
    """One sentence from `Prepare Target`'s failure: for the sandbox the line ``sandbox error: …`` of ``sandbox
    up`` (it names the component and its log), with the log tail left to log.html."""
    lines = [line.strip() for line in failure.splitlines() if line.strip()]
    if target == "sandbox":
        error = next((line for line in lines if line.startswith("sandbox error:")), lines[-1] if lines else failure)
        kept = next((line for line in lines if "logs of the failed start kept in" in line), "")
        where = f" (the logs of the failed start are kept in {kept.rsplit(' ', 1)[-1]})" if kept else ""
        return f"The sandbox did not start: {error.removeprefix('sandbox error:').strip()}{where}"
    return lines[0] if lines else failure
