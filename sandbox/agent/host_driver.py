"""The node's real NVIDIA driver in GPU-node mode, given to containers as the NVIDIA container runtime gives it.

The twin has two kinds of GPU driver for its nodes. *Simulated* (the default): NVIDIA's mock NVML and our
``libcuda.so.1`` per node (``pods.py``: ``Node.driver_dir``/``nvml_dir``). *Host* (GPU-node mode,
``HAMI_E2E_GPU_NODE=1``, see ``sandbox/gpu_node.py``): one node that is this machine, whose real driver
``sandbox/gpu_node.py`` describes in ``<run>/gpu-node.json`` at ``sandbox up``: the GPUs (UUID, NVML index, device
minor, PCI name from ``/proc/driver/nvidia/gpus``), the control nodes (``/dev/nvidiactl``, ``/dev/nvidia-uvm``…),
host folders every GPU container gets read-only at the same path (driver libraries outside ``/usr``, the PyTorch
installation), the ``nvidia-modprobe`` paths to mask and environment additions.

A container whose ``NVIDIA_VISIBLE_DEVICES`` names GPUs (``all`` or UUIDs, as HAMi's Allocate answers) gets the
``gpu`` part of its ``enter.py`` spec from ``isolation()``: the control nodes and only the named GPUs'
``/dev/nvidia<minor>`` in a ``nodev`` ``/dev``; a container HAMi allocated also gets ``/proc/driver/nvidia/gpus``
reduced to its GPUs, ``nvidia-modprobe`` masked and CAP_MKNOD dropped — the container-like isolation the GPU host
tier measured (``tools/workloads/gpu_container.py``): nvidia-smi, NVML and HAMi-core then see only the given GPUs,
numbered from 0, as in a real container. No mock library is injected: HAMi's device plugin and vGPU monitor open the
host's ``libnvidia-ml.so.1``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GPU_NODE_ENV = "HAMI_E2E_GPU_NODE"
HOST_FILE = "gpu-node.json"


def gpu_node_enabled() -> bool:
    """GPU-node mode asked for (``HAMI_E2E_GPU_NODE=1`` or ``python -m sandbox up --gpu-node``)."""
    return os.environ.get(GPU_NODE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class HostGpu:
    uuid: str
    index: int     # NVML index (PCI bus order)
    minor: int     # /dev/nvidia<minor>
    pci: str       # its folder in /proc/driver/nvidia/gpus


@dataclass(frozen=True)
class HostDriver:
    node: str
    gpus: tuple[HostGpu, ...]
    control_devices: tuple[str, ...]
    binds: tuple[str, ...] = ()
    masked: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> HostDriver | None:
        """The description ``sandbox up`` wrote, or None (simulated GPUs)."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(node=data["node"], gpus=tuple(HostGpu(**gpu) for gpu in data["gpus"]),
                   control_devices=tuple(data["control_devices"]), binds=tuple(data.get("binds", [])),
                   masked=tuple(data.get("masked", [])), env=dict(data.get("env", {})))

    def visible(self, value: str) -> list[HostGpu]:
        """The GPUs ``NVIDIA_VISIBLE_DEVICES`` names: ``all``, or UUIDs / NVML indexes separated by commas."""
        if value.strip().lower() == "all":
            return list(self.gpus)
        chosen = []
        for item in (part.strip() for part in value.split(",")):
            match = [gpu for gpu in self.gpus if item in (gpu.uuid, str(gpu.index))]
            if not match:
                raise ValueError(f"NVIDIA_VISIBLE_DEVICES names {item!r}, which is no GPU of node {self.node} "
                                 f"({', '.join(gpu.uuid for gpu in self.gpus)})")
            chosen.append(match[0])
        return chosen

    def mounts(self) -> list[dict[str, Any]]:
        """Host folders a GPU container gets read-only at the same path."""
        return [{"source": path, "target": path, "readonly": True} for path in self.binds if os.path.exists(path)]

    def isolation(self, visible_devices: str, allocated: bool) -> dict[str, Any]:
        """The ``gpu`` part of the ``enter.py`` spec (module docstring)."""
        gpus = self.visible(visible_devices)
        spec: dict[str, Any] = {
            "devices": [*self.control_devices, *(f"/dev/nvidia{gpu.minor}" for gpu in gpus)],
            "proc_gpus": [gpu.pci for gpu in gpus] if allocated else None,
            "mask": list(self.masked) if allocated else [],
            "drop_mknod": allocated,
        }
        return spec

    def container_env(self, env: dict[str, str]) -> dict[str, str]:
        """What the host driver adds to a GPU container's environment (e.g. the driver's library folder)."""
        added = {}
        for name, value in self.env.items():
            if name == "LD_LIBRARY_PATH":
                added[name] = ":".join(p for p in (env.get(name, ""), value) if p)
            elif name not in env:
                added[name] = value
        return added
