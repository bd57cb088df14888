"""One container of a pod as a real process: its environment, its root, its log file, and stopping it by pid.

The process is ``python3 -I enter.py <spec>`` which enters the pod's network namespace and a private mount
namespace, builds the container's root and execs the container's command (see ``enter.py``). Its stdout and stderr
are written to a CRI-format log file (``<timestamp> stdout|stderr F <line>``) that kwok serves for ``kubectl logs``.
Builtin images (``certgen.py``) run as a thread with the same interface.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from ..processes import process_identity
from .images import Image
from .volumes import field_value

ENTER = Path(__file__).with_name("enter.py")
NO_GPU_VALUES = ("", "void", "none")
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cri_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LogFile:
    """A CRI-format log file that several streams append to, one line per write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, stream: str, line: str) -> None:
        with self._lock, self.path.open("a") as out:
            out.write(f"{_cri_stamp()} {stream} F {line.rstrip(chr(10))}\n")

    def pump(self, pipe: Any, stream: str) -> threading.Thread:
        def run() -> None:
            for raw in iter(pipe.readline, b""):
                self.write(stream, raw.decode(errors="replace"))
            pipe.close()

        thread = threading.Thread(target=run, daemon=True, name=f"log-{self.path.name}-{stream}")
        thread.start()
        return thread


class Process(Protocol):
    """What the pod worker needs of a running container."""

    pid: int | None

    def poll(self) -> int | None: ...

    def stop(self, grace: float) -> int | None: ...


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion (``$$`` escapes); unknown references stay as written."""
    return _VAR.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


@dataclass
class ContainerEnv:
    """Inputs for a container's environment that come from outside the pod spec."""

    service_env: dict[str, str]
    lookup_config_map: Callable[[str, str], str | None]
    lookup_secret: Callable[[str, str], str | None]


def container_env(pod: Any, container: Any, image: Image, extra: ContainerEnv) -> dict[str, str]:
    """The environment a container runtime + kubelet would give: image env, service env, then the spec's env."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **image.env,
           "HOSTNAME": pod.metadata.name, "HOME": "/root", **extra.service_env}
    for source in container.env_from or []:
        prefix = source.prefix or ""
        if source.config_map_ref is not None:
            raw = extra.lookup_config_map(source.config_map_ref.name, "") or "{}"
            env.update({prefix + k: v for k, v in json.loads(raw).items()})
        if source.secret_ref is not None:
            raw = extra.lookup_secret(source.secret_ref.name, "") or "{}"
            env.update({prefix + k: v for k, v in json.loads(raw).items()})
    for item in container.env or []:
        if item.value_from is None:
            env[item.name] = expand(item.value or "", env)
            continue
        ref = item.value_from
        if ref.field_ref is not None:
            env[item.name] = field_value(pod, ref.field_ref.field_path)
        elif ref.resource_field_ref is not None:
            env[item.name] = _resource_value(container, ref.resource_field_ref.resource)
        elif ref.config_map_key_ref is not None:
            found = extra.lookup_config_map(ref.config_map_key_ref.name, ref.config_map_key_ref.key)
            if found is not None:
                env[item.name] = found
        elif ref.secret_key_ref is not None:
            found = extra.lookup_secret(ref.secret_key_ref.name, ref.secret_key_ref.key)
            if found is not None:
                env[item.name] = found
    return env


def _resource_value(container: Any, resource: str) -> str:
    kind, _, name = resource.partition(".")
    values = getattr(container.resources, kind, None) or {}
    return str(values.get(name, "0"))


def wants_gpu_driver(env: dict[str, str]) -> bool:
    """The NVIDIA container runtime injects the driver when NVIDIA_VISIBLE_DEVICES names devices."""
    return env.get("NVIDIA_VISIBLE_DEVICES", "").strip().lower() not in NO_GPU_VALUES


@dataclass
class LaunchSpec:
    """Everything ``enter.py`` needs, written as JSON next to the container's folders."""

    argv: list[str]
    env: dict[str, str]
    rootfs: Path
    image_root: str
    mounts: list[dict[str, Any]] = field(default_factory=list)
    netns: str | None = None
    hostname: str = ""
    workdir: str = "/"
    uid: int | None = None
    gid: int | None = None
    host_usr: tuple[str, ...] | None = None   # host /usr folders bound as the image's base (None: enter.py's all)
    gpu: dict[str, Any] | None = None          # real GPUs' isolation (host_driver.HostDriver.isolation)

    def write(self, path: Path) -> None:
        self.rootfs.mkdir(parents=True, exist_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "argv": self.argv, "env": self.env, "rootfs": str(self.rootfs), "image_root": self.image_root,
            "mounts": self.mounts, "netns": self.netns, "hostname": self.hostname, "workdir": self.workdir,
            "uid": self.uid, "gid": self.gid,
            **({"host_usr": list(self.host_usr)} if self.host_usr is not None else {}),
            **({"gpu": self.gpu} if self.gpu is not None else {})}, indent=1))


