"""NVIDIA's mock NVML (k8s-test-infra ``pkg/gpu/mocknvml``) and its control tool ``nvml-mock-ctl``, patched and built.

The archive is extracted into the build directory, our patches (``patches/mocknvml-*.patch``, each explaining itself)
are applied in name order, then ``make NO_PADDING=1`` builds ``libnvidia-ml.so.<version>`` with its
``libnvidia-ml.so.1`` and ``libnvidia-ml.so`` links from the vendored Go modules (``GOPROXY=off``: nothing is
downloaded), and ``go build ./cmd/nvml-mock-ctl`` the tool that writes fault overrides for running consumers.
The cache key covers the archive, the patches, the Go version and the flags.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..build import go_env
from . import buildcache, sources

PATCHES_DIR = Path(__file__).resolve().parent / "patches"
MAKE_FLAGS = ("NO_PADDING=1",)
SONAME = "libnvidia-ml.so.1"


@dataclass(frozen=True)
class MockNvml:
    lib_dir: Path  # libnvidia-ml.so.1 (and .so, .so.<version>)
    ctl: Path  # nvml-mock-ctl


def patches() -> list[Path]:
    return sorted(PATCHES_DIR.glob("mocknvml-*.patch"))


def _env() -> dict[str, str]:
    env = go_env()
    env.update(CGO_ENABLED="1", GOFLAGS="-mod=vendor", GOPROXY="off")
    return env


def _build(work: Path, log: Path, archive: Path) -> None:
    tree = sources.unpack(archive, work / "src")
    for patch in patches():
        buildcache.run(["patch", "-p1", "--forward", "--batch", "-i", str(patch)], f"applying {patch.name}", log,
                       cwd=tree)
    mock_dir = tree / "pkg" / "gpu" / "mocknvml"
    buildcache.run(["make", "-C", str(mock_dir), *MAKE_FLAGS], "make (mock NVML)", log, env=_env())
    lib_dir = work / "lib"
    lib_dir.mkdir()
    for path in mock_dir.glob("libnvidia-ml.so*"):
        if not path.name.endswith(".h"):
            shutil.copy2(path, lib_dir / path.name, follow_symlinks=False)
    (work / "bin").mkdir()
    buildcache.run(["go", "build", "-trimpath", "-o", str(work / "bin" / "nvml-mock-ctl"), "./cmd/nvml-mock-ctl"],
                   "go build ./cmd/nvml-mock-ctl", log, cwd=tree, env=_env())
    shutil.rmtree(work / "src")


def ensure_mocknvml() -> MockNvml:
    """Build (once per input) and return the mock NVML library directory and ``nvml-mock-ctl``."""
    go = buildcache.require_tool("go", "build NVIDIA's mock NVML (Go, vendored modules)")
    for tool in ("make", "gcc", "patch"):
        buildcache.require_tool(tool, "build NVIDIA's mock NVML")
    archive = sources.archive(sources.MOCK_NVML_ARCHIVE)
    go_version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()
    key = buildcache.digest(archive, *patches(), go_version, *MAKE_FLAGS)
    target = buildcache.ensure("mocknvml", key, f"the mock NVML from {archive.name}",
                               lambda work, log: _build(work, log, archive))
    return MockNvml(lib_dir=target / "lib", ctl=target / "bin" / "nvml-mock-ctl")
