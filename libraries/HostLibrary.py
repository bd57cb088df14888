"""Facade for the GPU host tier until ``HamiLibrary.py`` gathers every component: nvidia-smi parsing plus running
processes with HAMi-core's ``libvgpu.so`` preloaded, on the host or as a container given some GPUs.

Import it by path from a suite: ``Library    ${CURDIR}/../../libraries/HostLibrary.py``. Robot Framework puts this
folder on ``sys.path`` while importing, so ``hami_keywords`` and ``nvidia_smi`` resolve.
"""

from __future__ import annotations

from robotlibcore import DynamicCore

from hami_keywords.context import Context
from hami_keywords.host import CoreLimitKeywords, HostSession, HostSetupKeywords, HostWorkloadKeywords
from hami_keywords.nvidia_smi_keywords import NvidiaSmiKeywords

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
