"""The node agent: the sandbox's kubelet for pods it can run for real, and its kube-proxy.

One process for all fake nodes. It watches pods bound to a node whose images are in the image catalog (HAMi's,
kube-scheduler, the certificate generator) and runs each with a ``PodWorker``; it watches Services and
EndpointSlices and keeps the ``ServiceProxy`` listening. Every other pod stays kwok's. It writes what it runs to
``<run dir>/agent-status.json`` (read by ``python -m sandbox hami status``).
"""

from __future__ import annotations

import ipaddress
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from .. import config
from .gpu_containers import allocated_by_hami
from .images import Catalog, is_runnable_repository
from .namespaces import PodNetwork
from .pods import AgentServices, Node, PodWorker
from .proxy import Endpoint, ServicePort, ServiceProxy

# Pod IPs of real pods. Kubernetes refuses loopback addresses in EndpointSlices (and so in a Service's endpoints),
# so these come from 198.18.0.0/16 (RFC 2544, benchmarking; never routed): they are data in the API only. Nothing
# listens on or connects to them: the proxy reaches a pod through the loopback of the pod's own namespace, and the
# API server calls webhooks through ClusterIPs (loopback).
POD_IP_RANGE = ipaddress.ip_network("198.18.0.0/16")
WATCH_SECONDS = 240
STATUS_EVERY = 1.0


def runs_for_real(pod: Any) -> bool:
    """Pods the agent runs (kwok's stages skip the same pods): those with an image of a repository the sandbox
    builds, and those HAMi allocated GPUs to (``gpu_containers.py``)."""
    containers = list(pod.spec.containers or []) + list(pod.spec.init_containers or [])
    return any(is_runnable_repository(c.image or "") for c in containers) or allocated_by_hami(pod)


