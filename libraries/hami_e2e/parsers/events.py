"""Kubernetes events (core/v1) in time order and as one line of text each, for failure messages and diagnostics."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

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
