"""Which TCP addresses the sandbox's processes listen on and talk to, read from /proc (no extra tools).

Processes of real pods run in network namespaces of their own (``agent/namespaces.py``), and the node agent owns
sockets inside those namespaces (the Service proxy's listeners for the API server). ``/proc/net/tcp`` shows only the
reader's namespace, so every socket is looked up in the TCP tables of the namespace it lives in: each process's own
``/proc/<pid>/net/tcp{,6}``, gathered over every namespace one of the checked processes is in.

The rule: every local and remote address is on loopback (127.0.0.0/8, ``::1``, IPv4-mapped loopback), with one
exception. A *listener* on the wildcard address (``0.0.0.0`` or ``::``) is accepted only when its network namespace
has no interface but ``lo`` (from ``/proc/<pid>/net/dev``): there the wildcard can only ever mean loopback, which is
how a pod's process binding ``0.0.0.0:443`` (HAMi's scheduler does) stays unreachable from anything off the machine.
The same wildcard listener in the host's namespace, or in a pod namespace that gained any other interface, is a
violation.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"
PROC = Path("/proc")
WILDCARDS = ("0.0.0.0", "::")


@dataclass(frozen=True)
class Socket:
    pid: int
    local: str
    remote: str
    listening: bool
    namespace: str = ""          # the network namespace the socket lives in, e.g. ``net:[4026531840]``
    lo_only: bool = False        # that namespace has no interface but ``lo``


def _address(hex_addr: str) -> str:
    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(raw[::-1])
    else:
        ip = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return f"{ip}:{int(port, 16)}"


def _inodes(pid: int, proc: Path) -> set[str]:
    inodes: set[str] = set()
    try:
        descriptors = list((proc / str(pid) / "fd").iterdir())
    except OSError:
        return inodes   # the process is gone
    for fd in descriptors:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def interfaces(pid: int, proc: Path = PROC) -> set[str]:
    """The network interfaces of ``pid``'s network namespace (``/proc/<pid>/net/dev``)."""
    names = set()
    for line in (proc / str(pid) / "net" / "dev").read_text().splitlines()[2:]:
        name, sep, _ = line.partition(":")
        if sep:
            names.add(name.strip())
    return names


@dataclass(frozen=True)
class _Namespace:
    name: str
    lo_only: bool
    rows: list[list[str]]   # the fields of every line of its tcp and tcp6 tables


def _namespaces(pids: list[int], proc: Path) -> list[_Namespace]:
    """The distinct network namespaces of ``pids``, each read once through one of its processes."""
    found: dict[str, _Namespace] = {}
    for pid in pids:
        try:
            name = os.readlink(proc / str(pid) / "ns" / "net")
            if name in found:
                continue
            rows = [line.split() for table in ("tcp", "tcp6")
                    for line in (proc / str(pid) / "net" / table).read_text().splitlines()[1:]]
            found[name] = _Namespace(name, interfaces(pid, proc) <= {"lo"}, rows)
        except OSError:
            continue   # the process ended while we looked
    return list(found.values())


def sockets(pids: list[int], proc: Path = PROC) -> list[Socket]:
    """Every TCP socket (IPv4 and IPv6) owned by one of ``pids``, in whichever of their namespaces it lives."""
    owner = {inode: pid for pid in pids for inode in _inodes(pid, proc)}
    found = []
    for namespace in _namespaces(pids, proc):
        for fields in namespace.rows:
            if len(fields) > 9 and fields[9] in owner:
                found.append(Socket(owner[fields[9]], _address(fields[1]), _address(fields[2]), fields[3] == LISTEN,
                                    namespace.name, namespace.lo_only))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rsplit(":", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def is_wildcard(address: str) -> bool:
    return address.rsplit(":", 1)[0] in WILDCARDS


def violations(pids: list[int], proc: Path = PROC) -> list[str]:
    """Sockets of ``pids`` that listen on or connect to anything outside loopback (see the module's rule)."""
    bad = []
    for sock in sockets(pids, proc):
        if sock.listening and is_wildcard(sock.local) and sock.lo_only:
            continue
        if not is_loopback(sock.local):
            where = "" if not sock.listening or not is_wildcard(sock.local) else \
                f" in {sock.namespace}, which has interfaces other than lo"
            bad.append(f"pid {sock.pid} {'listens on' if sock.listening else 'uses local address'} {sock.local}"
                       f"{where}")
        elif not sock.listening and not is_loopback(sock.remote):
            bad.append(f"pid {sock.pid} connects to {sock.remote}")
    return bad


def _recorded_pid(pid_file: Path, proc: Path) -> int | None:
    """The pid in an agent pid file (pid, then the process's start time) when that process still runs."""
    try:
        pid_text, identity = pid_file.read_text().split("\n")[:2]
        stat = (proc / pid_text.strip() / "stat").read_text()
        return int(pid_text) if stat.rsplit(")", 1)[1].split()[19] == identity.strip() else None
    except (OSError, ValueError, IndexError):
        return None


def _descendants(pids: set[int], proc: Path) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(pids), list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def pod_pids(run_dir: Path, proc: Path = PROC) -> list[int]:
    """The processes of the real pods the node agent runs, with their children: the container pids reported in
    ``<run>/agent-status.json`` and recorded in ``<run>/pods/*/pids/*.pid``, and the holders of the pods' network
    namespaces (``<run>/pods/*/netns.pid``), through which the agent's own sockets in those namespaces are found."""
    pids: set[int] = set()
    try:
        for pod in json.loads((run_dir / "agent-status.json").read_text()).get("pods", []):
            pids.update(c["pid"] for c in pod.get("containers", []) if c.get("pid"))
    except (OSError, ValueError, TypeError, KeyError):
        pass
    for pid_file in [*run_dir.glob("pods/*/pids/*.pid"), *run_dir.glob("pods/*/netns.pid")]:
        pid = _recorded_pid(pid_file, proc)
        if pid is not None:
            pids.add(pid)
    alive = {pid for pid in pids if (proc / str(pid)).is_dir()}
    return sorted(_descendants(alive, proc)) if alive else []
