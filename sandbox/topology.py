"""The declarative GPU topology of the sandbox (variables/sandbox_topology*.yaml) and the Node objects it yields.

Each node has GPUs (UUID, model name, memory) and a simulated driver: ``driver``/``cuda`` versions per node, default
the file's top-level ``driver``/``cuda``, else the measured H100 host's (580.159.04, CUDA 13.0). They go into the
node's mock NVML profile, so nvidia-smi on the node and in its GPU containers reports them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import SandboxError
from .gpu.profile import DEFAULT_CUDA, DEFAULT_DRIVER, VERSION_PATTERN


@dataclass(frozen=True)
class Gpu:
    uuid: str
    model: str
    memory_mib: int


@dataclass(frozen=True)
class Node:
    name: str
    labels: dict[str, str]
    gpus: tuple[Gpu, ...]
    driver: str = DEFAULT_DRIVER
    cuda: str = DEFAULT_CUDA


@dataclass(frozen=True)
class Topology:
    resource_name: str
    split_count: int
    node_resources: dict[str, str]
    nodes: tuple[Node, ...]

    def node_object(self, node: Node) -> dict[str, Any]:
        """The v1 Node for ``node``: kwok-managed, GPU labels, GPU capacity, no address (kwok sets loopback)."""
        models = sorted({gpu.model for gpu in node.gpus})
        labels = {
            "kubernetes.io/hostname": node.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            "nvidia.com/gpu.product": "-".join(models[0].split()) if len(models) == 1 else "mixed",
            "nvidia.com/gpu.count": str(len(node.gpus)),
            "nvidia.com/gpu.memory": str(min(gpu.memory_mib for gpu in node.gpus)),
            "nvidia.com/cuda.driver-version.full": node.driver,
            "nvidia.com/cuda.runtime-version.full": node.cuda,
            **node.labels,
        }
        resources = {**self.node_resources, self.resource_name: str(len(node.gpus) * self.split_count)}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node.name, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}},
            "status": {"capacity": resources, "allocatable": dict(resources)},
        }


def load(path: Path) -> Topology:
    try:
        data = yaml.safe_load(path.read_text())
        nodes = tuple(
            Node(
                name=str(item["name"]),
                labels={str(k): str(v) for k, v in (item.get("labels") or {}).items()},
                gpus=tuple(Gpu(str(g["uuid"]), str(g["model"]), int(g["memoryMiB"])) for g in item["gpus"]),
                driver=str(item.get("driver", data.get("driver", DEFAULT_DRIVER))),
                cuda=str(item.get("cuda", data.get("cuda", DEFAULT_CUDA))),
            )
            for item in data["nodes"]
        )
        topology = Topology(
            resource_name=str(data.get("resourceName", "nvidia.com/gpu")),
            split_count=int(data.get("deviceSplitCount", 10)),
            node_resources={str(k): str(v) for k, v in (data.get("node") or {}).items()},
            nodes=nodes,
        )
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as error:
        raise SandboxError(f"cannot read the GPU topology {path}: {error!r}") from error
    uuids = [gpu.uuid for node in topology.nodes for gpu in node.gpus]
    if len(set(uuids)) != len(uuids):
        raise SandboxError(f"the GPU topology {path} lists a GPU UUID twice")
    if not topology.nodes or any(not node.gpus for node in topology.nodes):
        raise SandboxError(f"the GPU topology {path} needs at least one node, each with at least one GPU")
    for node in topology.nodes:
        if not (VERSION_PATTERN.match(node.driver) and VERSION_PATTERN.match(node.cuda)):
            raise SandboxError(f"the GPU topology {path}: node {node.name} has driver {node.driver!r} and CUDA "
                               f"{node.cuda!r}; write them like 535.261.03 and 12.2 (quoted, so YAML keeps them text)")
    return topology
