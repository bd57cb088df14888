"""sandbox/netcheck.py on a fake /proc: sockets are read in the namespace they live in, a wildcard listener passes
only in a namespace whose only interface is lo, and the real pods' processes are found from the agent's files."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import pytest

from sandbox import netcheck

HOST_NS, POD_NS = "net:[4026531840]", "net:[4026532315]"
AGENT, POD_PROCESS, HOLDER, CHILD = 100, 200, 201, 202
LO_ONLY = ["lo"]
WITH_ETH0 = ["lo", "eth0"]


def encode(address: str) -> str:
    """``ip:port`` as the kernel writes it in /proc/net/tcp{,6} (the inverse of the module's parser)."""
    host, port = address.rsplit(":", 1)
    raw = ipaddress.ip_address(host.strip("[]")).packed
    words = raw[::-1] if len(raw) == 4 else b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return f"{words.hex().upper()}:{int(port):04X}"


def row(inode: int, local: str, remote: str = "0.0.0.0:0", state: str = "0A") -> str:
    return f"   0: {encode(local)} {encode(remote)} {state} 00000000:00000000 00:00000000 00000000     0        0 {inode}"


class FakeProc:
    """A /proc with processes, their socket descriptors, namespaces, TCP tables and interfaces."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir()
        self.tables: dict[str, dict[str, list[str]]] = {}

    def namespace(self, name: str, devices: list[str], tcp: list[str] = (), tcp6: list[str] = ()) -> None:
        self.tables[name] = {"tcp": list(tcp), "tcp6": list(tcp6), "dev": devices}

    def process(self, pid: int, namespace: str, inodes: list[int] = (), parent: int = 1, start: int = 5000) -> None:
        base = self.root / str(pid)
        (base / "fd").mkdir(parents=True)
        (base / "ns").mkdir()
        (base / "net").mkdir()
        os.symlink(namespace, base / "ns" / "net")
        for number, inode in enumerate(inodes, start=3):
            os.symlink(f"socket:[{inode}]", base / "fd" / str(number))
        os.symlink("/dev/null", base / "fd" / "0")
        fields = ["S", str(parent)] + ["0"] * 17 + [str(start)] + ["0"] * 10
        (base / "stat").write_text(f"{pid} (fake) {' '.join(fields)}\n")
        table = self.tables[namespace]
        header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
        (base / "net" / "tcp").write_text("\n".join([header, *table["tcp"]]) + "\n")
        (base / "net" / "tcp6").write_text("\n".join([header, *table["tcp6"]]) + "\n")
        (base / "net" / "dev").write_text(
            "Inter-|   Receive  |  Transmit\n face |bytes packets|bytes packets\n"
            + "".join(f"{name:>6}: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n" for name in table["dev"]))


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


def pod_with(proc: FakeProc, devices: list[str], pod_rows6: list[str], pod_rows: list[str] = ()) -> None:
    """The host (agent) and one pod whose process owns inode 21; the agent owns 11 (host) and 22 (in the pod)."""
    proc.namespace(HOST_NS, WITH_ETH0, tcp=[row(11, "127.0.0.1:31998")])
    proc.namespace(POD_NS, devices, tcp=[row(22, "127.96.0.1:36443"), *pod_rows], tcp6=pod_rows6)
    proc.process(AGENT, HOST_NS, inodes=[11, 22])
    proc.process(POD_PROCESS, POD_NS, inodes=[21, 23])


def test_wildcard_listener_in_a_namespace_with_only_lo_is_accepted(proc: FakeProc) -> None:
    pod_with(proc, LO_ONLY, [row(21, "[::]:443", "[::]:0")])
    found = netcheck.sockets([AGENT, POD_PROCESS], proc.root)
    assert netcheck.Socket(POD_PROCESS, ":::443", ":::0", True, POD_NS, True) in found
    assert netcheck.violations([AGENT, POD_PROCESS], proc.root) == []


def test_wildcard_listener_in_a_namespace_with_another_interface_is_a_violation(proc: FakeProc) -> None:
    pod_with(proc, WITH_ETH0, [row(21, "[::]:443")])
    assert netcheck.violations([AGENT, POD_PROCESS], proc.root) == [
        f"pid {POD_PROCESS} listens on :::443 in {POD_NS}, which has interfaces other than lo"]


def test_wildcard_listener_in_the_hosts_namespace_is_a_violation(proc: FakeProc) -> None:
    proc.namespace(HOST_NS, WITH_ETH0, tcp=[row(11, "0.0.0.0:30380")])
    proc.process(AGENT, HOST_NS, inodes=[11])
    assert netcheck.violations([AGENT], proc.root) == [
        f"pid {AGENT} listens on 0.0.0.0:30380 in {HOST_NS}, which has interfaces other than lo"]


def test_a_pod_address_listener_is_a_violation_even_with_only_lo(proc: FakeProc) -> None:
    pod_with(proc, LO_ONLY, [], pod_rows=[row(21, "198.18.0.5:443")])
    assert netcheck.violations([AGENT, POD_PROCESS], proc.root) == [f"pid {POD_PROCESS} listens on 198.18.0.5:443"]


def test_a_pod_process_connecting_off_loopback_is_a_violation(proc: FakeProc) -> None:
    pod_with(proc, LO_ONLY, [], pod_rows=[row(23, "127.0.0.1:40000", "198.18.0.3:443", state="01")])
    assert netcheck.violations([AGENT, POD_PROCESS], proc.root) == [f"pid {POD_PROCESS} connects to 198.18.0.3:443"]


def test_the_agents_socket_inside_a_pods_namespace_is_found_there(proc: FakeProc) -> None:
    pod_with(proc, LO_ONLY, [])
    found = {(s.pid, s.local, s.namespace) for s in netcheck.sockets([AGENT, POD_PROCESS], proc.root)}
    assert (AGENT, "127.96.0.1:36443", POD_NS) in found
    assert (AGENT, "127.0.0.1:31998", HOST_NS) in found
    # reading only the agent's own namespace (as a plain /proc/net/tcp reader does) misses it
    assert (AGENT, "127.96.0.1:36443", POD_NS) not in {
        (s.pid, s.local, s.namespace) for s in netcheck.sockets([AGENT], proc.root)}


def test_ipv6_loopback_and_ipv4_mapped_loopback_pass(proc: FakeProc) -> None:
    proc.namespace(HOST_NS, WITH_ETH0, tcp6=[row(11, "[::1]:9000"), row(12, "[::ffff:127.0.0.1]:9001"),
                                             row(13, "[::ffff:10.0.0.1]:9002")])
    proc.process(AGENT, HOST_NS, inodes=[11, 12, 13])
    assert netcheck.violations([AGENT], proc.root) == [f"pid {AGENT} listens on ::ffff:a00:1:9002"]


def test_a_process_that_vanished_is_skipped(proc: FakeProc) -> None:
    pod_with(proc, LO_ONLY, [row(21, "[::]:443")])
    assert netcheck.violations([AGENT, POD_PROCESS, 4242], proc.root) == []


def test_pod_pids_come_from_the_agent_status_pid_files_and_namespace_holders(proc: FakeProc, tmp_path: Path) -> None:
    pod_with(proc, LO_ONLY, [])
    proc.process(HOLDER, POD_NS, start=6000)
    proc.process(CHILD, POD_NS, parent=POD_PROCESS)
    proc.process(300, HOST_NS, start=7000)
    run = tmp_path / "run"
    pod = run / "pods" / "uid-1"
    (pod / "pids").mkdir(parents=True)
    (run / "agent-status.json").write_text(json.dumps({"pods": [{"pod": "ns/p", "containers": [
        {"name": "a", "pid": POD_PROCESS}, {"name": "b", "pid": None}]}]}))
    (pod / "netns.pid").write_text(f"{HOLDER}\n6000\n")
    (pod / "pids" / "stale.pid").write_text("300\n1234\n")     # pid 300 now belongs to another process
    (pod / "pids" / "gone.pid").write_text("999\n1\n")
    assert netcheck.pod_pids(run, proc.root) == [POD_PROCESS, HOLDER, CHILD]


def test_pod_pids_of_a_sandbox_without_pods_is_empty(proc: FakeProc, tmp_path: Path) -> None:
    assert netcheck.pod_pids(tmp_path / "missing", proc.root) == []
