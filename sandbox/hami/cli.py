"""``python -m sandbox hami <command>``: the HAMi subcommand group of the sandbox CLI.

``add_parser`` registers the group and returns its subparsers, so more commands join with
``group.add_parser(...)`` plus an entry in ``HANDLERS``; ``run`` dispatches on ``args.hami_command``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..errors import SandboxError
from .build import ensure_build


def _build(args: argparse.Namespace) -> int:
    print(ensure_build(args.source).root)
    return 0


def _running_sandbox() -> tuple[Path, Path]:
    from .. import cluster, config, tools

    if not cluster.is_running():
        raise SandboxError("the sandbox is not running: start it with `python -m sandbox up`")
    return config.run_dir(), tools.ensure_tools().helm


def _install(args: argparse.Namespace) -> int:
    from .. import twin

    run_dir, helm = _running_sandbox()
    if args.source:
        twin.load_hami(run_dir, helm, twin.topology_of(run_dir), args.source)
    print(twin.install(run_dir, helm, args.version))
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    from .. import twin

    run_dir, helm = _running_sandbox()
    print(twin.uninstall(run_dir, helm))
    return 0


def _status(args: argparse.Namespace) -> int:
    from .. import twin

    run_dir, _ = _running_sandbox()
    print(twin.describe_status(run_dir))
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "build": _build, "install": _install, "uninstall": _uninstall, "status": _status}


def add_parser(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add ``hami`` to the sandbox CLI's subcommands; returns the group's own subparsers."""
    hami = commands.add_parser("hami", help="HAMi from a source: build, install into the running sandbox, status")
    group = hami.add_subparsers(dest="hami_command", required=True)
    build = group.add_parser("build", help="build or reuse HAMi's binaries, image folder and chart; print the folder")
    build.add_argument("--source", default=None,
                       help="a HAMi checkout, a .tar.gz of one, or a release number such as 2.9.0 "
                            "(default: HAMI_SOURCE, else HAMi-2.10.0.tar.gz in ../shared/third_party)")
    install = group.add_parser("install", help="helm install HAMi's chart from the sandbox's chart repository "
                                               "(what the suite does itself); waits until it is ready")
    install.add_argument("--source", default=None, help="build and load this HAMi source first (as for build)")
    install.add_argument("--version", default=None, help="chart version (default: the loaded source's)")
    group.add_parser("uninstall", help="helm uninstall the release (its processes stop with its pods)")
    group.add_parser("status", help="the loaded HAMi builds and every real pod process: pid, restarts, log")
    return group


def run(args: argparse.Namespace) -> int:
    return HANDLERS[args.hami_command](args)
