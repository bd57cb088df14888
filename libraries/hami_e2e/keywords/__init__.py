"""The keyword components of ``HamiLibrary``, one module per area; `components` builds them around one context."""

from __future__ import annotations

from ..core.component import LibraryComponent
from ..core.context import Context
from .allocation import AllocationKeywords
from .allocation_probes import AllocationProbeKeywords
from .components import ComponentKeywords
from .diagnostics import DiagnosticsKeywords
from .exec import ExecKeywords
from .faults import FaultKeywords
from .helm import HelmKeywords
from .metrics import MetricsKeywords
from .namespaces import NamespaceKeywords
from .nodes import NodeKeywords
from .nvidia_smi import NvidiaSmiKeywords
from .pod_specs import PodSpecKeywords
from .pods import PodKeywords
from .run_control import RunControlKeywords
from .target import TargetKeywords
from .webhook import WebhookKeywords


def components(ctx: Context) -> list[LibraryComponent]:
    """Every keyword component of ``HamiLibrary``, sharing ``ctx``; the diagnostics one first (its listener needs
    it)."""
    return [
        DiagnosticsKeywords(ctx),
        NamespaceKeywords(ctx),
        PodSpecKeywords(ctx),
        PodKeywords(ctx),
        ExecKeywords(ctx),
        AllocationProbeKeywords(ctx),
        AllocationKeywords(ctx),
        NodeKeywords(ctx),
        WebhookKeywords(ctx),
        MetricsKeywords(ctx),
        HelmKeywords(ctx),
        ComponentKeywords(ctx),
        FaultKeywords(ctx),
        RunControlKeywords(ctx),
        NvidiaSmiKeywords(ctx),
        TargetKeywords(ctx),
    ]
