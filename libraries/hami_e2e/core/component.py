"""Base class of the keyword components: shared context, failures, and the two ways of waiting."""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from robot.api import logger

from ..parsers.events import format_event, sort_events
from .context import Context
from .errors import HamiE2EFailure, failure, is_stop_signal

T = TypeVar("T")

#: Errors from the API server that a wait swallows and retries (timeouts, restarts, throttling).
TRANSIENT_STATUS = {0, 429, 500, 502, 503, 504}


def text_matches(pattern: str, text: str) -> bool:
    """Substring match; ``GLOB:`` and ``REGEXP:`` prefixes work as in `Run Keyword And Expect Error`."""
    if pattern.startswith("GLOB:"):
        return fnmatch.fnmatchcase(text, pattern[5:].strip())
    if pattern.startswith("REGEXP:"):
        return re.search(pattern[7:].strip(), text) is not None
    return pattern in text


def human(duration: timedelta | float) -> str:
    """``90 seconds``, ``5 minutes``, ``1 minute 30 seconds`` for failure messages."""
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
    minutes, rest = divmod(round(seconds), 60)
    parts = []
    if minutes:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    if rest or not parts:
        parts.append(f"{rest} second{'s' if rest != 1 else ''}")
    return " ".join(parts)


class LibraryComponent:
    """A group of keywords for one area; every component of a library shares one `Context`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------------------------------------- helpers

    #: Builds the failure an assertion raises: ``message`` (the keyword's ``message=``) replaces the generated text.
    fail = staticmethod(failure)

    def namespace(self, namespace: str | None) -> str:
        """The given namespace, else the current test's namespace; fails if there is neither."""
        if namespace:
            return namespace
        if self.ctx.namespace:
            return self.ctx.namespace
        raise HamiE2EFailure(
            "No namespace given and no test namespace exists yet: call `Create Test Namespace` first "
            "(resources/common.resource `Start Test In Own Namespace` does it in Test Setup)."
        )

    def pod_name(self, name: str | None) -> str:
        """The given pod name, else the last pod this test created."""
        if name:
            return name
        if self.ctx.last_pod:
            return self.ctx.last_pod
        raise HamiE2EFailure("No pod name given and this test has not created a pod yet.")

    def hami_release(self, release: str | None, namespace: str | None) -> tuple[str, str]:
        """The given release and namespace, else those of the library's HAMi release (``hami`` in
        ``hami-system`` unless the library import or `Install HAMi Chart` said otherwise)."""
        return release or self.ctx.hami.release, namespace or self.ctx.hami.namespace

    def list_pod_events(self, pod: str, namespace: str) -> list[Any]:
        """Core/v1 events about one pod, oldest first."""
        selector = f"involvedObject.kind=Pod,involvedObject.name={pod}"
        return sort_events(self.ctx.core.list_namespaced_event(namespace, field_selector=selector).items)

    def wait_for_pod_event(
        self,
        pod: str,
        namespace: str,
        reason: str,
        text: str | None,
        timeout: timedelta | None,
        message: str | None = None,
    ) -> str:
        """Watches the pod's events until one has ``reason`` and a message matching ``text``; returns that message.
        ``message`` replaces the failure text."""

        def condition(events: list[Any]) -> str | None:
            for event in events:
                if event.reason == reason and (text is None or text_matches(text, event.message or "")):
                    return str(event.message or "")
            return None

        def describe(events: list[Any]) -> str:
            return "Events seen: " + ("; ".join(format_event(e) for e in sort_events(events)[-8:]) or "none") + "."

        return self.watch_until(
            self.ctx.core.list_namespaced_event,
            condition,
            self.ctx.timeout(timeout),
            f"Event {reason}" + (f" with message {text!r}" if text else "") + f" on pod {namespace}/{pod}",
            describe,
            message=message,
            namespace=namespace,
            field_selector=f"involvedObject.kind=Pod,involvedObject.name={pod}",
        )

    def read_pod(self, name: str, namespace: str) -> Any:
        """The pod, or a failure that names it when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.ctx.core.read_namespaced_pod(name, namespace)
        except ApiException as error:
            if error.status == 404:
                raise HamiE2EFailure(f"Pod {namespace}/{name} does not exist.") from None
            raise

    def read_node(self, node: str) -> Any:
        """The node, or a failure that names it when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.ctx.core.read_node(node)
        except ApiException as error:
            if error.status == 404:
                raise HamiE2EFailure(f"Node {node} does not exist.") from None
            raise

    # ------------------------------------------------------------------------------------------- waiting

    def poll(
        self,
        attempt: Callable[[], T | None],
        timeout: timedelta,
        describe: Callable[[], str],
        what: str,
        interval: timedelta | None = None,
        message: str | None = None,
    ) -> T:
        """Call ``attempt`` until it returns something other than None, or fail after ``timeout``.

        Used only where nothing can be watched (exec, HTTP metrics, helm); Kubernetes objects are waited for with
        `watch_until`. Exceptions of ``attempt`` are logged at DEBUG and retried; the last one ends in the failure,
        whose text ``message`` replaces when given.
        """
        try:
            return self._poll(attempt, timeout, describe, what, interval)
        except HamiE2EFailure as failure:
            raise self.fail(str(failure), message) from None

    def _poll(
        self,
        attempt: Callable[[], T | None],
        timeout: timedelta,
        describe: Callable[[], str],
        what: str,
        interval: timedelta | None,
    ) -> T:
        deadline = time.monotonic() + timeout.total_seconds()
        pause = (interval or self.ctx.poll_interval).total_seconds()
        last_error: Exception | None = None
        while True:
            try:
                result = attempt()
                if result is not None:
                    return result
                last_error = None
            except HamiE2EFailure as error:
                last_error = error
            except Exception as error:  # transient until the deadline
                if is_stop_signal(error):  # Ctrl-C / SIGTERM: stop now, not at the deadline
                    raise
                logger.debug(f"{what}: retrying after {type(error).__name__}: {error}")
                last_error = error
            if time.monotonic() >= deadline:
                seen = describe()
                extra = f" Last error: {last_error}" if last_error else ""
                raise HamiE2EFailure(f"{what} did not happen within {human(timeout)}. {seen}{extra}".strip())
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))

    def watch_until(
        self,
        list_call: Callable[..., Any],
        condition: Callable[[list[Any]], T | None],
        timeout: timedelta,
        what: str,
        describe: Callable[[list[Any]], str],
        message: str | None = None,
        **list_kwargs: Any,
    ) -> T:
        """List objects, then watch them until ``condition(objects)`` returns something other than None.

        ``list_call`` is a Kubernetes ``list_*`` function; ``list_kwargs`` go to both the list and the watch (for
        example a ``field_selector``). The watch resumes from the last resource version when the server ends it
        and re-lists after ``410 Gone``; transient API errors are retried until the deadline. On timeout the
        failure says what was waited for and ``describe(last objects)``, or is ``message`` when given.
        """
        try:
            return self._watch_until(list_call, condition, timeout, what, describe, list_kwargs)
        except HamiE2EFailure as failure:
            raise self.fail(str(failure), message) from None

    def _watch_until(
        self,
        list_call: Callable[..., Any],
        condition: Callable[[list[Any]], T | None],
        timeout: timedelta,
        what: str,
        describe: Callable[[list[Any]], str],
        list_kwargs: dict[str, Any],
    ) -> T:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        deadline = time.monotonic() + timeout.total_seconds()
        objects: dict[str, Any] = {}
        while True:
            remaining = deadline - time.monotonic()
            try:
                listed = list_call(**list_kwargs, _request_timeout=max(5.0, remaining + 5))
                objects = {_key(o): o for o in listed.items}
                verdict = condition(list(objects.values()))
                if verdict is not None:
                    return verdict
                version = listed.metadata.resource_version
                while remaining > 0:
                    watcher = watch.Watch()
                    stream = watcher.stream(
                        list_call,
                        resource_version=version,
                        timeout_seconds=max(1, int(remaining)),
                        _request_timeout=remaining + 10,
                        **list_kwargs,
                    )
                    for event in stream:
                        obj = event["object"]
                        if event["type"] == "DELETED":
                            objects.pop(_key(obj), None)
                        elif event["type"] in ("ADDED", "MODIFIED"):
                            objects[_key(obj)] = obj
                        version = watcher.resource_version or version
                        verdict = condition(list(objects.values()))
                        if verdict is not None:
                            watcher.stop()
                            return verdict
                        if time.monotonic() >= deadline:
                            watcher.stop()
                            break
                    remaining = deadline - time.monotonic()
            except ApiException as error:
                if error.status != 410 and error.status not in TRANSIENT_STATUS:
                    raise
                logger.debug(f"{what}: watch restarted after HTTP {error.status} {error.reason}")
            except (OSError, ValueError, HTTPError) as error:  # connection reset, truncated stream: list again
                logger.debug(f"{what}: watch restarted after {type(error).__name__}: {error}")
            if time.monotonic() >= deadline:
                raise HamiE2EFailure(
                    f"{what} did not happen within {human(timeout)}. {describe(list(objects.values()))}".strip()
                )
            time.sleep(min(self.ctx.poll_interval.total_seconds(), max(0.0, deadline - time.monotonic())))


def _key(obj: Any) -> str:
    metadata = obj.get("metadata", {}) if isinstance(obj, dict) else getattr(obj, "metadata", None)
    if isinstance(metadata, dict):
        return metadata.get("uid") or f"{metadata.get('namespace')}/{metadata.get('name')}"
    return getattr(metadata, "uid", None) or f"{getattr(metadata, 'namespace', None)}/{getattr(metadata, 'name', None)}"
