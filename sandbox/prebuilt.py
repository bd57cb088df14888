"""Binaries made on another machine, for one without Go: ``HAMI_E2E_PREBUILT=DIR`` (the GPU twin's pack).

A lent GPU machine has no Go toolchain and no network, so ``tools/gpu_twin_pack.py`` brings the sandbox's programs
there already built, and ``tools/gpu-twin/run-on-device.sh`` unpacks them into ``DIR``:

- ``kube/``: ``etcd``, ``kube-apiserver``, ``kube-controller-manager``, ``kube-scheduler``, ``kwok`` and
  ``hami-e2e-kubelet``, hard links of one multi-call binary (``tools/gpu_twin_multicall.py``);
- ``hami/<build>/``: a HAMi build folder as ``sandbox/hami/build.py`` makes it, its three programs hard links of
  HAMi's multi-call binary;
- ``tools/helm`` (and ``tools/kubectl`` when packed);
- ``prebuilt.json``: the Kubernetes version and HAMi build it holds.

Each ``ensure_*`` of the sandbox asks here first; without the variable nothing changes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import SandboxError

ENV = "HAMI_E2E_PREBUILT"


def root() -> Path | None:
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value else None


def _manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / "prebuilt.json").read_text())
    except (OSError, ValueError) as error:
        raise SandboxError(f"{ENV}={folder} has no readable prebuilt.json ({error}): unpack the GPU twin's pack "
                           "there (tools/gpu-twin/run-on-device.sh)") from None


def kube_bin_dir(kubernetes: str) -> Path | None:
    """The prebuilt control-plane binaries, when ``HAMI_E2E_PREBUILT`` is set; they must be of ``kubernetes``."""
    folder = root()
    if folder is None:
        return None
    packed = _manifest(folder).get("kubernetes")
    if packed != kubernetes:
        raise SandboxError(f"the prebuilt binaries in {folder} are Kubernetes {packed}, not {kubernetes}")
    return folder / "kube"


def kubelet_binary() -> Path | None:
    folder = root()
    return None if folder is None else folder / "kube" / "hami-e2e-kubelet"


def hami_build_dir(version: str | None) -> Path | None:
    """The prebuilt HAMi build folder; ``version`` (None: the packed one) must be the packed build's."""
    folder = root()
    if folder is None:
        return None
    manifest = _manifest(folder)
    if version is not None and version.lstrip("v") != str(manifest.get("hami_version", "")).lstrip("v"):
        raise SandboxError(f"the prebuilt binaries in {folder} hold HAMi {manifest.get('hami_version')} only, "
                           f"not {version}")
    return folder / "hami" / manifest["hami_build"]


def tool_paths() -> tuple[Path, Path] | None:
    """helm and kubectl of the pack (kubectl may be absent: nothing of the suite runs it)."""
    folder = root()
    return None if folder is None else (folder / "tools" / "helm", folder / "tools" / "kubectl")
