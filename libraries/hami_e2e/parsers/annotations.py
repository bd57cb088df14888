"""Pure parsers for what HAMi writes into Kubernetes objects, and for Prometheus text.

No Kubernetes client and no Robot Framework here, so pytest can test every format on its own.
Formats follow HAMi v2.10.0 (see ``shared/reference/hami-behaviour.md`` §2 and §7):

* ``hami.io/vgpu-devices-allocated``: ``<UUID>,<type>,<MiB>,<cores>:`` per device, ``;`` after each container,
  init containers first, e.g. ``GPU-a,NVIDIA,3000,30:GPU-b,NVIDIA,3000,30:;``.
* ``hami.io/node-nvidia-register``: a JSON array (v2.8+) whose fields are all ``omitempty``; the pre-v2.8
  ``<UUID>,<count>,<devmem>,<devcore>,<type>,<numa>,<health>[,<index>,<mode>]:`` list is still understood.
* ``hami.io/mutex.lock``: ``<RFC3339 time>,<namespace>,<pod>`` (legacy: a bare RFC3339 time).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

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


# --------------------------------------------------------------------------------------------------------------
# Prometheus text exposition format
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One line of a Prometheus text exposition: name, labels and value."""

    name: str
    labels: dict[str, str]
    value: float

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        return self.name == name and all(self.labels.get(k) == str(v) for k, v in labels.items())

    def __str__(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return f"{self.name}{{{inner}}} {self.value:.15g}"


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(text: str) -> str:
    return re.sub(r'\\[\\"n]', lambda m: _ESCAPES[m.group(0)], text)


def _parse_value(text: str) -> float:
    special = {"+inf": math.inf, "inf": math.inf, "-inf": -math.inf, "nan": math.nan}
    return special[text.lower()] if text.lower() in special else float(text)


def _parse_labels(line: str, position: int, number: int) -> tuple[dict[str, str], int]:
    """Labels from the ``{`` at ``position``; returns them and the index after the closing ``}``."""
    labels: dict[str, str] = {}
    position += 1
    while True:
        while position < len(line) and line[position].isspace():
            position += 1
        if position < len(line) and line[position] == "}":
            return labels, position + 1
        label = _LABEL.match(line, position)
        if not label:
            raise ValueError(f"line {number} has malformed labels: {line!r}")
        labels[label.group(1)] = _unescape(label.group(2))
        position = label.end()


def parse_prometheus_text(text: str) -> list[Sample]:
    """Parse Prometheus text format (version 0.0.4) into samples; comments and ``# TYPE`` lines are skipped."""
    samples: list[Sample] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _NAME.match(line)
        if not match:
            raise ValueError(f"line {number} is not a metric sample: {raw!r}")
        labels: dict[str, str] = {}
        position = match.end()
        if line.startswith("{", position):
            labels, position = _parse_labels(line, position, number)
        fields = line[position:].split()
        if not fields:
            raise ValueError(f"line {number} has no value: {raw!r}")
        samples.append(Sample(match.group(0), labels, _parse_value(fields[0])))
    return samples


def find_samples(samples: Iterable[Sample], name: str, labels: Mapping[str, str] | None = None) -> list[Sample]:
    """Samples named ``name`` whose labels include every ``labels`` item (values compared as strings)."""
    return [s for s in samples if s.matches(name, labels or {})]


# --------------------------------------------------------------------------------------------------------------
# Kubernetes events
# --------------------------------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def event_time(event: Any) -> datetime:
    """The best timestamp of a core/v1 Event (last seen, event time, first seen, creation), for sorting."""
    for attribute in ("last_timestamp", "event_time", "first_timestamp"):
        value = getattr(event, attribute, None)
        if value:
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    metadata = getattr(event, "metadata", None)
    created = getattr(metadata, "creation_timestamp", None)
    if created:
        return created if created.tzinfo else created.replace(tzinfo=timezone.utc)
    return _EPOCH


def sort_events(events: Iterable[Any]) -> list[Any]:
    """Events in time order (oldest first)."""
    return sorted(events, key=event_time)


def format_event(event: Any) -> str:
    """``<time> <type> <reason> <object>: <message>`` on one line."""
    involved = getattr(event, "involved_object", None)
    kind = getattr(involved, "kind", "") or ""
    name = getattr(involved, "name", "") or ""
    when = event_time(event)
    stamp = "-" if when == _EPOCH else when.strftime("%Y-%m-%dT%H:%M:%SZ")
    count = getattr(event, "count", None)
    repeat = f" (x{count})" if count and count > 1 else ""
    return (
        f"{stamp} {getattr(event, 'type', '') or ''} {getattr(event, 'reason', '') or ''} "
        f"{kind}/{name}{repeat}: {(getattr(event, 'message', '') or '').strip()}"
    )
