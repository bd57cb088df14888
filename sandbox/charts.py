"""A Helm chart repository on loopback serving the HAMi charts the sandbox built, as a user's repository would.

``helm repo add hami-charts http://127.0.0.1:<port>/`` then ``helm install hami hami-charts/hami --version 2.10.0``
works exactly as against HAMi's public repository, including upgrades between versions (2.9.0 -> 2.10.0). The
charts come from the HAMi sources (``sandbox/hami``): packaged with ``helm package`` and indexed with
``helm repo index``; the server is Python's ``http.server`` bound to 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from . import config
from .errors import SandboxError
from .processes import Component

BASE_PORT = 30391   # odd like every sandbox port (see config.BASE_PORTS); its last three digits differ from every other
                    # sandbox port's, so offsets of 1000s never collide


def port() -> int:
    return BASE_PORT + config.PORT_OFFSET


def url() -> str:
    return f"http://{config.HOST}:{port()}/"


def repo_dir(run_dir: Path) -> Path:
    return run_dir / "charts"


def publish(helm: Path, chart_dirs: list[Path], run_dir: Path) -> list[str]:
    """Package each chart folder into the repository and rewrite its index; returns the versions published."""
    target = repo_dir(run_dir)
    target.mkdir(parents=True, exist_ok=True)
    for chart in chart_dirs:
        result = subprocess.run([str(helm), "package", str(chart), "--destination", str(target)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise SandboxError(f"helm package {chart} failed: {result.stderr.strip()}")
    result = subprocess.run([str(helm), "repo", "index", str(target), "--url", url().rstrip("/")],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SandboxError(f"helm repo index {target} failed: {result.stderr.strip()}")
    return sorted(p.name.removesuffix(".tgz") for p in target.glob("*.tgz"))


def component(run_dir: Path) -> Component:
    from .control_plane import http_get

    target = repo_dir(run_dir)
    target.mkdir(parents=True, exist_ok=True)
    return Component(
        "chart-repo",
        [sys.executable, "-m", "http.server", "--bind", config.HOST, "--directory", str(target), str(port())],
        [port()],
        lambda: http_get(port(), "/", tls=None)[0] == 200,
    )
