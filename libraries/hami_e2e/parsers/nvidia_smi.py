"""Parse ``nvidia-smi`` output, as seen in a container or on a host with HAMi-core (``libvgpu.so``) preloaded.

Plain Python, no Robot Framework needed. The entry point is :func:`parse_nvidia_smi`; it detects the format:

* the default table (``nvidia-smi``),
* a CSV query with header (``--query-gpu=... --format=csv``; units in the header and the cells, or ``nounits``),
* a CSV query without header (``--format=csv,noheader`` or ``csv,noheader,nounits``): pass ``fields=`` in the
  order of ``--query-gpu``, else :data:`DEFAULT_QUERY_FIELDS` is assumed,
* the list (``nvidia-smi -L``),
* the detailed query (``nvidia-smi -q``, also ``-q -d MEMORY``).

HAMi-core writes its own log lines (``[HAMI-core Msg(...)]: ...``, ``[HAMI-core ERROR (...)]: ...``, ``Warn``,
``Info``, ``Debug``) to stderr, so with stdout and stderr merged (``kubectl logs``, ``2>&1``) they appear anywhere:
before, inside and after the table, even between two rows. They are removed before parsing, as are blank lines, and
:func:`hami_core_lines` / :func:`find_oom_events` give them back for assertions of their own.

Anything not understood raises :class:`ValueError` naming what was not understood and quoting the text.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_QUERY_FIELDS",
    "GpuInfo",
    "NvidiaSmiReport",
    "OomEvent",
    "cuda_version",
    "detect_format",
    "driver_version",
    "find_oom_events",
    "hami_core_lines",
    "hami_core_oom_problem",
    "parse_nvidia_smi",
    "parse_nvidia_smi_report",
    "strip_hami_core_lines",
]

#: Field order assumed for a CSV query without header when the caller gives none: the query HAMi's docs and this
#: suite use, ``--query-gpu=index,uuid,name,memory.total,memory.used,memory.free``.
DEFAULT_QUERY_FIELDS: tuple[str, ...] = ("index", "uuid", "name", "memory.total", "memory.used", "memory.free")

MIB = 1024 * 1024

FORMATS = ("table", "csv", "csv-noheader", "list", "query")

# A HAMi-core log line, from `src/include/log_utils.h`: "[HAMI-core Msg(pid:tid:file:line)]: text" and
# "[HAMI-core ERROR (pid:1 thread=2 file:line)]: text". The level word is matched loosely so a new level still counts.
_HAMI_LINE = re.compile(r"\[HAMI-core [A-Za-z]+\s*\([^)]*\)\]:?[^\n]*")
_HAMI_LEVEL = re.compile(r"\[HAMI-core ([A-Za-z]+)")
_OOM = re.compile(r"Device (\d+) OOM (\d+) / (\d+)")
_DRIVER = re.compile(r"Driver Version\s*:\s*([0-9][0-9A-Za-z.\-]*)")
_CUDA = re.compile(r"CUDA Version\s*:\s*([0-9][0-9.]*|N/A)")
_TABLE_GPU_ROW = re.compile(r"^\|\s*(\d+)\s+(.+?)\s+(On|Off|N/A)\s*\|\s*([0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f.]+)?")
_TABLE_MEMORY = re.compile(r"(\d+)\s*MiB\s*/\s*(\d+)\s*MiB")
_LIST_ROW = re.compile(r"^GPU (\d+): (.+?) \(UUID: ([^)]+)\)\s*$")
_LIST_MIG_ROW = re.compile(r"^\s+MIG .*Device\s+\d+: \(UUID: [^)]+\)\s*$")
_QUERY_GPU = re.compile(r"^GPU ([0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f.]+)\s*$")
_QUERY_FIELD = re.compile(r"^(\s*)([^:]+?)\s*:\s*(.*?)\s*$")
_CSV_HEADER_CELL = re.compile(r"^[a-z][a-z0-9_.]*(\s*\[[^\]]*\])?$")
_NUMBER_WITH_UNIT = re.compile(r"^(-?\d+(?:\.\d+)?)\s*([A-Za-z%/]*)$")
_NOT_AVAILABLE = {"[N/A]", "N/A", "[Not Supported]", "Not Supported", "[Unknown Error]", "[Insufficient Permissions]"}


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as nvidia-smi reported it.

    ``memory_*_mib`` are ``None`` only where the format carries no memory figures (``-L``, or a CSV query without
    those fields); ``name`` is ``None`` only for ``-q -d MEMORY``; ``uuid`` is ``None`` where the format has none
    (the default table, ``-q -d MEMORY``).
    """

    index: int
    name: str | None
    uuid: str | None
    memory_used_mib: int | None
    memory_total_mib: int | None
    memory_free_mib: int | None = None
    bus_id: str | None = None
    #: every CSV field as printed (units stripped) or every ``-q`` top-level field, for what the attributes lack
    fields: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class OomEvent:
    """HAMi-core's refusal of an allocation: ``Device <n> OOM <requested bytes> / <limit bytes>``."""

    device: int
    requested_bytes: int
    limit_bytes: int
    line: str

    @property
    def limit_mib(self) -> float:
        return self.limit_bytes / MIB


