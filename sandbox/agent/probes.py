"""Container probes and hooks as the kubelet runs them: httpGet and tcpSocket inside the pod's network namespace,
exec inside the container's own namespaces (``nsenter`` into the running process: its mounts, network, hostname and
root — what ``kubectl exec`` sees)."""

from __future__ import annotations

import socket
import ssl
import subprocess
from typing import Any

from .namespaces import socket_in

LOOPBACK = "127.0.0.1"
NSENTER = "/usr/bin/nsenter"


def _port(value: Any, container: Any) -> int:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    for port in container.ports or []:
        if port.name == value:
            return int(port.container_port)
    raise ValueError(f"container {container.name} has no port named {value!r}")


def _connect(netns: str | None, port: int, timeout: float) -> socket.socket:
    sock = socket_in(netns) if netns else socket.socket()
    sock.settimeout(timeout)
    try:
        sock.connect((LOOPBACK, port))
    except OSError:
        sock.close()
        raise
    return sock


def exec_in_container(pid: int, argv: list[str], env: dict[str, str], timeout: float,
                      stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` inside the running container whose main process is ``pid``."""
    command = [NSENTER, f"--target={pid}", "--mount", "--uts", "--net", "--root", "--wd", "--", *argv]
    return subprocess.run(command, input=stdin, capture_output=True, env=env, timeout=timeout)


def run_probe(probe: Any, container: Any, netns: str | None, pid: int | None, env: dict[str, str]) -> tuple[bool, str]:
    """One probe attempt: (success, message for the Unhealthy event)."""
    timeout = float(probe.timeout_seconds or 1)
    try:
        if probe.http_get is not None:
            return _http(probe.http_get, container, netns, timeout)
        if probe.tcp_socket is not None:
            _connect(netns, _port(probe.tcp_socket.port, container), timeout).close()
            return True, ""
        if probe._exec is not None and pid is not None:
            result = exec_in_container(pid, list(probe._exec.command), env, timeout)
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            return result.returncode == 0, f"exec probe failed (exit {result.returncode}): {output[:200]}"
    except (OSError, ValueError, subprocess.TimeoutExpired) as error:
        return False, f"probe failed: {error}"
    return False, "probe type not supported by the sandbox"


def _http(action: Any, container: Any, netns: str | None, timeout: float) -> tuple[bool, str]:
    port = _port(action.port, container)
    sock = _connect(netns, port, timeout)
    scheme = (action.scheme or "HTTP").upper()
    if scheme == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE   # the kubelet does not verify probe certificates either
        sock = context.wrap_socket(sock)
    try:
        path = action.path or "/"
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nUser-Agent: kube-probe/hami-e2e\r\n"
                     "Connection: close\r\n\r\n".encode())
        status_line = sock.makefile("rb").readline().decode(errors="replace")
    finally:
        sock.close()
    parts = status_line.split()
    code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    ok = 200 <= code < 400
    return ok, "" if ok else f"HTTP probe failed with statuscode: {code or status_line.strip()!r}"
