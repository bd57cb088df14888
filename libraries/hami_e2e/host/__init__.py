"""Keyword components of the GPU host tier (``libraries/HostLibrary.py``): HAMi-core's ``libvgpu.so`` on a GPU host
without Kubernetes.

* `state` — what the run found (`HostSetup`) and what the current test set up (`HostSession`, `Profile`);
* `processes` — environments, running processes on the host or in a container view of some GPUs;
* `discovery` — nvidia-smi on the host, the workload choice, the CUDA C build;
* `protocol` — reading the workloads' result lines and HAMi-core's utilization watcher;
* `setup_keywords`, `workload_keywords`, `core_limit_keywords` — the keywords.
"""

from .core_limit_keywords import CoreLimitKeywords
from .setup_keywords import HostSetupKeywords
from .state import HostSession
from .workload_keywords import HostWorkloadKeywords

__all__ = ["CoreLimitKeywords", "HostSession", "HostSetupKeywords", "HostWorkloadKeywords"]
