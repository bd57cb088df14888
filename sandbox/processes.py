"""Start, watch and stop the sandbox's processes: each with a log file and a pid file, stopped by pid only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import config
from .errors import SandboxError


@dataclass
class Component:
    """One long-running process of the sandbox."""

    name: str
    argv: list[str]
    ports: list[int]
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    exe: str = ""   # the program the process runs once started, when argv[0] is a launcher that execs it

    def log_file(self, run: Path) -> Path:
        return run / "logs" / f"{self.name}.log"


def pid_file(run: Path, name: str) -> Path:
    return run / "pids" / f"{name}.pid"


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((config.HOST, port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(component: Component, run: Path) -> subprocess.Popen:
    """Launch a component in its own session so it outlives the CLI; fail at once if a port is taken."""
    for port in component.ports:
        if not port_free(port):
            raise SandboxError(
                f"port {config.HOST}:{port} is already in use, and {component.name} needs it; another sandbox or "
                f"program holds it (see `ss -ltnp 'sport = :{port}'`, or `python -m sandbox status`)"
            )
    log = component.log_file(run)
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file(run, component.name).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **component.env}
    with log.open("ab") as out:
        try:
            proc = subprocess.Popen(component.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=run, start_new_session=True)
        except OSError as error:
            raise SandboxError(f"cannot start {component.name} ({component.argv[0]}): {error}") from error
    pid_file(run, component.name).write_text(f"{proc.pid}\n{component.exe or component.argv[0]}\n")
    return proc


def wait_ready(component: Component, proc: subprocess.Popen, run: Path, timeout: float) -> None:
    """Poll the component's readiness probe; fail with its log tail if it exits or stays unready."""
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            log = component.log_file(run)
            raise SandboxError(f"{component.name} exited with code {code} while starting; log: {log}\n{tail(log)}")
        try:
            if component.ready():
                return
        except Exception:  # noqa: BLE001 - not ready yet; the deadline decides
            pass
        if time.monotonic() > deadline:
            log = component.log_file(run)
            raise SandboxError(f"{component.name} did not become ready within {timeout:.0f} s; log: {log}\n{tail(log)}")
        time.sleep(0.1)


def running_pid(run: Path, name: str) -> int | None:
    """The pid recorded for ``name`` if that process is still the one we started, else None."""
    try:
        pid_text, exe = pid_file(run, name).read_text().split("\n")[:2]
        pid = int(pid_text)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except (OSError, ValueError):
        return None
    return pid if cmdline == exe else None


def stop(run: Path, name: str, grace: float = 3.0) -> None:
    """Stop a component by its recorded pid (TERM, then KILL after ``grace`` seconds)."""
    pid = running_pid(run, name)
    if pid is not None:
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.02)
    pid_file(run, name).unlink(missing_ok=True)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def process_identity(pid: int) -> str | None:
    """The kernel's start time of ``pid``: with the pid it names one process, even after pid reuse."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def stop_recorded(pid_file: Path) -> None:
    """KILL the process group recorded in ``pid_file`` (pid + start time) if its leader is still that process.

    ``sandbox down`` uses it for the node agent's pod processes and namespace holders, should the agent be gone.
    """
    try:
        pid_text, identity = pid_file.read_text().split("\n")[:2]
        pid = int(pid_text)
    except (OSError, ValueError):
        return
    if identity and process_identity(pid) == identity:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while process_identity(pid) == identity and time.monotonic() < deadline:
            time.sleep(0.02)
    pid_file.unlink(missing_ok=True)
