"""Faults injected into the sandbox's GPU twin: a GPU that fails and heals, a control-plane component restarted.

Only the sandbox can do this on demand (its GPUs are NVIDIA's mock NVML; its control plane is ours), so every
keyword here fails with that reason on another target. What HAMi then does is for the tests to check.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from robot.api import logger
from robot.api.deco import keyword

from ..core.component import LibraryComponent
from ..parsers.annotations import parse_node_register


def _sandbox() -> Any:
    from sandbox import cluster, config, twin  # the sandbox package is installed with the suite

    return cluster, config, twin


class FaultKeywords(LibraryComponent):
    """GPU faults and control-plane restarts of the sandbox, undone when the test ends."""

    @keyword(tags=("Fault", "Sandbox"))
    def make_gpu_fail(self, node: str, gpu: str, mode: str = "ecc_uncorrectable", xid: int | None = 48) -> None:
        """Makes GPU ``gpu`` (UUID) of ``node`` fail as NVML reports it; healed again when the test ends.

        | =Argument= | =Description= |
        | ``mode`` | ``ecc_uncorrectable`` (default, with an Xid event), ``lost`` or ``fallen_off_bus``. |
        | ``xid`` | The Xid event NVML delivers (48: double-bit ECC error, one HAMi's plugin treats as critical). |

        HAMi's device plugin on that node and every container given that GPU see the fault within about a second.

        Example:
        | `Make GPU Fail`    gpu-node-0    ${uuid}    mode=ecc_uncorrectable    xid=48
        """
        cluster, config, twin = _sandbox()
        if not cluster.is_running():
            raise self.fail("GPU faults are injected through the sandbox's mock NVML, and no sandbox runs here")
        logger.info(twin.fail_gpu(config.run_dir(), node, gpu, mode, xid))
        self.ctx.track(f"GPU {gpu} of {node} failed", lambda: twin.heal_gpu(config.run_dir(), node, gpu))

    @keyword(tags=("Fault", "Sandbox"))
    def heal_gpu(self, node: str, gpu: str) -> None:
        """Undoes the faults of GPU ``gpu`` (UUID) of ``node``: NVML reports it healthy again.

        Example:
        | `Heal GPU`    gpu-node-0    ${uuid}
        """
        _, config, twin = _sandbox()
        logger.info(twin.heal_gpu(config.run_dir(), node, gpu))
        self.ctx.untrack(f"GPU {gpu} of {node} failed")

    @keyword(tags=("Fault", "Sandbox"))
    def restart_control_plane_component(self, component: str) -> float:
        """Stops the sandbox's ``component`` (``kube-apiserver``, ``etcd``, ``kube-scheduler``, …) and starts it
        again; returns the seconds until it answered again.

        Example:
        | ${seconds} =    `Restart Control Plane Component`    kube-apiserver
        """
        cluster, _, _ = _sandbox()
        seconds = float(cluster.restart(component))
        logger.info(f"{component} restarted and ready in {seconds:.1f} s")
        self.ctx.connect(self.ctx.kubeconfig, self.ctx.kube_context)  # fresh connections to the new server
        return seconds

    @keyword(tags=("Fault", "Sandbox", "HAMi"))
    def kill_hami_container_process(self, component: str, container: str, node: str | None = None) -> int:
        """Kills (SIGKILL) the process of ``container`` in HAMi's ``component`` pod (``hami-scheduler`` or
        ``hami-device-plugin``; ``node`` picks the device-plugin pod of that node) as a crash would; the node
        agent restarts it as a kubelet does. Returns the killed pid.

        Example:
        | `Kill HAMi Container Process`    hami-scheduler    vgpu-scheduler-extender
        """
        import json
        import os
        import signal

        _, config, _ = _sandbox()
        selector = f"app.kubernetes.io/component={component}"
        pods = self.ctx.core.list_namespaced_pod(self.ctx.hami.namespace, label_selector=selector).items
        pods = [p for p in pods if node is None or p.spec.node_name == node]
        if not pods:
            raise self.fail(f"No {component} pod{' on ' + node if node else ''} in {self.ctx.hami.namespace}.")
        key = f"{self.ctx.hami.namespace}/{pods[0].metadata.name}"
        status = json.loads((config.run_dir() / "agent-status.json").read_text())
        entry = next((p for p in status["pods"] if p["pod"] == key), None)
        pid = next((c["pid"] for c in (entry or {}).get("containers", []) if c["name"] == container), None)
        if not pid:
            raise self.fail(f"The node agent runs no process for container {container} of pod {key}.")
        os.kill(pid, signal.SIGKILL)
        logger.info(f"killed pid {pid} of {key}/{container}")
        return int(pid)

    @keyword(tags=("Fault", "Node", "HAMi"))
    def wait_until_gpu_health_is(
        self, node: str, gpu: str, healthy: bool, timeout: timedelta | None = None, message: str | None = None
    ) -> None:
        """Waits up to ``timeout`` until HAMi's registration of ``node`` (``hami.io/node-nvidia-register``, written
        by its device plugin) reports GPU ``gpu`` with ``health`` = ``healthy``.

        Example:
        | `Wait Until GPU Health Is`    gpu-node-0    ${uuid}    ${False}    timeout=90s
        """
        key = self.ctx.vendor.register_annotation

        def health(items: list[Any]) -> bool | None:
            devices = parse_node_register(((items[0].metadata.annotations or {}) if items else {}).get(key))
            device = next((d for d in devices if d.id == gpu), None)
            return True if device is not None and device.health == healthy else None

        def describe(items: list[Any]) -> str:
            devices = parse_node_register(((items[0].metadata.annotations or {}) if items else {}).get(key))
            seen = ", ".join(f"{d.id} health={d.health}" for d in devices) or "no registered GPU"
            return f"Node {node} registers: {seen}; expected {gpu} health={healthy}."

        self.watch_until(
            self.ctx.core.list_node,
            health,
            self.ctx.timeout(timeout),
            f"HAMi's registration of GPU {gpu} on {node} as {'healthy' if healthy else 'unhealthy'}",
            describe,
            message,
            field_selector=f"metadata.name={node}",
        )

    @keyword(tags=("Fault", "Node"))
    def wait_until_node_advertises_slots_of_healthy_gpus(
        self, node: str, unhealthy: int = 0, timeout: timedelta | None = None, message: str | None = None
    ) -> int:
        """Waits up to ``timeout`` until ``node``'s allocatable GPU slots are those of its healthy GPUs: the slots
        HAMi registered (``count`` per GPU in ``hami.io/node-nvidia-register``) minus those of ``unhealthy`` GPUs.
        The kubelet counts only the healthy devices the plugin lists, so a failed GPU takes its slots away.
        Returns the allocatable count.

        Example:
        | `Wait Until Node Advertises Slots Of Healthy GPUs`    gpu-node-0    unhealthy=1    timeout=1 min
        """
        resource, key = self.ctx.vendor.gpu, self.ctx.vendor.register_annotation

        def figures(items: list[Any]) -> tuple[int, int]:
            node_object = items[0] if items else None
            devices = parse_node_register(((node_object.metadata.annotations or {}) if node_object else {}).get(key))
            expected = sum(d.count for d in devices) - unhealthy * (devices[0].count if devices else 0)
            allocatable = int(((node_object.status.allocatable or {}) if node_object else {}).get(resource, "0"))
            return expected, allocatable

        def settled(items: list[Any]) -> int | None:
            expected, allocatable = figures(items)
            return allocatable if allocatable == expected and expected > 0 else None

        def describe(items: list[Any]) -> str:
            expected, allocatable = figures(items)
            return (
                f"Node {node} advertises {allocatable} allocatable {resource}, expected {expected} "
                f"(the registered slots minus those of {unhealthy} unhealthy GPU(s))."
            )

        return self.watch_until(
            self.ctx.core.list_node,
            settled,
            self.ctx.timeout(timeout),
            f"Allocatable {resource} of the healthy GPUs on {node}",
            describe,
            message,
            field_selector=f"metadata.name={node}",
        )
