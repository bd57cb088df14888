"""``python -m sandbox up | down | status | env | build | hami`` — the offline sandbox's command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import build, cluster, config, netcheck, tools
from .agent.host_driver import GPU_NODE_ENV
from .errors import SandboxError
from .gpu import cli as gpu_cli
from .hami import cli as hami_cli


def _status() -> int:
    components = cluster.state()
    if not components:
        print("sandbox: not running")
        return 1
    for item in components:
        print(f"{item.name:<26} {'running, pid ' + str(item.pid) if item.pid else 'NOT RUNNING'}   log: {item.log}")
    pods = netcheck.pod_pids(config.run_dir())
    violations = netcheck.violations([item.pid for item in components if item.pid] + pods)
    checked = f"{len(components)} components and {len(pods)} processes of real pods (each in its pod's namespace)"
    print(f"network: every socket of {checked} on loopback" if not violations else
          "network: NOT LOOPBACK-ONLY: " + "; ".join(violations))
    print(f"Kubernetes {cluster.running_kube_version() or 'version not recorded'}")
    answering = cluster.api_answers()
    print(f"API server https://{config.HOST}:{config.PORTS.apiserver}: {'answering' if answering else 'NOT answering'}")
    print(f"KUBECONFIG={cluster.kubeconfig_path()}")
    return 0 if answering and not violations and all(item.pid for item in components) else 1


def _env() -> int:
    tools_file = config.run_dir() / "tools.json"
    print(f"export KUBECONFIG={cluster.kubeconfig_path()}")
    if tools_file.exists():
        paths = sorted({str(Path(p).parent) for p in json.loads(tools_file.read_text()).values()})
        print(f"export PATH={':'.join(paths)}:$PATH")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the sandbox (no-op when it already runs)")
    up.add_argument("--topology", type=Path,
                    help=f"GPU topology YAML (default: ${config.TOPOLOGY_ENV} or {config.TOPOLOGY_FILE.name})")
    up.add_argument("--gpu-node", action="store_true",
                    help="GPU-node mode: one node that is this machine, its real GPUs (sets HAMI_E2E_GPU_NODE=1; "
                         "see sandbox/gpu_node.py)")
    up.add_argument("--no-hami", action="store_true",
                    help="do not build or load HAMi (only the control plane and the fake nodes)")
    commands.add_parser("down", help="stop every sandbox process and remove its files (the cache stays)")
    commands.add_parser("status", help="say what runs; exit 0 only when everything runs and the API answers")
    commands.add_parser("env", help="print shell exports for KUBECONFIG and the helm/kubectl PATH")
    build_cmd = commands.add_parser("build", help="build or reuse the cached binaries and tools; print their directory")
    for parser_ in (up, build_cmd):
        parser_.add_argument("--kube-version", metavar="MINOR",
                             help=f"Kubernetes version, e.g. 1.34 (default: ${config.KUBE_VERSION_ENV} or "
                                  f"{config.default_kube_version()}; one of {', '.join(config.kube_modules())})")
    restart = commands.add_parser("restart", help="stop a control-plane component and start it again (a fault)")
    restart.add_argument("component", choices=("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                                               "kwok"))
    hami_cli.add_parser(commands)
    gpu_cli.add_parser(commands)
    args = parser.parse_args(argv)
    try:
        if getattr(args, "kube_version", None):
            os.environ[config.KUBE_VERSION_ENV] = config.kube_version(args.kube_version)   # also for child processes
        if args.command == "hami":
            return hami_cli.run(args)
        if args.command == "gpu":
            return gpu_cli.run(args)
        if args.command == "up":
            if args.gpu_node:
                os.environ[GPU_NODE_ENV] = "1"   # the node agent and kwok, started by up, inherit it
            cluster.up(args.topology, load_hami=not args.no_hami)
            return 0
        if args.command == "down":
            cluster.down()
            return 0
        if args.command == "status":
            return _status()
        if args.command == "restart":
            print(f"{args.component} restarted and ready in {cluster.restart(args.component):.1f}s")
            return 0
        if args.command == "env":
            return _env()
        print(build.ensure_binaries())
        print(tools.ensure_tools())
        return 0
    except SandboxError as error:
        print(f"sandbox error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
