"""State of the GPU host tier: the host found once per run and the profiles (host or container) of the current
test, shared by the keyword components of ``HostLibrary``."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..core.errors import HamiE2EFailure, failure


@dataclass(frozen=True)
class HostGpu:
    """One GPU of the host as plain nvidia-smi lists it (NVML index order)."""

    index: int
    uuid: str
    name: str
    memory_mib: int
    bus_id: str


@dataclass
class HostSetup:
    """What `Prepare GPU Host` found and chose; kept for the whole run (the library has GLOBAL scope)."""

    libvgpu: Path
    libvgpu_sha256: str
    hami_core_commit: str
    preload: bool
    workdir: Path
    nvidia_smi: str
    gpus: list[HostGpu]
    driver_version: str
    cuda_version: str
    command_timeout: timedelta
    ready_timeout: timedelta
    isolation: str  # "" when a container view of some GPUs can be built, else why not
    workload: str = ""  # torch | cupy | cuda-c
    workload_version: str = ""
    python: str | None = None
    nvcc: str | None = None
    cuda_c_binary: Path | None = None

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    def gpu(self, index: int) -> HostGpu:
        """The host GPU with NVML index ``index``; fails naming the GPUs there are."""
        for gpu in self.gpus:
            if gpu.index == index:
                return gpu
        raise HamiE2EFailure(f"This host has no GPU {index}; it has {[g.index for g in self.gpus]}.")

    def facts(self) -> dict[str, Any]:
        first = self.gpus[0]
        return {
            "target": "GPU host",
            "gpu_model": first.name,
            "gpu_count": self.gpu_count,
            "card_mib": first.memory_mib,
            "gpu_uuids": ", ".join(g.uuid for g in self.gpus),
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "libvgpu": str(self.libvgpu),
            "libvgpu_sha256": self.libvgpu_sha256,
            "hami_core_commit": self.hami_core_commit or "not given (set HAMI_CORE_COMMIT)",
            "workload": f"{self.workload} {self.workload_version}".strip(),
            "workload_kind": self.workload,
            "preload": self.preload,
            "isolation": self.isolation or "private mount namespace per container (root)",
        }


@dataclass
class Profile:
    """Where and how the next processes run: on the host (every GPU) or as a container given some GPUs, with
    HAMi-core variables and one shared region (``CUDA_DEVICE_MEMORY_SHARED_CACHE``) of their own."""

    name: str
    variables: dict[str, str]
    cache: Path
    gpus: list[HostGpu] | None = None  # None: the host, every GPU

    def describe(self) -> str:
        shown = " ".join(f"{k}={v}" for k, v in self.variables.items()) or "(no HAMi-core variables)"
        where = (
            "on the host (every GPU)"
            if self.gpus is None
            else f"in container '{self.name}' given host GPU(s) {', '.join(str(g.index) for g in self.gpus)}"
        )
        return f"{where}: {shown}, shared region {self.cache}"


@dataclass
class Background:
    """A workload started with `Start Workload Holding GPU Memory`."""

    description: str
    process: subprocess.Popen
    output_file: Path
    handle: dict[str, Any] = field(default_factory=dict)


@dataclass
class HostSession:
    """Everything the host keyword components share: the prepared host, the current test's profiles and the
    processes it left running."""

    host: HostSetup | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)
    current: Profile | None = None
    background: list[Background] = field(default_factory=list)
    counter: int = 0

    def require_host(self) -> HostSetup:
        if self.host is None:
            raise HamiE2EFailure(
                "The GPU host is not prepared: run the folder (robot suites/host/) so that its __init__.robot "
                "calls `Prepare GPU Host`."
            )
        return self.host

    def new_cache(self) -> Path:
        """A fresh shared-region file in the run's work folder."""
        self.counter += 1
        return self.require_host().workdir / f"cudevshr-{self.counter}.cache"

    def profile(self) -> Profile:
        """The current profile; the host without HAMi-core variables when the test set none."""
        if self.current is None:
            self.current = Profile("host", {}, self.new_cache())
        return self.current


class HostComponent:
    """Base of the host keyword components: they share one `HostSession`."""

    #: Builds the failure an assertion raises: ``message`` (the keyword's ``message=``) replaces the generated text.
    fail = staticmethod(failure)

    def __init__(self, session: HostSession) -> None:
        self.session = session
