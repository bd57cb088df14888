"""The simulated GPU: NVIDIA's mock NVML with per-node profiles, real nvidia-smi and HAMi-core, our CUDA driver.

See ``sandbox/gpu/README.md`` for the pieces and how a "GPU process" is run.
"""

from .mocknvml import MockNvml, ensure_mocknvml
from .profile import DEFAULT_CUDA, DEFAULT_DRIVER, Gpu, write_profile
from .sim import GpuSim, ensure_all

__all__ = ["DEFAULT_CUDA", "DEFAULT_DRIVER", "Gpu", "GpuSim", "MockNvml", "ensure_all", "ensure_mocknvml",
           "write_profile"]
