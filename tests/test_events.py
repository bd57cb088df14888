"""Kubernetes events in time order and on one line (hami_e2e/parsers/events.py)."""

from __future__ import annotations

import kube_fakes
from hami_e2e.parsers.events import format_event, sort_events

def test_events_sort_by_their_best_timestamp_and_format_on_one_line():
    late = kube_fakes.event("FilteringFailed", "no available node, 2 nodes do not meet", "p", "2026-11-24T03:00:00Z")
    early = kube_fakes.event("FilteringFailed", "1 nodes CardInsufficientMemory(gpu-node-0)", "p", "2026-11-24T01:00:00Z")
    recorded = kube_fakes.events()
    ordered = sort_events([late, *recorded, early])
    assert ordered[0] is early and ordered[-1] is late
    assert format_event(late) == (
        "2026-11-24T03:00:00Z Warning FilteringFailed Pod/p: no available node, 2 nodes do not meet"
    )
