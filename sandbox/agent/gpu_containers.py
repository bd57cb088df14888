"""What a container that HAMi allocated sees: its Allocate response, HAMi-core, nvidia-smi and only its GPUs.

A pod whose ``hami.io/vgpu-devices-allocated`` annotation is set (HAMi's extender chose its GPUs) is run by the node
agent once ``hami.io/bind-phase`` is ``success`` (the device plugin answered Allocate). Each of its containers runs
in the GPU container root (``node_images.GPU_CONTAINER``: shell tools, nvidia-smi, gpu-workload) with:

- the Allocate response the kubelet stand-in recorded (``<node>/allocations/<pod uid>/<container>.json``): its
  environment (``CUDA_DEVICE_MEMORY_LIMIT_<i>``, ``CUDA_DEVICE_SM_LIMIT``, ``NVIDIA_VISIBLE_DEVICES``,
  ``CUDA_DEVICE_MEMORY_SHARED_CACHE``, ``LIBCUDA_LOG_LEVEL``) over the pod's own, and its mounts with host paths in
  the node's root: HAMi's ``libvgpu.so``, the container's own folder ``/usr/local/vgpu`` (its fresh shared-region
  file), ``/tmp/vgpulock`` and ``/etc/ld.so.preload``, which preloads HAMi-core into every process — HAMi's own
  mechanism, nothing of ours;
- what the NVIDIA container runtime adds: the node's driver libraries (the mock ``libnvidia-ml.so.1``, our
  ``libcuda.so.1``) and a mock NVML profile holding only the allocated GPUs, renumbered from 0 as in a container;
  ``MOCK_NVML_PROCESS_DIR`` is the node's, so every container on a node sees the others' GPU processes;
- an unprivileged user (65534 unless the pod names another); the writable Allocate folders are handed to it.

Fault knob: with ``hami_core: false`` in ``<run>/knobs.json`` (``HAMI_E2E_HAMI_CORE=off`` at ``sandbox up``) the
``/etc/ld.so.preload`` mount is left out, so containers run without HAMi-core — the limit tests must then fail.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from ..gpu import Gpu, write_profile
from .volumes import host_path

ALLOCATED = "hami.io/vgpu-devices-allocated"
BIND_PHASE = "hami.io/bind-phase"
DEFAULT_UID = 65534
HOST_USR = ("lib", "lib64", "share")   # the image's libraries; its programs are only the GPU container's tools
PRELOAD = "/etc/ld.so.preload"
PROCESS_DIR = "/usr/local/nvidia/processes"


def allocated_by_hami(pod: Any) -> bool:
    return bool(((pod.metadata.annotations or {}).get(ALLOCATED) or "").strip(";"))


def bind_phase(pod: Any) -> str:
    return (pod.metadata.annotations or {}).get(BIND_PHASE, "")


def hami_core_enabled(run_dir: Path) -> bool:
    try:
        return bool(json.loads((run_dir / "knobs.json").read_text()).get("hami_core", True))
    except (OSError, ValueError):
        return True


def read_allocation(allocations_dir: Path, pod_uid: str, container: str) -> dict[str, Any] | None:
    """The container's Allocate response as the kubelet stand-in recorded it, or None (no GPU for it)."""
    try:
        return json.loads((allocations_dir / pod_uid / f"{container}.json").read_text())
    except (OSError, ValueError):
        return None


def allocation_env(allocation: dict[str, Any]) -> dict[str, str]:
    """The environment the device plugin's Allocate answered for the container."""
    return {str(k): str(v) for k, v in (allocation.get("envs") or {}).items()}


def allocation_mounts(allocation: dict[str, Any], node_root: Path, uid: int, run_dir: Path) -> list[dict[str, Any]]:
    """The Allocate mounts, host paths in the node's root; ``/etc/ld.so.preload`` left out when the knob says so."""
    preload = hami_core_enabled(run_dir)
    mounts = []
    for mount in allocation.get("mounts") or []:
        target = mount["containerPath"]
        if target == PRELOAD and not preload:
            continue
        source = host_path(node_root, mount["hostPath"])
        if not mount.get("readOnly"):
            _hand_over(source, uid)
        mounts.append({"source": str(source), "target": target, "readonly": bool(mount.get("readOnly"))})
    return mounts


def write_container_profile(allocation: dict[str, Any], node_gpus: dict[str, tuple[str, int]], path: Path,
                            node_profile: Path | None = None) -> None:
    """A mock NVML profile of the allocated GPUs only, renumbered from 0, as a container sees them; the driver and
    CUDA versions are the node's (from its profile ``node_profile``, as ``twin.install_node_drivers`` wrote it)."""
    uuids = allocated_uuids(allocation)
    missing = [uuid for uuid in uuids if uuid not in node_gpus]
    if missing or not uuids:
        raise ValueError(f"Allocate named GPUs {uuids} but the node has {sorted(node_gpus)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    versions = {}
    if node_profile is not None and node_profile.exists():
        system = (yaml.safe_load(node_profile.read_text()) or {}).get("system") or {}
        versions = {"driver": str(system["driver_version"]), "cuda": str(system["cuda_version"])}
    write_profile(path, [Gpu(index, uuid, *node_gpus[uuid]) for index, uuid in enumerate(uuids)], **versions)


def allocated_uuids(allocation: dict[str, Any]) -> list[str]:
    visible = allocation_env(allocation).get("NVIDIA_VISIBLE_DEVICES", "")
    return [uuid.strip() for uuid in visible.split(",") if uuid.strip()]


def sync_faults(node_overrides: Path, container_overrides: Path, node_uuids: list[str], uuids: list[str]) -> bool:
    """Give a container the node's GPU faults (``nvml-mock-ctl`` writes them by the node's GPU index) under the
    container's own numbering; returns True when the container's file changed. The mock re-reads it within a
    second, so a GPU that fails or heals on the node fails or heals in the containers that were given it."""
    try:
        node = yaml.safe_load(node_overrides.read_text()) or {}
    except (OSError, yaml.YAMLError):
        node = {}
    mine: dict[str, Any] = {"version": node.get("version", 1)}
    if node.get("all"):
        mine["all"] = node["all"]
    devices = {}
    for key, value in (node.get("devices") or {}).items():
        index = int(key)
        if index < len(node_uuids) and node_uuids[index] in uuids:
            devices[str(uuids.index(node_uuids[index]))] = value
    if devices:
        mine["devices"] = devices
    text = yaml.safe_dump(mine, sort_keys=True)
    try:
        if container_overrides.read_text() == text:
            return False
    except OSError:
        pass
    tmp = container_overrides.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(container_overrides)
    return True


def _hand_over(path: Path, uid: int) -> None:
    """Let the container's user write where the Allocate response lets the container write."""
    if not path.exists():
        return
    if path.is_dir():
        if path.name == "vgpulock" or path.parent.name != "containers":
            os.chmod(path, 0o1777)   # shared between the node's containers, as in HAMi's hostPath
        else:
            os.chown(path, uid, uid)
            for child in path.iterdir():
                os.chown(child, uid, uid)
    else:
        os.chown(path, uid, uid)
