"""Profiles for the mock NVML (its ``MOCK_NVML_CONFIG`` YAML): which GPUs a node, or a pod, sees.

A profile lists GPUs by index, UUID, model name and memory, plus the driver and CUDA versions. Each model's
architecture, power, idle temperature and reserved memory come from ``models.py``; the rest is an H100 SXM at idle as
measured on a real one (``fixtures/nvidia-smi/``, driver 580.159.04, CUDA 13.0): 480 MiB reserved, 32 C, 69 W of
700 W, persistence on, ECC on, MIG off. A one-GPU profile with the defaults makes nvidia-smi's ``--query-gpu`` CSV
byte-identical to the real capture. The compute capability is the first GPU's for all (the mock takes it from the
defaults only).

Indices run 0..n-1 as NVML numbers them: a pod's profile renumbers its allocated GPUs from 0, as a container sees
them. The mock simulates at most 8 GPUs. Fault overrides written by ``nvml-mock-ctl`` go to ``overrides.yaml``
beside the profile (or ``MOCK_NVML_OVERRIDES``).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import SandboxError
from .models import Model, model_of

H100_NAME = "NVIDIA H100 80GB HBM3"
H100_MEMORY_MIB = 81559
DEFAULT_DRIVER = "580.159.04"
DEFAULT_CUDA = "13.0"
MAX_GPUS = 8
MIB = 1 << 20

UUID_PATTERN = re.compile(r"^GPU-[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
VERSION_PATTERN = re.compile(r"^\d+\.\d+(\.\d+)?$")


@dataclass(frozen=True)
class Gpu:
    """One simulated GPU. ``pci_bus_id`` defaults to ``0000:00:<06 + index>.0`` (the capture's GPU is 00:06.0)."""

    index: int
    uuid: str
    name: str = H100_NAME
    memory_mib: int = H100_MEMORY_MIB
    reserved_mib: int | None = None     # None: what the model reserves (``models.py``; H100: 480 MiB)
    pci_bus_id: str | None = None

    def bus_id(self) -> str:
        return self.pci_bus_id or f"0000:00:{6 + self.index:02X}.0"

    def reserved(self) -> int:
        return model_of(self.name).reserved_mib if self.reserved_mib is None else self.reserved_mib


def _check(gpus: Sequence[Gpu], driver: str, cuda: str) -> None:
    if not 1 <= len(gpus) <= MAX_GPUS:
        raise SandboxError(f"a mock NVML profile holds 1 to {MAX_GPUS} GPUs, not {len(gpus)}")
    if [gpu.index for gpu in gpus] != list(range(len(gpus))):
        raise SandboxError(f"GPU indices must run 0..{len(gpus) - 1} in order, got {[gpu.index for gpu in gpus]}")
    for gpu in gpus:
        if not UUID_PATTERN.match(gpu.uuid):
            raise SandboxError(f"GPU {gpu.index}: {gpu.uuid!r} is not a GPU UUID "
                               "(GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
        if not gpu.name.strip() or not 0 <= gpu.reserved() < gpu.memory_mib:
            raise SandboxError(f"GPU {gpu.index}: needs a name and memory_mib > reserved_mib >= 0")
    if len({gpu.uuid for gpu in gpus}) != len(gpus):
        raise SandboxError("GPU UUIDs in one profile must differ")
    for label, version in (("driver", driver), ("CUDA", cuda)):
        if not VERSION_PATTERN.match(version):
            raise SandboxError(f"{label} version {version!r} is not like 580.159.04 / 13.0")


def _power(model: Model) -> dict[str, int]:
    return {"default_limit_mw": model.power_limit_w * 1000, "enforced_limit_mw": model.power_limit_w * 1000,
            "min_limit_mw": model.power_min_w * 1000, "max_limit_mw": model.power_max_w * 1000,
            "current_draw_mw": model.idle_w * 1000}


def _device(gpu: Gpu, defaults: Model) -> dict[str, Any]:
    total = gpu.memory_mib * MIB
    reserved = gpu.reserved() * MIB
    device = {
        "index": gpu.index,
        "uuid": gpu.uuid,
        "minor_number": gpu.index,
        "name": gpu.name,
        "pci": {"bus_id": gpu.bus_id()},
        "memory": {"total_bytes": total, "reserved_bytes": reserved, "free_bytes": total - reserved, "used_bytes": 0},
    }
    model = model_of(gpu.name)
    if model != defaults:   # another model on the same node: its own architecture, power and temperature
        device.update(architecture=model.architecture, power=_power(model),
                      thermal={"temperature_gpu_c": model.temperature_c})
    return device


def profile(gpus: Sequence[Gpu], driver: str = DEFAULT_DRIVER, cuda: str = DEFAULT_CUDA) -> dict[str, Any]:
    """The profile as a mapping (what :func:`write_profile` writes)."""
    _check(gpus, driver, cuda)
    cuda_major, cuda_minor = (int(part) for part in cuda.split(".")[:2])
    first = model_of(gpus[0].name)
    return {
        "version": "1.0",
        "system": {
            "driver_version": driver,
            "nvml_version": f"{cuda_major}.{driver}",
            "cuda_version": f"{cuda_major}.{cuda_minor}",
            "cuda_version_major": cuda_major,
            "cuda_version_minor": cuda_minor,
        },
        "device_defaults": {
            "brand": "nvidia",
            "architecture": first.architecture,
            "compute_capability": {"major": first.compute_capability[0], "minor": first.compute_capability[1]},
            "persistence_mode": "enabled",
            "compute_mode": "default",
            "performance_state": "P0",
            "utilization": {"gpu": 0, "memory": 0},
            "power": _power(first),
            "thermal": {"temperature_gpu_c": first.temperature_c},
            "fan": {"count": 0},
            "ecc": {"mode_current": "enabled", "mode_pending": "enabled"},
            "mig": {"mode_current": "disabled", "mode_pending": "disabled"},
        },
        "devices": [_device(gpu, first) for gpu in gpus],
    }


def write_profile(path: Path, gpus: Sequence[Gpu], driver: str = DEFAULT_DRIVER, cuda: str = DEFAULT_CUDA) -> Path:
    """Write the mock NVML profile for ``gpus`` to ``path`` (atomically) and return ``path``.

    Point ``MOCK_NVML_CONFIG`` at it. An unreadable profile would make the mock fall back to 8 A100s with only a
    stderr warning, so the profile is checked here instead.
    """
    text = yaml.safe_dump(profile(gpus, driver, cuda), sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path