class Agent:
    def __init__(self, api: client.ApiClient, run_dir: Path, nodes: dict[str, Node], api_server: str,
                 ca_file: Path) -> None:
        self.api = api
        self.run_dir = run_dir
        self.core = client.CoreV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.workers: dict[str, PodWorker] = {}
        self._ips: dict[str, PodWorker] = {}
        self._networks: dict[str, str] = {}
        self._services: dict[str, Any] = {}
        self._slices: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.proxy = ServiceProxy(self._networks.get, self.log, config.PORT_OFFSET)
        self.services = AgentServices(
            api=api, catalog=Catalog(run_dir / "images.json"), run_dir=run_dir, nodes=nodes, api_server=api_server,
            ca_file=ca_file, service_env=self._service_env, network_added=self._network_added,
            network_removed=self._network_removed, log=self.log)

    @staticmethod
    def log(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    # ------------------------------------------------------------------ main loop
    def run(self) -> None:
        self.proxy.start()
        for name, target in (("pods", self._watch_pods), ("services", self._watch_services),
                             ("endpointslices", self._watch_slices)):
            threading.Thread(target=target, daemon=True, name=f"watch-{name}").start()
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        self.log(f"node agent running for nodes {', '.join(sorted(self.services.nodes))}")
        while not self._stop.wait(STATUS_EVERY):
            self._forget_finished()
            self._write_status()
            with self._lock:
                workers = list(self.workers.values())
            for worker in workers:
                try:
                    worker.sync_gpu_faults()
                except OSError as error:   # the pod's folder went away with the pod: nothing left to sync
                    self.log(f"pod {worker.key}: GPU faults not synced: {error}")
        self.log("stopping: the pods' processes end with the agent")
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.stop(delete_object=False)
        for worker in workers:
            worker.thread.join(timeout=15)
        self.proxy.stop()

    def _watch(self, list_call: Callable[..., Any], handle: Callable[[str, Any], None],
               resync: Callable[[list[Any]], None], **kwargs: Any) -> None:
        """List, then watch from that version; on any error list again (a watch may expire or break)."""
        while not self._stop.is_set():
            try:
                listing = list_call(**kwargs)
                resync(listing.items)
                stream = watch.Watch().stream(list_call, resource_version=listing.metadata.resource_version,
                                              timeout_seconds=WATCH_SECONDS, **kwargs)
                for event in stream:
                    if self._stop.is_set():
                        return
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        handle(event["type"], event["object"])
            except Exception as error:  # noqa: BLE001 - any watch failure: list again after a pause
                if not self._stop.is_set():
                    self.log(f"watch {getattr(list_call, '__name__', list_call)} restarts after: {error}")
                    self._stop.wait(1)

    # ------------------------------------------------------------------ pods
    def _watch_pods(self) -> None:
        self._watch(self.core.list_pod_for_all_namespaces, self._on_pod, self._resync_pods,
                    field_selector="spec.nodeName!=")

    def _resync_pods(self, pods: list[Any]) -> None:
        seen = {pod.metadata.uid for pod in pods}
        with self._lock:
            for uid, worker in list(self.workers.items()):
                if uid not in seen:
                    worker.stop(delete_object=False)
        for pod in pods:
            self._on_pod("ADDED", pod)

    def _on_pod(self, kind: str, pod: Any) -> None:
        if not pod.spec.node_name or not runs_for_real(pod):
            return
        uid = pod.metadata.uid
        with self._lock:
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker:
                    worker.stop(delete_object=False)
            elif pod.metadata.deletion_timestamp is not None:
                if worker:
                    worker.stop(delete_object=True)
                else:
                    self._remove_pod_object(pod)
            elif worker is not None:
                worker.update(pod)
            elif (pod.status.phase or "Pending") in ("Pending", "Running"):
                worker = PodWorker(self.services, pod, self._next_ip())
                self.workers[uid] = worker
                self._ips[worker.pod_ip] = worker
                self.log(f"pod {worker.key} on {pod.spec.node_name}: starting with IP {worker.pod_ip}")
                worker.start()

    def _remove_pod_object(self, pod: Any) -> None:
        try:
            self.core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace,
                                            body=client.V1DeleteOptions(grace_period_seconds=0))
        except ApiException:
            pass

    def _next_ip(self) -> str:
        for address in POD_IP_RANGE.hosts():
            text = str(address)
            if text not in self._ips and not text.endswith(".1"):
                return text
        raise RuntimeError(f"no pod IP left in {POD_IP_RANGE}")

    def _forget_finished(self) -> None:
        with self._lock:
            for uid, worker in list(self.workers.items()):
                if not worker.thread.is_alive():
                    del self.workers[uid]
                    self._ips.pop(worker.pod_ip, None)

    # ------------------------------------------------------------------ services
    def _watch_services(self) -> None:
        self._watch(self.core.list_service_for_all_namespaces, self._on_service,
                    lambda items: self._reset(self._services, items))

    def _watch_slices(self) -> None:
        self._watch(self.discovery.list_endpoint_slice_for_all_namespaces, self._on_slice,
                    lambda items: self._reset(self._slices, items))

    def _reset(self, cache: dict[str, Any], items: list[Any]) -> None:
        with self._lock:
            cache.clear()
            cache.update({f"{i.metadata.namespace}/{i.metadata.name}": i for i in items})
        self._sync_proxy()

    def _on_service(self, kind: str, service: Any) -> None:
        self._cache_event(self._services, kind, service)

    def _on_slice(self, kind: str, endpoint_slice: Any) -> None:
        self._cache_event(self._slices, kind, endpoint_slice)

    def _cache_event(self, cache: dict[str, Any], kind: str, item: Any) -> None:
        key = f"{item.metadata.namespace}/{item.metadata.name}"
        with self._lock:
            if kind == "DELETED":
                cache.pop(key, None)
            else:
                cache[key] = item
        self._sync_proxy()

    def _sync_proxy(self) -> None:
        ports: list[ServicePort] = []
        endpoints: dict[tuple[str, str], list[Endpoint]] = {}
        with self._lock:
            for key, service in self._services.items():
                ip = service.spec.cluster_ip
                if not ip or ip == "None":
                    continue
                for port in service.spec.ports or []:
                    if (port.protocol or "TCP") == "TCP":
                        ports.append(ServicePort(key, ip, port.port, port.name or "", port.node_port))
            for endpoint_slice in self._slices.values():
                service = (endpoint_slice.metadata.labels or {}).get("kubernetes.io/service-name")
                if not service:
                    continue
                key = f"{endpoint_slice.metadata.namespace}/{service}"
                for port in endpoint_slice.ports or []:
                    ready = [Endpoint(address, port.port) for item in endpoint_slice.endpoints or []
                             if item.conditions is None or item.conditions.ready is not False
                             for address in item.addresses]
                    endpoints.setdefault((key, port.name or ""), []).extend(ready)
        # The API server cannot publish its own loopback address as the `kubernetes` Service's endpoint (the
        # sandbox runs it with --endpoint-reconciler-type=none): the proxy knows where it is. Pods reach it at the
        # Service's ClusterIP on the API server's port (see proxy.py for why not 443).
        endpoints[("default/kubernetes", "https")] = [Endpoint(config.HOST, config.PORTS.apiserver)]
        kubernetes = next((p for p in ports if p.service == "default/kubernetes"), None)
        if kubernetes is not None:
            ports.append(ServicePort(kubernetes.service, kubernetes.cluster_ip, config.PORTS.apiserver,
                                     kubernetes.name, None, in_pods=True))
        self.proxy.update(ports, endpoints)

    def _service_env(self) -> dict[str, str]:
        with self._lock:
            kubernetes = self._services.get("default/kubernetes")
        ip = kubernetes.spec.cluster_ip if kubernetes else ""
        port = str(config.PORTS.apiserver)
        if not ip:
            return {}
        return {"KUBERNETES_SERVICE_HOST": ip, "KUBERNETES_SERVICE_PORT": port,
                "KUBERNETES_SERVICE_PORT_HTTPS": port, "KUBERNETES_PORT": f"tcp://{ip}:{port}",
                f"KUBERNETES_PORT_{port}_TCP": f"tcp://{ip}:{port}", f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
                f"KUBERNETES_PORT_{port}_TCP_PORT": port, f"KUBERNETES_PORT_{port}_TCP_ADDR": ip}

    def _network_added(self, pod_ip: str, network: PodNetwork) -> None:
        self._networks[pod_ip] = network.path
        self.proxy.add_pod_namespace(network.path)

    def _network_removed(self, pod_ip: str, network: PodNetwork) -> None:
        self._networks.pop(pod_ip, None)
        self.proxy.remove_pod_namespace(network.path)

    # ------------------------------------------------------------------ status for people
    def _write_status(self) -> None:
        with self._lock:
            workers = list(self.workers.values())
        pods = []
        for worker in workers:
            containers = [{"name": c.spec.name, "pid": c.process.pid if c.process else None,
                           "restarts": c.restarts, "log": str(worker.dir / "logs" / f"{c.spec.name}.log"),
                           "image": c.spec.image} for c in worker.containers]
            pods.append({"pod": worker.key, "node": worker.pod.spec.node_name, "ip": worker.pod_ip,
                         "containers": containers})
        status = {"pods": pods, "listeners": self.proxy.listeners()}
        tmp = self.run_dir / "agent-status.tmp"
        tmp.write_text(json.dumps(status, indent=1))
        tmp.replace(self.run_dir / "agent-status.json")
