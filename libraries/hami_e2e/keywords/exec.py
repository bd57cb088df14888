"""Keywords that run commands in containers through the Kubernetes exec stream."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any, Literal

import yaml
from robot.api import logger
from robot.api.deco import keyword

from ..core.commands import CommandResult
from ..core.component import LibraryComponent, human
from ..core.context import Context
from ..core.errors import HamiE2EFailure

#: Exec channel numbers of the Kubernetes streaming protocol (v4/v5.channel.k8s.io).
STDOUT_CHANNEL, STDERR_CHANNEL, ERROR_CHANNEL = 1, 2, 3


class ExecKeywords(LibraryComponent):
    """Commands in a pod's container: exit status, stdout and stderr kept apart."""

    @keyword(tags=("Pod", "Exec"))
    def exec_in_pod(
        self,
        pod: str | None,
        command: list[str] | str,
        container: str | None = None,
        namespace: str | None = None,
        timeout: timedelta | None = None,
        expected_rc: int | Literal["any"] = 0,
    ) -> CommandResult:
        """Waits up to ``timeout`` for ``command``, run in a container of the pod, to end; returns its exit status,
        stdout and stderr separately.

        | =Argument= | =Description= |
        | ``command`` | A list (``@{cmd}``) or a string, which runs through ``/bin/sh -c``. |
        | ``container`` | Default: the pod's first container. |
        | ``timeout`` | Default: the library's ``default_timeout``; a command still running then gives rc 124. |
        | ``expected_rc`` | Fails unless the exit status is this (default 0); ``any`` accepts every status. |

        Uses the Kubernetes exec stream (``v5.channel.k8s.io``, falling back to v4) and reads the exit status from
        the error channel. The returned object has ``rc``, ``stdout``, ``stderr`` and ``error`` (the server's
        status text when the command could not start). Output is logged at INFO.

        Example:
        | ${result} =    `Exec In Pod`    small    nvidia-smi -L
        | Should Contain    ${result.stdout}    GPU-
        """
        pod_name, ns = self.pod_name(pod), self.namespace(namespace)
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else [str(c) for c in command]
        result = run_in_pod(self.ctx, pod_name, ns, argv, container, self.ctx.timeout(timeout))
        if expected_rc != "any" and result.rc != expected_rc:
            raise HamiE2EFailure(
                f"Command {argv} in pod {ns}/{pod_name} exited with {result.rc}, expected {expected_rc}."
                f"{' ' + result.error if result.error else ''} stderr: {result.stderr.strip()[-500:]!r}"
            )
        return result


def run_in_pod(
    ctx: Context, pod: str, namespace: str, argv: list[str], container: str | None, timeout: timedelta
) -> CommandResult:
    """Runs ``argv`` in the pod's container (any exit status) and logs the command, its status and both streams."""
    result = open_exec_stream(ctx, pod, namespace, argv, container, timeout.total_seconds())
    logger.info(
        f"exec in {namespace}/{pod}{'/' + container if container else ''}: {argv}\nrc={result.rc}"
        f"{' (' + result.error + ')' if result.error else ''}\n--- stdout ---\n{result.stdout}"
        f"\n--- stderr ---\n{result.stderr}"
    )
    return result


def open_exec_stream(
    ctx: Context, pod: str, namespace: str, argv: list[str], container: str | None, seconds: float
) -> CommandResult:
    """The only place that opens an exec stream (unit tests replace it): runs ``argv`` for at most ``seconds``."""
    from kubernetes.stream import stream

    kwargs: dict[str, Any] = {"command": argv, "stderr": True, "stdin": False, "stdout": True, "tty": False}
    if container:
        kwargs["container"] = container
    client = stream(ctx.core.connect_get_namespaced_pod_exec, pod, namespace, _preload_content=False, **kwargs)
    stdout, stderr = [], []
    deadline = time.monotonic() + seconds
    try:
        while client.is_open() and time.monotonic() < deadline:
            client.update(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            stdout.append(client.read_channel(STDOUT_CHANNEL))
            stderr.append(client.read_channel(STDERR_CHANNEL))
        timed_out = client.is_open()
        stdout.append(client.read_channel(STDOUT_CHANNEL))
        stderr.append(client.read_channel(STDERR_CHANNEL))
        status_text = client.read_channel(ERROR_CHANNEL)
    finally:
        client.close()
    if timed_out:
        return CommandResult(argv, 124, "".join(stdout), "".join(stderr), f"timed out after {human(seconds)}")
    rc, error = parse_exec_status(status_text)
    return CommandResult(argv, rc, "".join(stdout), "".join(stderr), error)


def parse_exec_status(text: str) -> tuple[int, str]:
    """Exit status from the exec error channel (a ``metav1.Status``); returns ``(rc, error text)``.

    ``Success`` is 0; ``NonZeroExitCode`` carries the status in ``details.causes[reason=ExitCode]``; kwok says
    ``InternalError`` with a message ending in ``exit status <n>``. A status without an exit code (e.g. the
    executable was not found) gives rc -1 and the server's message.
    """
    if not text or not text.strip():
        return -1, "the exec stream ended without an exit status"
    try:
        status = yaml.safe_load(text)
    except yaml.YAMLError:
        return -1, text.strip()
    if not isinstance(status, dict):
        return -1, text.strip()
    if status.get("status") == "Success":
        return 0, ""
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message")), ""
            except (TypeError, ValueError):
                break
    message = str(status.get("message") or text.strip())
    # kwok (the sandbox's kubelet) reports a non-zero exit as InternalError "... exit status <n>".
    exited = re.search(r"exit status (\d+)\s*$", message)
    if exited:
        return int(exited.group(1)), ""
    return -1, message
