"""Diagnostics for failed tests (logged into log.html) and the post-suite scan of HAMi component logs."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from robot.api import logger
from robot.api.deco import keyword

from ..core.component import LibraryComponent
from ..core.describe import api_error_text
from ..core.errors import HamiE2EFailure
from ..parsers.annotations import hami_annotations
from ..parsers.events import format_event, sort_events

T = TypeVar("T")

SECRET_KEY = re.compile(
    r"(token|client-key-data|client-certificate-data|password|passwd|secret|private[-_]?key|authorization|"
    r"api[-_]?key|credentials?)",
    re.IGNORECASE,
)
REDACTED = "<redacted>"
_KEY_VALUE = re.compile(
    r"""(?P<key>["']?[\w.-]*(?:token|client-key-data|client-certificate-data|password|passwd|secret|private[-_]?key|"""
    r"""api[-_]?key|credentials?)[\w.-]*["']?)(?P<sep>\s*[:=]\s*)(?P<value>"[^"]*"|'[^']*'|[^\s,}\]]+)""",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
#: Lines of HAMi component logs worth a warning: Go panics and klog error lines (``E0824 12:00:00``).
DEFAULT_ERROR_PATTERNS = (r"\bpanic\b", r"^E\d{4} \d{2}:\d{2}:\d{2}")


def scrub_text(text: str) -> str:
    """Masks values of token/password/key-style fields and bearer credentials in free text."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('sep')}{REDACTED}", text)


def scrub_object(value: Any) -> Any:
    """A deep copy of a dict/list structure with secret-looking fields and env values masked."""
    if isinstance(value, dict):
        if "name" in value and "value" in value and SECRET_KEY.search(str(value.get("name"))):
            return {**value, "value": REDACTED}
        return {
            k: REDACTED if SECRET_KEY.search(str(k)) and not isinstance(v, (dict, list)) else scrub_object(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub_object(v) for v in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value


def scan_for_errors(text: str, patterns: list[str] | tuple[str, ...] = DEFAULT_ERROR_PATTERNS) -> list[str]:
    """Lines of ``text`` matching any pattern (``re.search``); CRI prefixes (``<time> stderr F``) are stripped."""
    compiled = [re.compile(p) for p in patterns]
    hits = []
    for raw in text.splitlines():
        line = re.sub(r"^\S+ (stdout|stderr) [FP] ", "", raw)
        if any(c.search(line) for c in compiled):
            hits.append(line)
    return hits


class DiagnosticsKeywords(LibraryComponent):
    """Everything a reader of a failed test needs, logged into that test's part of log.html."""

    # ============================================================================================ collect

    @keyword(tags=("Diagnostics",))
    def collect_diagnostics_on_failure(self, tail_lines: int = 200) -> None:
        """Logs what a reader of a failed test needs when the current test has failed (``${TEST STATUS}`` is FAIL).

        In order: the test namespace's events (time order); each pod's spec and status as YAML; each container's
        log (last ``tail_lines`` lines, and the previous run's if it restarted); the tail of the HAMi scheduler and
        of the device plugin on the involved nodes; the sandbox log files in ``${HAMI_LOCAL_LOG_FILES}``; the
        ``hami.io/*`` annotations of the involved nodes; ``helm status``. Tokens, passwords and keys are masked.
        Meant for ``[Teardown]`` / ``Test Teardown``; the library's listener does the same for tests without it.

        Example:
        | `Collect Diagnostics On Failure`
        """
        from robot.libraries.BuiltIn import BuiltIn

        if BuiltIn().get_variable_value("${TEST STATUS}") == "FAIL":
            self.collect_diagnostics(tail_lines=tail_lines)

    def collect_diagnostics(self, namespace: str | None = None, tail_lines: int = 200) -> None:
        """Logs the state needed to understand a failure: events, pods, logs, HAMi logs, node annotations, helm.

        In order: the namespace's events (time order); each pod's spec and status as YAML; each container's log
        (last ``tail_lines`` lines, and the previous run's if it restarted); the tail of the HAMi scheduler
        (both containers) and of the device plugin on the involved nodes; the sandbox log files listed in
        ``${HAMI_LOCAL_LOG_FILES}``; the ``hami.io/*`` annotations of the involved nodes; ``helm status``. Tokens,
        passwords and keys are masked. A part that cannot be read is reported and the rest still runs. The
        listener calls it for a failed test whose teardown did not.
        """
        self.ctx.diagnostics_collected = True
        ns = namespace or self.ctx.namespace
        nodes: set[str] = set()
        if ns:
            self._section(f"Events in namespace {ns}", lambda: self._events_text(ns))
            pods: list[Any] = self._safe(lambda: self.ctx.core.list_namespaced_pod(ns).items, [])
            for pod in pods:
                if pod.spec.node_name:
                    nodes.add(pod.spec.node_name)
                self._section(f"Pod {ns}/{pod.metadata.name}", partial(self._pod_yaml, pod))
                for text_title, reader in self._pod_log_readers(pod, tail_lines):
                    self._section(text_title, reader)
        else:
            logger.info("No test namespace: skipping events, pods and pod logs.")
        self._component_logs(nodes, tail_lines)
        for path in self.ctx.hami.local_log_files:
            self._section(f"Local log {path} (last {tail_lines} lines)", partial(_tail_file, path, tail_lines))
        self._section("HAMi annotations of nodes", lambda: self._node_annotations_text(nodes))
        self._section("helm status", self.ctx.helm_status_text)

    def _safe(self, read: Callable[[], T], default: T) -> T:
        try:
            return read()
        except Exception as error:  # noqa: BLE001 - diagnostics never fail the teardown
            logger.info(f"(could not read: {api_error_text(error)})")
            return default

    def _section(self, title: str, read: Callable[[], str]) -> None:
        try:
            body = read()
        except Exception as error:  # noqa: BLE001 - report and go on with the next part
            body = f"(could not read: {api_error_text(error)})"
        logger.info(f"===== {title} =====\n{scrub_text(body or '(empty)')}")

    def _events_text(self, namespace: str) -> str:
        events = sort_events(self.ctx.core.list_namespaced_event(namespace).items)
        return "\n".join(format_event(e) for e in events) or "(no events)"

    def _pod_yaml(self, pod: Any) -> str:
        data = self.ctx.api_client.sanitize_for_serialization(pod)
        data.get("metadata", {}).pop("managedFields", None)
        return yaml.safe_dump(scrub_object(data), sort_keys=False, width=120)

    def _pod_log_readers(self, pod: Any, tail_lines: int) -> Iterator[tuple[str, Callable[[], str]]]:
        name, ns = pod.metadata.name, pod.metadata.namespace
        statuses = {
            s.name: s for s in (pod.status.init_container_statuses or []) + (pod.status.container_statuses or [])
        }
        for container in (pod.spec.init_containers or []) + pod.spec.containers:
            status = statuses.get(container.name)
            if status is None or (status.state and status.state.waiting and not status.restart_count):
                continue

            def read(container: str = container.name, previous: bool = False) -> str:
                return str(
                    self.ctx.core.read_namespaced_pod_log(
                        name, ns, container=container, tail_lines=tail_lines, previous=previous
                    )
                )

            yield f"Log of {ns}/{name}/{container.name} (last {tail_lines} lines)", read
            if status.restart_count:
                yield f"Previous log of {ns}/{name}/{container.name}", partial(read, container.name, True)

    def _hami_pods(self) -> list[Any]:
        components = f"{self.ctx.hami.scheduler_component}, {self.ctx.hami.device_plugin_component}"
        selector = f"app.kubernetes.io/component in ({components})"
        return self.ctx.core.list_namespaced_pod(self.ctx.hami.namespace, label_selector=selector).items

    def _component_logs(self, nodes: set[str], tail_lines: int) -> None:
        pods: list[Any] = self._safe(self._hami_pods, [])
        if not pods:
            logger.info(f"No HAMi component pods in namespace {self.ctx.hami.namespace}.")
        for pod in pods:
            is_plugin = (pod.metadata.labels or {}).get("app.kubernetes.io/component") == (
                self.ctx.hami.device_plugin_component
            )
            if is_plugin and nodes and pod.spec.node_name not in nodes:
                continue
            for container in pod.spec.containers:
                self._section(
                    f"HAMi log {pod.metadata.name}/{container.name} (last {tail_lines} lines)",
                    partial(self._container_log, pod, container.name, tail_lines),
                )

    def _container_log(self, pod: Any, container: str, tail_lines: int) -> str:
        return str(
            self.ctx.core.read_namespaced_pod_log(
                pod.metadata.name, pod.metadata.namespace, container=container, tail_lines=tail_lines
            )
        )

    def _node_annotations_text(self, nodes: set[str]) -> str:
        if nodes:
            items = [self.ctx.core.read_node(n) for n in sorted(nodes)]
        else:
            items = self.ctx.core.list_node(label_selector="gpu=on").items
        lines = []
        for node in items:
            annotations = hami_annotations(node.metadata.annotations)
            lines.append(f"{node.metadata.name}:" + ("" if annotations else " (no hami.io/* annotations)"))
            for key, value in annotations.items():
                lines.append(f"  {key}: {value}")
        return "\n".join(lines) or "(no GPU nodes)"

    # ============================================================================================ log scan

    @keyword("Scan HAMi Component Logs For Errors", tags=("Diagnostics", "HAMi"))
    def scan_hami_component_logs_for_errors(
        self,
        since: datetime | None = None,
        severity: Literal["warn", "fail"] = "warn",
        patterns: list[str] | None = None,
        local_files: list[str] | None = None,
    ) -> list[str]:
        """Scans the HAMi component pods' logs (and ``local_files``) for panics and klog error lines.

        | =Argument= | =Description= |
        | ``since`` | Only pod log lines written since then; default: the start of the current suite. |
        | ``severity`` | ``warn`` (default): every hit becomes a warning in the report; ``fail``: the keyword fails. |
        | ``patterns`` | Regular expressions; default ``\\bpanic\\b`` and klog errors ``^E\\d{4} hh:mm:ss``. |
        | ``local_files`` | HAMi log files on this machine (``${HAMI_LOCAL_LOG_FILES}``, sandbox), read whole. |

        Returns the hits as ``<pod>/<container>: <line>``. Unreachable clusters or missing components give a
        warning, not a failure (the scan runs in suite teardowns).

        Example:
        | `Scan HAMi Component Logs For Errors`    severity=warn
        """
        start = since or self.ctx.suite_started.get(self.ctx.suite_name or "")
        since_seconds = None
        if start is not None:
            start = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
            since_seconds = max(1, int((datetime.now(timezone.utc) - start).total_seconds()) + 1)
        expressions = tuple(patterns or DEFAULT_ERROR_PATTERNS)
        hits: list[str] = []
        try:
            pods = self._hami_pods()
        except Exception as error:  # noqa: BLE001
            logger.warn(f"HAMi log scan skipped: cannot list HAMi pods: {api_error_text(error)}")
            pods = []
        for pod in pods:
            for container in pod.spec.containers:
                kwargs: dict[str, Any] = {"container": container.name}
                if since_seconds:
                    kwargs["since_seconds"] = since_seconds
                try:
                    text = self.ctx.core.read_namespaced_pod_log(pod.metadata.name, pod.metadata.namespace, **kwargs)
                except Exception as error:  # noqa: BLE001
                    logger.info(f"Cannot read {pod.metadata.name}/{container.name}: {api_error_text(error)}")
                    continue
                hits += [f"{pod.metadata.name}/{container.name}: {line}" for line in scan_for_errors(text, expressions)]
        for path in local_files or []:
            try:
                text = Path(path).read_text(errors="replace")
            except OSError as error:
                logger.info(f"Cannot read {path}: {error}")
                continue
            hits += [f"{path}: {line}" for line in scan_for_errors(text, expressions)]
        hits = [scrub_text(h) for h in hits]
        if hits and severity == "fail":
            raise HamiE2EFailure(f"{len(hits)} error line(s) in HAMi logs:\n" + "\n".join(hits[:50]))
        for hit in hits[:50]:
            logger.warn(f"HAMi log: {hit}")
        if len(hits) > 50:
            logger.warn(f"HAMi log: {len(hits) - 50} more error lines not shown")
        if not hits:
            logger.info(
                f"No error lines in the logs of {len(pods)} HAMi pod(s) and {len(local_files or [])} local file(s)."
            )
        return hits


def _tail_file(path: str, lines: int) -> str:
    content = Path(path).read_text(errors="replace").splitlines()
    return "\n".join(content[-lines:])