@dataclass(frozen=True)
class NvidiaSmiReport:
    """Everything parsed from one nvidia-smi output."""

    format: str
    gpus: list[GpuInfo]
    driver_version: str | None
    cuda_version: str | None
    hami_core_lines: list[str]


# --------------------------------------------------------------------------------------------------- HAMi-core lines
def hami_core_lines(text: str, level: str | None = None) -> list[str]:
    """All HAMi-core log lines in ``text``, optionally only one level (``Msg``, ``ERROR``, ``Warn``, ``Info``...)."""
    found = [m.group(0).rstrip() for m in _HAMI_LINE.finditer(text)]
    if level is None:
        return found
    return [line for line in found if _level(line) == level.lower()]


def _level(line: str) -> str:
    match = _HAMI_LEVEL.match(line)
    return match[1].lower() if match else ""


def strip_hami_core_lines(text: str) -> list[str]:
    """The lines of ``text`` without HAMi-core log lines and without blank lines.

    A HAMi-core line glued to the end of an output line (no newline between them) is cut off that line.
    """
    kept: list[str] = []
    for raw in text.splitlines():
        line = _HAMI_LINE.sub("", raw).rstrip()
        if line.strip():
            kept.append(line)
    return kept


def find_oom_events(text: str) -> list[OomEvent]:
    """Every ``Device <n> OOM <requested> / <limit>`` HAMi-core printed, in order (it often prints one twice)."""
    events = []
    for line in text.splitlines():
        match = _OOM.search(line)
        if match and "HAMI-core" in line:
            events.append(OomEvent(int(match[1]), int(match[2]), int(match[3]), line.strip()))
    return events


def hami_core_oom_problem(text: str, limit_mib: int | None = None, device: int | None = None) -> str:
    """Why ``text`` does not show HAMi-core refusing an allocation, or "" when it does: its ``Device <device> OOM
    <requested> / <limit>`` line is there (any device when ``device`` is None), asks for more than the limit, and,
    when ``limit_mib`` is given, names exactly that limit. The one check behind every "refused by HAMi-core"
    assertion of the library (pods and the GPU host tier)."""
    events = find_oom_events(text)
    if not events:
        return "there is no HAMi-core OOM line ('Device <n> OOM <requested> / <limit>'): HAMi-core did not refuse it"
    mine = [e for e in events if device is None or e.device == device]
    if not mine:
        named = sorted({e.device for e in events})
        return f"HAMi-core's OOM lines name device(s) {named}, expected device {device}: {events[0].line}"
    event = mine[0]
    if limit_mib is not None and event.limit_bytes != limit_mib * MIB:
        return (
            f"HAMi-core refused it against a limit of {event.limit_bytes} bytes ({event.limit_mib:g} MiB), expected "
            f"{limit_mib * MIB} bytes ({limit_mib} MiB): {event.line}"
        )
    if event.requested_bytes <= event.limit_bytes:
        return f"HAMi-core's OOM line asks for {event.requested_bytes} bytes, not more than its limit: {event.line}"
    return ""


# ----------------------------------------------------------------------------------------------- versions (headers)
def driver_version(text: str) -> str:
    """The driver version from the table header, ``-q`` or a CSV query with ``driver_version``."""
    match = _DRIVER.search(text)
    if match:
        return match[1]
    lines = strip_hami_core_lines(text)
    if lines and detect_format(text) == "csv":
        rows = _csv_rows(lines)
        header = [_header_name(cell) for cell in rows[0]]
        if "driver_version" in header and len(rows) > 1:
            return rows[1][header.index("driver_version")].strip()
    raise ValueError(f"no driver version in nvidia-smi output (expected 'Driver Version: x.y'):\n{_excerpt(text)}")


def cuda_version(text: str) -> str:
    """The CUDA version the driver supports, from the table header or ``-q`` (``CUDA Version: 13.0``)."""
    match = _CUDA.search(text)
    if match:
        return match[1]
    raise ValueError(f"no CUDA version in nvidia-smi output (expected 'CUDA Version: x.y'):\n{_excerpt(text)}")


