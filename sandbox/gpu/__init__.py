"""The simulated GPU: NVIDIA's mock NVML with per-node profiles, real nvidia-smi and HAMi-core, our CUDA driver.

See ``sandbox/gpu/README.md`` for how a "GPU process" is run.
"""

from .mocknvml import MockNvml, ensure_mocknvml
from .profile import DEFAULT_CUDA, DEFAULT_DRIVER, Gpu, write_profile

__all__ = ["DEFAULT_CUDA", "DEFAULT_DRIVER", "Gpu", "MockNvml", "ensure_mocknvml", "write_profile"]
