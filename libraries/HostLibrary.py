"""HostLibrary: the keyword library of the GPU host tier (facade over ``hami_e2e/host/``): nvidia-smi parsing plus
running processes with HAMi-core's ``libvgpu.so`` preloaded, on the host or as a container given some GPUs.

``resources/host.resource`` imports it by path (``Library    ${CURDIR}/../libraries/HostLibrary.py``), so it also
works on a GPU machine where this project is not installed: Robot Framework puts ``libraries/`` on the module search
path while it imports a library given by path, which is where the ``hami_e2e`` package lives.
"""

from __future__ import annotations

from robotlibcore import DynamicCore

from hami_e2e.core.context import Context
from hami_e2e.host import CoreLimitKeywords, HostSession, HostSetupKeywords, HostWorkloadKeywords
from hami_e2e.keywords.nvidia_smi import NvidiaSmiKeywords

__version__ = "0.2.0"


class HostLibrary(DynamicCore):
    """Keywords of the GPU host tier (``suites/host/``): `Prepare GPU Host`, `Set HAMi-Core Environment`,
    `Set Up Container Given GPUs`, `Run Nvidia Smi Under HAMi-Core`, the workload keywords, and the nvidia-smi
    assertions such as `GPU Memory Total Should Be`."""

    ROBOT_LIBRARY_SCOPE = "GLOBAL"
    ROBOT_LIBRARY_VERSION = __version__

    def __init__(self) -> None:
        self.ctx = Context()
        self.session = HostSession()
        DynamicCore.__init__(
            self,
            [
                NvidiaSmiKeywords(self.ctx),
                HostSetupKeywords(self.session),
                HostWorkloadKeywords(self.session),
                CoreLimitKeywords(self.session),
            ],
        )