# ---------------------------------------------------------------------------------------------------------- parsing
def detect_format(text: str) -> str:
    """Which nvidia-smi output ``text`` is: one of ``table``, ``csv``, ``csv-noheader``, ``list``, ``query``."""
    lines = strip_hami_core_lines(text)
    if not lines:
        raise ValueError(f"nvidia-smi output is empty (after removing HAMi-core log lines):\n{_excerpt(text)}")
    if any("NVSMI LOG" in line for line in lines):
        return "query"
    if any(line.startswith("| NVIDIA-SMI") for line in lines) or any(
        line.startswith("|=") and "+" in line for line in lines
    ):
        return "table"
    if all(_LIST_ROW.match(line) or _LIST_MIG_ROW.match(line) for line in lines) and _LIST_ROW.match(lines[0]):
        return "list"
    first = _csv_rows(lines[:1])[0]
    if all(_CSV_HEADER_CELL.match(cell) for cell in first):
        return "csv"
    commas = {line.count(",") for line in lines}
    if len(commas) == 1 and commas != {0}:
        return "csv-noheader"
    if commas == {0} and all(_NUMBER_WITH_UNIT.match(line.strip()) for line in lines):
        return "csv-noheader"
    raise ValueError(
        "nvidia-smi output not understood: it is neither the default table, a --query-gpu CSV, -L nor -q. "
        f"First line: {lines[0]!r}\n{_excerpt(text)}"
    )


def parse_nvidia_smi(text: str, fields: Sequence[str] | None = None) -> list[GpuInfo]:
    """Parse any supported nvidia-smi output into one :class:`GpuInfo` per GPU, in index order.

    ``fields`` names the ``--query-gpu`` fields of a CSV without header, in order; without it
    :data:`DEFAULT_QUERY_FIELDS` is assumed and the column count must match. With a header it is ignored.
    Raises :class:`ValueError` naming what was not understood.
    """
    return parse_nvidia_smi_report(text, fields).gpus


def parse_nvidia_smi_report(text: str, fields: Sequence[str] | None = None) -> NvidiaSmiReport:
    """Like :func:`parse_nvidia_smi`, plus the format, driver and CUDA versions and the HAMi-core lines."""
    fmt = detect_format(text)
    lines = strip_hami_core_lines(text)
    parser = {
        "table": _parse_table,
        "query": _parse_query,
        "list": _parse_list,
    }.get(fmt)
    if parser is not None:
        gpus = parser(lines, text)
    else:
        gpus = _parse_csv(lines, text, has_header=fmt == "csv", fields=fields)
    if not gpus:
        raise ValueError(f"nvidia-smi {fmt} output lists no GPU:\n{_excerpt(text)}")
    drv = _DRIVER.search(text)
    cuda = _CUDA.search(text)
    driver = drv[1] if drv else next((g.fields["driver_version"] for g in gpus if "driver_version" in g.fields), None)
    return NvidiaSmiReport(fmt, gpus, driver, cuda[1] if cuda else None, hami_core_lines(text))


def _parse_table(lines: list[str], text: str) -> list[GpuInfo]:
    gpus: list[GpuInfo] = []
    in_gpu_section = False
    current: dict | None = None

    def close() -> None:
        if current is None:
            return
        if current.get("total") is None:
            raise ValueError(
                f"nvidia-smi table: GPU {current['index']} has no memory usage cell "
                f"('<used>MiB / <total>MiB'):\n{_excerpt(text)}"
            )
        used, total = current["used"], current["total"]
        gpus.append(GpuInfo(current["index"], current["name"], None, used, total, total - used, current["bus"]))

    for line in lines:
        if not in_gpu_section:
            if line.startswith("|=") and "+" in line:
                in_gpu_section = True
            continue
        if not line.startswith(("|", "+")) or line.startswith(("| Processes", "|  GPU   GI")):
            break
        row = _TABLE_GPU_ROW.match(line)
        if row:
            close()
            current = {"index": int(row[1]), "name": row[2].strip(), "bus": row[4], "used": None, "total": None}
            continue
        memory = _TABLE_MEMORY.search(line)
        if memory and current is not None and current["total"] is None:
            current["used"], current["total"] = int(memory[1]), int(memory[2])
    close()
    if not in_gpu_section:
        raise ValueError(f"nvidia-smi table has no GPU section (no '|===+===' line):\n{_excerpt(text)}")
    return gpus


def _parse_list(lines: list[str], text: str) -> list[GpuInfo]:
    gpus = []
    for line in lines:
        match = _LIST_ROW.match(line)
        if match:
            gpus.append(GpuInfo(int(match[1]), match[2].strip(), match[3].strip(), None, None))
    return gpus


