"""Reading what the workloads print (``tools/workloads/gpu_workload.py`` and ``.cu``: one ``TAG key=value ...``
line per result) and what HAMi-core's utilization watcher logs at ``LIBCUDA_LOG_LEVEL=3``."""

from __future__ import annotations

import re

from ..parsers.nvidia_smi import hami_core_lines

_PROTOCOL = re.compile(r"^(WORKLOAD|DEVICES|MEMINFO|ALLOC_OK|ALLOC_FAILED|HOLDING|RELEASED|THROUGHPUT) (.*)$", re.M)
_WATCHER = re.compile(r"device (\d+): userutil=(-?\d+) currentcores=(-?\d+) total=(-?\d+) limit=(-?\d+) share=(-?\d+)")
_UTIL_SWITCH = re.compile(r"util_switch=(\d+)")


def protocol_fields(output: str, tag: str) -> dict[str, str]:
    """The ``key=value`` pairs of the last ``<TAG> ...`` line a workload printed (``error=`` takes the rest)."""
    found: dict[str, str] = {}
    for match in _PROTOCOL.finditer(output):
        if match[1] != tag:
            continue
        found = {}
        rest = match[2]
        if " error=" in f" {rest}":
            rest, error = f" {rest}".split(" error=", 1)
            found["error"] = error.strip()
        for pair in rest.split():
            key, _, value = pair.partition("=")
            found[key] = value
    return found


def watcher_summary(output: str, device: int) -> str:
    """One line on what HAMi-core's utilization watcher saw for ``device`` during a run."""
    cycles = [tuple(map(int, m.groups())) for m in _WATCHER.finditer(output) if int(m[1]) == device]
    switches = sorted({int(m[1]) for m in _UTIL_SWITCH.finditer(output)})
    if not cycles:
        info = len(hami_core_lines(output, "Info"))
        return (
            f"no utilization-watcher cycle for device {device} was logged ({info} Info lines; util_switch values "
            f"{switches or 'none'}): the watcher never ran for this device, so HAMi-core could not throttle"
        )
    utils = [c[1] for c in cycles]
    dry = sum(1 for c in cycles if c[2] < 0)
    return (
        f"{len(cycles)} watcher cycles, util_switch {switches or 'not logged'}, utilization it read "
        f"{min(utils)}..{max(utils)} % (limit {cycles[-1][4]} %), token bucket below zero in {dry} of them"
    )


def tail(text: str, lines: int = 40) -> str:
    """The protocol lines plus the last ``lines`` lines: HAMi-core at log level 3 prints a lot."""
    all_lines = text.splitlines()
    if len(all_lines) <= lines:
        return text
    protocol = [line for line in all_lines if _PROTOCOL.match(line)]
    return "\n".join([*protocol, f"... ({len(all_lines) - lines} lines not shown) ...", *all_lines[-lines:]])
