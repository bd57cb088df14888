"""The sandbox as other code uses it: where to connect, starting it, and whether it runs.

The keyword library and the tools use these three calls instead of the sandbox's run-folder files::

    from sandbox import api

    conn = api.start()          # python -m sandbox up (a no-op when it runs), then its connection
    conn.kubeconfig, conn.helm, conn.kubectl, conn.hami["available"]
    api.status().running

Everything refers to the sandbox of ``HAMI_E2E_SANDBOX_DIR`` and ``HAMI_E2E_PORT_OFFSET`` (``sandbox/config.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import cluster, config, twin
from .errors import SandboxError


@dataclass(frozen=True)
class Connection:
    """How to reach a running sandbox: its kubeconfig, its helm and kubectl, and what it loaded of HAMi.

    ``hami`` is what ``sandbox up`` recorded: ``available`` (bool), ``reason`` (why not), ``releases`` (the HAMi
    builds, current first), ``chart_repo`` (the loopback chart repository URL) and ``port_offset``.
    """

    kubeconfig: Path
    helm: Path
    kubectl: Path
    hami: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Status:
    """Whether the sandbox runs: every component alive and the API server answering."""

    running: bool
    api_answering: bool
    kube_version: str | None
    components: dict[str, int | None]  # component name -> pid (None: not running)


def connection() -> Connection:
    """The connection of the sandbox as it was started; fails with `SandboxError` when it was never started."""
    run = config.run_dir()
    tools_file = run / "tools.json"
    try:
        tools = json.loads(tools_file.read_text())
    except (OSError, ValueError):
        raise SandboxError(
            f"the sandbox in {run} was not started (no {tools_file.name}): run python -m sandbox up"
        ) from None
    return Connection(cluster.kubeconfig_path(), Path(tools["helm"]), Path(tools["kubectl"]), twin.read_info(run))


def start(on_output: Callable[[str], None] | None = None) -> Connection:
    """Start the sandbox unless it runs (``python -m sandbox up`` in a child process: on first use it builds its
    binaries for several minutes) and return its connection. ``on_output`` gets what ``up`` printed; a failure
    raises `SandboxError` with that output, which ends with the sandbox's own error sentence."""
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "up"],
        cwd=config.REPO_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if on_output is not None:
        on_output(result.stdout)
    if result.returncode != 0:
        raise SandboxError(f"the sandbox did not start:\n{result.stdout.strip()}")
    return connection()


def status() -> Status:
    """What runs now (no process is started)."""
    components = {item.name: item.pid for item in cluster.state()}
    answering = bool(components) and cluster.api_answers()
    running = bool(components) and all(components.values()) and answering
    return Status(running, answering, cluster.running_kube_version(), components)
