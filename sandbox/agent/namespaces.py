"""Linux namespaces for pods: a network namespace per pod (only a loopback interface) and sockets made inside it.

A pod's network namespace is held by a tiny holder process (``unshare --net`` running ``sleep``); containers join it
through ``/proc/<holder>/ns/net``. Inside, the only interface is ``lo``, so whatever a pod's process binds (HAMi binds
``0.0.0.0:443``) is reachable only from that namespace: nothing of a pod can reach or be reached off the machine.
The agent bridges namespaces itself (see ``proxy.py``) by creating sockets inside a pod's namespace.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import socket
import struct
import subprocess
import threading
from pathlib import Path

from ..errors import SandboxError
from ..processes import process_identity

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IFREQ = "16sh14x"   # struct ifreq: interface name, then ifr_flags

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_setns_lock = threading.Lock()


def setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def check_privileges() -> None:
    """Fail with one sentence when this process cannot make network and mount namespaces."""
    if os.geteuid() != 0:
        raise SandboxError(
            "the sandbox's node agent runs HAMi's processes in their own network and mount namespaces and needs "
            f"root (running as uid {os.geteuid()}); run `python -m sandbox up` as root")
    probe = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise SandboxError(f"cannot create network/mount namespaces on this machine (`unshare --net --mount true`: "
                           f"{probe.stderr.strip() or probe.returncode}); the GPU twin needs them")


class PodNetwork:
    """The network namespace of one pod, kept alive by a holder process whose pid names it."""

    def __init__(self, holder_pid: int) -> None:
        self.holder_pid = holder_pid
        self.path = f"/proc/{holder_pid}/ns/net"

    @classmethod
    def create(cls, pid_file: Path) -> PodNetwork:
        """Start the holder in a fresh network namespace and bring its loopback interface up."""
        sleep = shutil.which("sleep") or "/bin/sleep"
        holder = subprocess.Popen(["unshare", "--net", "--", sleep, "infinity"], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        pid_file.write_text(f"{holder.pid}\n{process_identity(holder.pid) or ''}\n")
        network = cls(holder.pid)
        network._wait_for_namespace()
        try:
            network._loopback_up()
        except OSError as error:
            network.destroy()
            raise SandboxError(f"cannot bring up loopback in a pod's network namespace: {error}") from None
        return network

    def _loopback_up(self) -> None:
        """``ip link set lo up`` without iproute2 (a lent GPU machine has none): SIOCSIFFLAGS on a socket made in
        the namespace, which the ioctl applies to."""
        with self.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            flags = struct.unpack(IFREQ, fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0)))[1]
            fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))

    def _wait_for_namespace(self) -> None:
        """``unshare`` execs ``sleep`` once the namespace exists; until then the holder is still ``unshare``."""
        host = os.readlink("/proc/self/ns/net")
        for _ in range(500):
            try:
                if os.readlink(self.path) != host:
                    return
            except OSError:
                break
            threading.Event().wait(0.005)
        raise SandboxError(f"the network namespace holder (pid {self.holder_pid}) did not start")

    def alive(self) -> bool:
        return Path(self.path).exists()

    def destroy(self) -> None:
        """Stop the holder (the namespace goes with the last process in it)."""
        try:
            os.kill(self.holder_pid, 9)
            os.waitpid(self.holder_pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket that lives in this namespace (created there, usable from any thread afterwards)."""
        return socket_in(self.path, family, kind)


_host_net_fd: int | None = None


def socket_in(namespace_path: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """Create a socket inside the network namespace at ``namespace_path`` and switch this thread back."""
    global _host_net_fd  # noqa: PLW0603 - the host's network namespace is opened once per process
    with _setns_lock:
        if _host_net_fd is None:
            _host_net_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(namespace_path, os.O_RDONLY)
        try:
            setns(target, CLONE_NEWNET)
            try:
                return socket.socket(family, kind)
            finally:
                setns(_host_net_fd, CLONE_NEWNET)
        finally:
            os.close(target)
