"""Which TCP addresses the sandbox's processes listen on and talk to, read from /proc (no extra tools)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"


@dataclass(frozen=True)
class Socket:
    pid: int
    local: str
    remote: str
    listening: bool


def _address(hex_addr: str) -> str:
    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = ipaddress.IPv4Address(raw[::-1])
    else:
        ip = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return f"{ip}:{int(port, 16)}"


def _inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def sockets(pids: list[int]) -> list[Socket]:
    """Every TCP socket (IPv4 and IPv6) owned by one of ``pids``."""
    owner = {inode: pid for pid in pids for inode in _inodes(pid)}
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in owner:
                found.append(Socket(owner[fields[9]], _address(fields[1]), _address(fields[2]), fields[3] == LISTEN))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rsplit(":", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def violations(pids: list[int]) -> list[str]:
    """Sockets of ``pids`` that listen on or connect to anything outside loopback."""
    bad = []
    for sock in sockets(pids):
        if not is_loopback(sock.local):
            bad.append(f"pid {sock.pid} {'listens on' if sock.listening else 'uses local address'} {sock.local}")
        elif not sock.listening and not is_loopback(sock.remote):
            bad.append(f"pid {sock.pid} connects to {sock.remote}")
    return bad
