"""``python -m sandbox.agent --run-dir DIR --topology FILE``: the node agent process (started by ``sandbox up``)."""

from __future__ import annotations

import argparse
import faulthandler
import signal
from pathlib import Path

from kubernetes import client
from kubernetes import config as kube_config

from .. import topology
from .agent import Agent
from .host_driver import HOST_FILE, HostDriver
from .namespaces import check_privileges
from .pods import Node


def nodes_of(run_dir: Path, topology_file: Path) -> dict[str, Node]:
    """The fake nodes with their root folders and, when prepared (``twin.install_node_drivers``), their driver; in
    GPU-node mode (``<run>/gpu-node.json``) the node that is this machine gets its real driver."""
    nodes = {}
    gpu_topology = topology.load(topology_file)
    host = HostDriver.load(run_dir / HOST_FILE)
    for node in gpu_topology.nodes:
        base = run_dir / "nodes" / node.name
        driver, nvml = base / "driver", base / "nvml"
        nodes[node.name] = Node(node.name, base / "root", driver if driver.is_dir() else None,
                                nvml if nvml.is_dir() else None,
                                {gpu.uuid: (gpu.model, gpu.memory_mib) for gpu in node.gpus}, base / "allocations",
                                gpu_topology.resource_name, host if host is not None and host.node == node.name else None)
    return nodes


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.agent", description=__doc__)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--topology", type=Path, required=True)
    args = parser.parse_args()
    check_privileges()
    faulthandler.register(signal.SIGUSR1)   # `kill -USR1 <agent pid>` writes every thread's stack to its log
    kubeconfig = args.run_dir / "kubeconfig"
    configuration = client.Configuration()
    kube_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    api = client.ApiClient(configuration)
    Agent(api, args.run_dir, nodes_of(args.run_dir, args.topology), configuration.host,
          args.run_dir / "pki" / "ca.crt").run()


if __name__ == "__main__":
    main()
