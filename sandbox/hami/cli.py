"""``python -m sandbox hami <command>``: the HAMi subcommand group of the sandbox CLI.

``add_parser`` registers the group and returns its subparsers, so more commands join with
``group.add_parser(...)`` plus an entry in ``HANDLERS``; ``run`` dispatches on ``args.hami_command``.
"""

from __future__ import annotations

import argparse
from typing import Callable

from .build import ensure_build


def _build(args: argparse.Namespace) -> int:
    print(ensure_build(args.source).root)
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {"build": _build}


def add_parser(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add ``hami`` to the sandbox CLI's subcommands; returns the group's own subparsers."""
    hami = commands.add_parser("hami", help="HAMi from a source: build (more to come)")
    group = hami.add_subparsers(dest="hami_command", required=True)
    build = group.add_parser("build", help="build or reuse HAMi's binaries, image folder and chart; print the folder")
    build.add_argument("--source", default=None,
                       help="a HAMi checkout, a .tar.gz of one, or a release number such as 2.9.0 "
                            "(default: HAMI_SOURCE, else HAMi-2.10.0.tar.gz in ../shared/third_party)")
    return group


def run(args: argparse.Namespace) -> int:
    return HANDLERS[args.hami_command](args)