class ContainerProcess:
    """A started container process; its pid file lets ``sandbox down`` stop it even if the agent is gone."""

    def __init__(self, spec_file: Path, log: LogFile, pid_file: Path) -> None:
        self.popen = subprocess.Popen([sys.executable, "-I", str(ENTER), str(spec_file)], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.pid: int | None = self.popen.pid
        self._namespace: str | None = None
        self.pid_file = pid_file
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{self.popen.pid}\n{process_identity(self.popen.pid) or ''}\n")
        self._pumps = [log.pump(self.popen.stdout, "stdout"), log.pump(self.popen.stderr, "stderr")]

    def poll(self) -> int | None:
        code = self.popen.poll()
        if code is None:
            self._namespace = self._namespace or _container_namespace(self.popen.pid)
        else:
            for pump in self._pumps:
                pump.join(timeout=1)
            self.pid_file.unlink(missing_ok=True)
            _signal_namespace(self._namespace, signal.SIGKILL)   # as when a container's init dies
            self._namespace = None
        return code

    def stop(self, grace: float) -> int | None:
        """TERM the container's process group and what was exec'd into it, KILL them after ``grace`` seconds;
        returns the exit code."""
        if self.popen.poll() is None:
            self._namespace = self._namespace or _container_namespace(self.popen.pid)
            _signal_group(self.popen.pid, signal.SIGTERM)
            _signal_namespace(self._namespace, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        return self.poll()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _container_namespace(pid: int) -> str | None:
    """The container's own mount namespace (``mnt:[inode]``), or None while ``enter.py`` has not made it yet."""
    try:
        namespace = os.readlink(f"/proc/{pid}/ns/mnt")
        return namespace if namespace != os.readlink("/proc/self/ns/mnt") else None
    except OSError:
        return None


def _signal_namespace(namespace: str | None, sig: int) -> None:
    """Signal every process in the container's mount namespace: ``kubectl exec`` and exec probes enter it (see
    ``hami-e2e-exec.c``) outside the container's process group, so a group signal alone would leave them running."""
    if namespace is None:
        return
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and os.readlink(f"/proc/{entry.name}/ns/mnt") == namespace:
                os.kill(int(entry.name), sig)
        except OSError:
            continue


class BuiltinProcess:
    """A builtin image's work run in a thread, with the same poll/stop interface as a real process."""

    pid: int | None = None

    def __init__(self, work: Callable[[Callable[[str], None]], int], log: LogFile) -> None:
        self._code: int | None = None

        def run() -> None:
            try:
                self._code = work(lambda line: log.write("stdout", line))
            except Exception as error:  # noqa: BLE001 - a builtin's crash is its container's exit 1
                log.write("stderr", f"{type(error).__name__}: {error}")
                self._code = 1

        self._thread = threading.Thread(target=run, daemon=True, name="builtin-container")
        self._thread.start()

    def poll(self) -> int | None:
        return self._code

    def stop(self, grace: float) -> int | None:
        self._thread.join(timeout=grace)
        return self._code if self._code is not None else 137
