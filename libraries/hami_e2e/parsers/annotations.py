"""Parse what HAMi writes into Kubernetes objects: the pod and node annotations.

No Kubernetes client and no Robot Framework here, so pytest can test every format on its own. Formats as HAMi v2.10.0
writes them (``pkg/device/devices.go`` encodes the pod's devices, the device plugin's register loop the node's):

* ``hami.io/vgpu-devices-allocated``: ``<UUID>,<type>,<MiB>,<cores>:`` per device, ``;`` after each container,
  init containers first, e.g. ``GPU-a,NVIDIA,3000,30:GPU-b,NVIDIA,3000,30:;``.
* ``hami.io/node-nvidia-register``: a JSON array (v2.8+) whose fields are all ``omitempty``; the pre-v2.8
  ``<UUID>,<count>,<devmem>,<devcore>,<type>,<numa>,<health>[,<index>,<mode>]:`` list is still understood.
* ``hami.io/mutex.lock``: ``<RFC3339 time>,<namespace>,<pod>`` (legacy: a bare RFC3339 time).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

VGPU_NODE_ANNOTATION = "hami.io/vgpu-node"
BIND_PHASE_ANNOTATION = "hami.io/bind-phase"
NODE_REGISTER_ANNOTATION = "hami.io/node-nvidia-register"
NODE_HANDSHAKE_ANNOTATION = "hami.io/node-handshake"
NODE_LOCK_ANNOTATION = "hami.io/mutex.lock"
HAMI_PREFIX = "hami.io/"


class AnnotationFormatError(ValueError):
    """An annotation value does not have the format HAMi writes."""


# --------------------------------------------------------------------------------------------------------------
# Pod: hami.io/vgpu-devices-allocated
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllocatedDevice:
    """One device granted to one container: ``<uuid>,<type>,<usedmem MiB>,<usedcores>``."""

    uuid: str
    type: str
    memory_mib: int
    cores: int

    def __str__(self) -> str:
        return f"{self.uuid} ({self.memory_mib} MiB, {self.cores} % cores)"


def parse_allocated_devices(value: str | None) -> list[list[AllocatedDevice]]:
    """Parse an allocated-devices annotation into one list of devices per container (init containers first).

    ``None`` or an empty string gives an empty list (no container parts at all). A container part without devices
    gives an empty inner list, so ``";;GPU-x,NVIDIA,2000,50:;"`` is ``[[], [], [GPU-x]]``.
    """
    if not value:
        return []
    parts = value.split(";")
    if parts and parts[-1] == "":
        parts = parts[:-1]
    containers: list[list[AllocatedDevice]] = []
    for part in parts:
        devices = []
        for chunk in part.split(":"):
            if not chunk.strip():
                continue
            fields = chunk.split(",")
            if len(fields) < 4:
                raise AnnotationFormatError(
                    f"device entry {chunk!r} in {value!r} has {len(fields)} fields, expected "
                    "<UUID>,<type>,<MiB>,<cores>"
                )
            try:
                memory, cores = int(fields[2]), int(fields[3])
            except ValueError as error:
                raise AnnotationFormatError(f"device entry {chunk!r} in {value!r}: {error}") from None
            devices.append(AllocatedDevice(fields[0].strip(), fields[1].strip(), memory, cores))
        containers.append(devices)
    return containers


# --------------------------------------------------------------------------------------------------------------
# Node: hami.io/node-nvidia-register
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredDevice:
    """One GPU as the device plugin registered it on the node (missing JSON fields take Go's zero values)."""

    id: str
    index: int = 0
    count: int = 0
    devmem: int = 0
    devcore: int = 0
    type: str = ""
    numa: int = 0
    mode: str = ""
    health: bool = False
    mig_profiles: list[Any] = field(default_factory=list, compare=False)

    @property
    def model(self) -> str:
        """The card model without HAMi's ``NVIDIA-`` prefix when the model already starts with ``NVIDIA``."""
        if self.type.startswith("NVIDIA-NVIDIA"):
            return self.type[len("NVIDIA-") :]
        return self.type


def parse_node_register(value: str | None) -> list[RegisteredDevice]:
    """Parse ``hami.io/node-nvidia-register`` (JSON array, or the pre-v2.8 colon/comma list) into devices."""
    if value is None or not value.strip():
        return []
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise AnnotationFormatError(f"node registration is not valid JSON: {error}: {text[:200]!r}") from None
        devices = []
        for item in items:
            if not isinstance(item, dict) or "id" not in item:
                raise AnnotationFormatError(f"node registration entry without an id: {item!r}")
            devices.append(
                RegisteredDevice(
                    id=str(item["id"]),
                    index=int(item.get("index", 0)),
                    count=int(item.get("count", 0)),
                    devmem=int(item.get("devmem", 0)),
                    devcore=int(item.get("devcore", 0)),
                    type=str(item.get("type", "")),
                    numa=int(item.get("numa", 0)),
                    mode=str(item.get("mode", "")),
                    health=bool(item.get("health", False)),
                    mig_profiles=list(item.get("migProfiles") or []),
                )
            )
        return devices
    return _parse_legacy_node_register(text)


def _parse_legacy_node_register(text: str) -> list[RegisteredDevice]:
    devices = []
    for chunk in text.split(":"):
        if not chunk.strip():
            continue
        fields = chunk.split(",")
        if len(fields) not in (7, 9):
            raise AnnotationFormatError(
                f"legacy node registration entry {chunk!r} has {len(fields)} fields, expected 7 or 9"
            )
        try:
            device = RegisteredDevice(
                id=fields[0],
                count=int(fields[1]),
                devmem=int(fields[2]),
                devcore=int(fields[3]),
                type=fields[4],
                numa=int(fields[5]),
                health=fields[6].strip().lower() == "true",
                index=int(fields[7]) if len(fields) == 9 else 0,
                mode=fields[8] if len(fields) == 9 else "",
            )
        except ValueError as error:
            raise AnnotationFormatError(f"legacy node registration entry {chunk!r}: {error}") from None
        devices.append(device)
    return devices


@dataclass(frozen=True)
class NodeLock:
    """Value of ``hami.io/mutex.lock``."""

    time: datetime | None
    namespace: str = ""
    pod: str = ""


def parse_node_lock(value: str | None) -> NodeLock | None:
    """Parse ``<RFC3339 time>,<namespace>,<pod>`` (or a bare time); ``None`` when there is no lock."""
    if not value:
        return None
    fields = value.split(",")
    when = _parse_time(fields[0].strip())
    if len(fields) >= 3:
        return NodeLock(when, fields[1].strip(), fields[2].strip())
    return NodeLock(when)


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def hami_annotations(annotations: Mapping[str, str] | None) -> dict[str, str]:
    """Only the ``hami.io/*`` annotations of an object, sorted by key."""
    return {k: v for k, v in sorted((annotations or {}).items()) if k.startswith(HAMI_PREFIX)}
