"""Services on loopback: the sandbox's stand-in for kube-proxy, between the host and the pods' network namespaces.

Every ClusterIP is a loopback address (the Service range is 127.96.0.0/16, one /16 higher per 1000 of port
offset: ``config.service_cidr``), so the proxy listens on
``<ClusterIP>:<port>`` in the host's namespace (the API server calls HAMi's webhook through its Service there),
plus ``127.0.0.1:<nodePort>`` in the host's namespace for NodePort services (how a user reaches HAMi's metrics on a
node; shifted by ``HAMI_E2E_PORT_OFFSET`` like every sandbox port). A connection goes to a ready endpoint: an endpoint that is a real pod is reached at ``127.0.0.1:<targetPort>``
inside that pod's namespace (where its process listens on ``0.0.0.0``), any other endpoint at its address in the
host's namespace — only if that address is on loopback; anything else is refused, so no byte leaves the machine.

Inside a pod's namespace the proxy listens only for the API server: on the ``kubernetes`` Service's ClusterIP at the
API server's own port (the agent sets ``KUBERNETES_SERVICE_PORT`` to it), because a listener on port 443 there would
take the port from a pod that binds ``0.0.0.0:443`` (HAMi's scheduler does). A kube-proxy rewrites packets instead of
listening; the sandbox changes no packet filter, so pods reach other Services only from the host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from .namespaces import socket_in

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ServicePort:
    service: str          # namespace/name
    cluster_ip: str
    port: int
    name: str
    node_port: int | None
    in_pods: bool = False   # listen inside every real pod's namespace instead of the host's


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class ServiceProxy:
    """Listeners for every TCP service port, in the host namespace and in each real pod's namespace."""

    def __init__(self, pod_namespace_of: Callable[[str], str | None], log: Callable[[str], None],
                 node_port_offset: int = 0) -> None:
        self._pod_namespace_of = pod_namespace_of   # pod IP -> /proc/<holder>/ns/net of a real pod, else None
        self._node_port_offset = node_port_offset   # HAMI_E2E_PORT_OFFSET: a second sandbox shifts its NodePorts
        self._log = log
        self._loop = asyncio.new_event_loop()
        self._ports: dict[tuple[str, int], ServicePort] = {}
        self._endpoints: dict[tuple[str, str], list[Endpoint]] = {}   # (service, port name) -> ready endpoints
        self._round_robin: dict[tuple[str, str], itertools.count] = {}
        self._servers: dict[tuple[str, str, int], asyncio.AbstractServer] = {}  # (namespace path or "", ip, port)
        self._pod_namespaces: set[str] = set()
        self._sync_lock = asyncio.Lock()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="service-proxy")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        async def close() -> None:
            for server in self._servers.values():
                server.close()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def update(self, ports: list[ServicePort], endpoints: dict[tuple[str, str], list[Endpoint]]) -> None:
        """Replace the known services and their ready endpoints (called from the agent's watch thread)."""
        asyncio.run_coroutine_threadsafe(self._apply(ports, endpoints), self._loop).result(timeout=30)

    def add_pod_namespace(self, path: str) -> None:
        async def add() -> None:
            self._pod_namespaces.add(path)
            await self._sync_listeners()
        asyncio.run_coroutine_threadsafe(add(), self._loop).result(timeout=30)

    def remove_pod_namespace(self, path: str) -> None:
        async def remove() -> None:
            self._pod_namespaces.discard(path)
            await self._sync_listeners()
        asyncio.run_coroutine_threadsafe(remove(), self._loop).result(timeout=30)

    def listeners(self) -> list[str]:
        """Human-readable list of what the proxy listens on (for ``sandbox status``)."""
        return sorted(f"{ip}:{port}" + (" (in a pod)" if namespace else "")
                      for namespace, ip, port in list(self._servers))

    async def _apply(self, ports: list[ServicePort], endpoints: dict[tuple[str, str], list[Endpoint]]) -> None:
        self._ports = {(p.cluster_ip, p.port): p for p in ports}
        self._endpoints = endpoints
        await self._sync_listeners()

    def _wanted(self) -> dict[tuple[str, str, int], ServicePort]:
        wanted = {}
        for port in self._ports.values():
            if port.in_pods:
                for namespace in self._pod_namespaces:
                    wanted[(namespace, port.cluster_ip, port.port)] = port
                continue
            wanted[("", port.cluster_ip, port.port)] = port
            if port.node_port:
                wanted[("", LOOPBACK, port.node_port + self._node_port_offset)] = port
        return wanted

    async def _sync_listeners(self) -> None:
        async with self._sync_lock:   # two updates must not both bind the same new listener
            await self._sync_unlocked()

    async def _sync_unlocked(self) -> None:
        wanted = self._wanted()
        for key in [k for k in self._servers if k not in wanted]:
            self._servers.pop(key).close()
        for key, port in wanted.items():
            if key in self._servers:
                continue
            namespace, ip, number = key
            try:
                sock = socket_in(namespace) if namespace else socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((ip, number))
                sock.listen(64)
                sock.setblocking(False)
            except OSError as error:
                self._log(f"cannot listen on {ip}:{number} for service {port.service}: {error}")
                continue
            lookup = (port.cluster_ip, port.port)
            self._servers[key] = await asyncio.start_server(
                partial(self._serve, lookup), sock=sock)

    def _pick(self, port: ServicePort) -> Endpoint | None:
        ready = self._endpoints.get((port.service, port.name), [])
        if not ready:
            return None
        counter = self._round_robin.setdefault((port.service, port.name), itertools.count())
        return ready[next(counter) % len(ready)]

    async def _connect(self, endpoint: Endpoint) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        namespace = self._pod_namespace_of(endpoint.address)
        if namespace:
            sock, target = socket_in(namespace), (LOOPBACK, endpoint.port)
        elif _is_loopback(endpoint.address):
            sock, target = socket.socket(), (endpoint.address, endpoint.port)
        else:
            raise ConnectionRefusedError(f"endpoint {endpoint.address} is not on loopback; the sandbox refuses it")
        sock.setblocking(False)
        try:
            await asyncio.wait_for(self._loop.sock_connect(sock, target), timeout=5)
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def _serve(self, lookup: tuple[str, int], reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        port = self._ports.get(lookup)
        endpoint = self._pick(port) if port else None
        if endpoint is None:
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await self._connect(endpoint)
        except (OSError, asyncio.TimeoutError) as error:
            self._log(f"service {port.service if port else lookup}: cannot reach {endpoint.address}:{endpoint.port}: "
                      f"{error}")
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except RuntimeError:
            pass
