"""``python -m sandbox gpu <command>``: the simulated-GPU subcommand group of the sandbox CLI.

``gpu build`` builds or reuses every piece and prints one ``name=path`` line each (the fields of
:class:`sandbox.gpu.GpuSim`); ``gpu profile`` writes a mock NVML profile of H100s; ``gpu fail`` / ``gpu heal``
inject and undo GPU faults on a running sandbox's node.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .profile import DEFAULT_CUDA, DEFAULT_DRIVER, Gpu, write_profile
from .sim import ensure_all


def _build(args: argparse.Namespace) -> int:
    for field, path in dataclasses.asdict(ensure_all()).items():
        print(f"{field}={path}")
    return 0


def _profile(args: argparse.Namespace) -> int:
    gpus = [Gpu(index, uuid, memory_mib=args.memory_mib) for index, uuid in enumerate(args.uuid)]
    print(write_profile(args.path, gpus, driver=args.driver, cuda=args.cuda))
    return 0


def _fail(args: argparse.Namespace) -> int:
    from .. import config, twin

    print(twin.fail_gpu(config.run_dir(), args.node, args.gpu, args.mode, args.xid))
    return 0


def _heal(args: argparse.Namespace) -> int:
    from .. import config, twin

    print(twin.heal_gpu(config.run_dir(), args.node, args.gpu))
    return 0


def add_parser(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add ``gpu`` to the sandbox CLI's subcommands; returns the group's own subparsers."""
    gpu = commands.add_parser("gpu", help="the simulated GPU: build its pieces, write NVML profiles")
    group = gpu.add_subparsers(dest="gpu_command", required=True)
    group.add_parser("build", help="build or reuse the mock NVML, nvidia-smi, HAMi-core, our libcuda and "
                                   "gpu-workload; print name=path lines")
    profile = group.add_parser("profile", help="write a mock NVML profile (MOCK_NVML_CONFIG) of H100s")
    profile.add_argument("path", type=Path)
    profile.add_argument("--uuid", action="append", required=True, help="a GPU's UUID; repeat for more GPUs")
    profile.add_argument("--memory-mib", type=int, default=Gpu.memory_mib, help="memory of each GPU")
    profile.add_argument("--driver", default=DEFAULT_DRIVER)
    profile.add_argument("--cuda", default=DEFAULT_CUDA)
    fail = group.add_parser("fail", help="make a GPU of a running sandbox's node fail as NVML reports it "
                                         "(HAMi's device plugin and the containers given it see it)")
    fail.add_argument("--node", required=True)
    fail.add_argument("--gpu", required=True, help="the GPU's UUID or its index on the node")
    fail.add_argument("--mode", required=True, choices=("lost", "fallen_off_bus", "ecc_uncorrectable"))
    fail.add_argument("--xid", type=int, default=None, help="the Xid event to report (e.g. 48 for ECC)")
    heal = group.add_parser("heal", help="undo injected GPU faults on a node")
    heal.add_argument("--node", required=True)
    heal.add_argument("--gpu", default="all", help="a UUID or index (default: every GPU of the node)")
    return group


def run(args: argparse.Namespace) -> int:
    handlers = {"build": _build, "profile": _profile, "fail": _fail, "heal": _heal}
    return handlers[args.gpu_command](args)
