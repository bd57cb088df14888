"""CUDA and NVML headers from PyPI wheels (``nvidia-cuda-runtime``, ``nvidia-nvml-dev``), downloaded into the cache.

HAMi-core and our own driver and workload compile against them; nothing links against a CUDA library from them.
The pins follow HAMi's release image (``nvidia/cuda:13.3.0`` in HAMi v2.10.0's Dockerfile): HAMi-core needs
``cuda.h`` >= 12.5 (``CUctxCreateParams``), and the 13.x headers select its CUDA 13 code paths. The wheels go to
the cache, never into the virtual environment.
"""

from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import SandboxError
from . import buildcache

WHEELS = (("nvidia-cuda-runtime", "13.3.29"), ("nvidia-nvml-dev", "13.3.29"))
INCLUDE_PREFIX = "nvidia/cu13/include/"


def _build(work: Path, log: Path) -> None:
    include = work / "include"
    include.mkdir()
    with tempfile.TemporaryDirectory() as downloads:
        buildcache.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                        "--dest", downloads, *(f"{name}=={version}" for name, version in WHEELS)],
                       "pip download (CUDA/NVML header wheels)", log)
        for wheel in sorted(Path(downloads).glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    if member.startswith(INCLUDE_PREFIX) and not member.endswith("/"):
                        target = include / member[len(INCLUDE_PREFIX):]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(archive.read(member))
    for header in ("cuda.h", "nvml.h"):
        if not (include / header).is_file():
            raise SandboxError(f"the wheels {WHEELS} carry no {INCLUDE_PREFIX}{header}; see {log}")


def ensure_headers() -> Path:
    """Return the include directory holding ``cuda.h`` and ``nvml.h``."""
    key = buildcache.digest(*(f"{name}=={version}" for name, version in WHEELS))
    label = "CUDA/NVML headers (" + ", ".join(f"{name} {version}" for name, version in WHEELS) + ")"
    return buildcache.ensure("cuda-headers", key, label, _build) / "include"