def _parse_query(lines: list[str], text: str) -> list[GpuInfo]:
    blocks: list[dict] = []
    section: str | None = None
    for line in lines:
        gpu = _QUERY_GPU.match(line)
        if gpu:
            blocks.append({"bus": gpu[1], "top": {}, "fb": {}})
            section = None
            continue
        if not blocks:
            continue
        match = _QUERY_FIELD.match(line)
        indent = len(line) - len(line.lstrip())
        if match is None or (":" not in line):
            if indent <= 4:
                section = line.strip()
            continue
        key, value = match[2].strip(), match[3].strip()
        if indent <= 4:
            section = None
            blocks[-1]["top"][key] = value
        elif section == "FB Memory Usage":
            blocks[-1]["fb"][key] = value
    attached = re.search(r"Attached GPUs\s*:\s*(\d+)", "\n".join(lines))
    if attached and int(attached[1]) != len(blocks):
        raise ValueError(
            f"nvidia-smi -q says 'Attached GPUs : {attached[1]}' but has {len(blocks)} 'GPU <bus id>' "
            f"section(s):\n{_excerpt(text)}"
        )
    gpus = []
    for index, block in enumerate(blocks):
        fb = block["fb"]
        if "Total" not in fb:
            raise ValueError(
                f"nvidia-smi -q: GPU {block['bus']} has no 'FB Memory Usage' Total; "
                f"was the output cut or filtered with -d other than MEMORY?\n{_excerpt(text)}"
            )
        top = block["top"]
        gpus.append(
            GpuInfo(
                index,
                top.get("Product Name"),
                top.get("GPU UUID"),
                _mib(fb.get("Used"), "FB Memory Usage Used", text),
                _mib(fb["Total"], "FB Memory Usage Total", text),
                _mib(fb.get("Free"), "FB Memory Usage Free", text),
                block["bus"],
                dict(top),
            )
        )
    return gpus


def _parse_csv(lines: list[str], text: str, has_header: bool, fields: Sequence[str] | None) -> list[GpuInfo]:
    rows = _csv_rows(lines)
    if has_header:
        names = [_header_name(cell) for cell in rows[0]]
        rows = rows[1:]
    else:
        names = [name.strip() for name in (fields or DEFAULT_QUERY_FIELDS)]
    gpus = []
    for number, row in enumerate(rows):
        if len(row) != len(names):
            given = "the header" if has_header else ("fields=" if fields else "DEFAULT_QUERY_FIELDS")
            raise ValueError(
                f"nvidia-smi CSV row {number + 1} has {len(row)} columns but {given} names {len(names)} "
                f"({', '.join(names)}); for a query without header pass fields= in --query-gpu order. "
                f"Row: {', '.join(row)!r}\n{_excerpt(text)}"
            )
        raw = {name: (None if cell in _NOT_AVAILABLE else cell) for name, cell in zip(names, row, strict=True)}
        values = {name: _strip_unit(cell) for name, cell in zip(names, row, strict=True)}
        index = values.get("index")
        if index is not None and not index.isdigit():
            raise ValueError(f"nvidia-smi CSV: index {index!r} in row {number + 1} is not a number:\n{_excerpt(text)}")
        gpus.append(
            GpuInfo(
                int(index) if index is not None else number,
                values.get("name") or values.get("gpu_name"),
                values.get("uuid") or values.get("gpu_uuid"),
                _mib(raw.get("memory.used"), "memory.used", text),
                _mib(raw.get("memory.total"), "memory.total", text),
                _mib(raw.get("memory.free"), "memory.free", text),
                values.get("pci.bus_id") or values.get("gpu_bus_id"),
                {k: v for k, v in values.items() if v is not None},
            )
        )
    return gpus


# ----------------------------------------------------------------------------------------------------------- helpers
def _csv_rows(lines: list[str]) -> list[list[str]]:
    return [[cell.strip() for cell in row] for row in csv.reader(lines, skipinitialspace=True)]


def _header_name(cell: str) -> str:
    return re.sub(r"\s*\[[^\]]*\]$", "", cell.strip())


def _strip_unit(cell: str) -> str | None:
    cell = cell.strip()
    if cell in _NOT_AVAILABLE:
        return None
    match = _NUMBER_WITH_UNIT.match(cell)
    return match[1] if match else cell


def _mib(value: str | None, what: str, text: str) -> int | None:
    if value is None:
        return None
    match = _NUMBER_WITH_UNIT.match(value.strip())
    if not match or match[2] not in ("", "MiB"):
        raise ValueError(f"nvidia-smi {what} {value!r} is not a MiB figure:\n{_excerpt(text)}")
    return int(float(match[1]))


def _excerpt(text: str, limit: int = 1200) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters)"
