"""All simulated GPU pieces together, and the environment that makes a process a "GPU process" of a container.

A GPU process runs the real binaries (nvidia-smi, or our gpu-workload) with:

- ``LD_LIBRARY_PATH``: the mock NVML's directory and our CUDA driver's directory (a container gets both from the
  NVIDIA runtime);
- ``MOCK_NVML_CONFIG``: a profile holding only the container's GPUs (:func:`sandbox.gpu.write_profile`);
- ``MOCK_NVML_PROCESS_DIR``: the node's process directory (one per node, as all containers share the cards), where
  our driver publishes what each process holds and NVML reads it;
- ``LD_PRELOAD``: HAMi-core's ``libvgpu.so`` (a real container gets it through ``/etc/ld.so.preload``);
- the container's Allocate environment as HAMi's device plugin returned it: ``CUDA_DEVICE_MEMORY_LIMIT_<i>``,
  ``CUDA_DEVICE_SM_LIMIT``, ``NVIDIA_VISIBLE_DEVICES``, ``LIBCUDA_LOG_LEVEL`` and
  ``CUDA_DEVICE_MEMORY_SHARED_CACHE``, which must name a file of that container only (a fresh one per container:
  HAMi-core keeps the first process's limits in it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import SandboxError
from .hami_core import driver_functions, ensure_hami_core
from .headers import ensure_headers
from .mocknvml import ensure_mocknvml
from .native import ensure_native
from .nvidia_smi import ensure_nvidia_smi

SHARED_CACHE = "CUDA_DEVICE_MEMORY_SHARED_CACHE"


@dataclass(frozen=True)
class GpuSim:
    """Paths of the built pieces (all in the cache)."""

    mocknvml_dir: Path  # libnvidia-ml.so.1
    nvml_ctl: Path  # nvml-mock-ctl
    nvidia_smi: Path  # Debian's nvidia-smi 535
    libvgpu: Path  # HAMi-core
    libcuda_dir: Path  # our libcuda.so.1
    workload: Path  # our gpu-workload

    def process_env(self, profile: Path, container_env: Mapping[str, str], *, process_dir: Path | None = None,
                    hami_core: bool = True, context_mib: int | None = None,
                    base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a GPU process: ``base`` (e.g. the pod's env) + the container's Allocate env + ours.

        ``hami_core=False`` leaves HAMi-core out (the fault proof: limits are then not seen). ``context_mib`` sets
        the memory a CUDA context takes (default 518, an H100's).
        """
        if hami_core and not container_env.get(SHARED_CACHE):
            raise SandboxError(f"{SHARED_CACHE} is not set: HAMi-core would share /tmp/cudevshr.cache with every "
                               "process on this machine; give each container its own fresh file")
        env = {**(base or {}), **container_env}
        library_path = [str(self.mocknvml_dir), str(self.libcuda_dir)]
        if env.get("LD_LIBRARY_PATH"):
            library_path.append(env["LD_LIBRARY_PATH"])
        env.update(LD_LIBRARY_PATH=":".join(library_path), MOCK_NVML_CONFIG=str(profile))
        if process_dir is not None:
            env["MOCK_NVML_PROCESS_DIR"] = str(process_dir)
        if context_mib is not None:
            env["MOCK_CUDA_CONTEXT_MIB"] = str(context_mib)
        if hami_core:
            env["LD_PRELOAD"] = str(self.libvgpu)
        else:
            env.pop("LD_PRELOAD", None)
        return env


def ensure_all() -> GpuSim:
    """Build whatever the cache lacks (each piece once per input) and return every piece's path."""
    nvml = ensure_mocknvml()
    nvidia_smi = ensure_nvidia_smi()
    headers = ensure_headers()
    libvgpu = ensure_hami_core(headers)
    native = ensure_native(headers, driver_functions())
    return GpuSim(mocknvml_dir=nvml.lib_dir, nvml_ctl=nvml.ctl, nvidia_smi=nvidia_smi, libvgpu=libvgpu,
                  libcuda_dir=native.lib_dir, workload=native.workload)
