"""Parse the Prometheus text exposition format (version 0.0.4), as HAMi's scheduler and vGPU monitor serve it.

Plain Python: no Robot Framework, no HTTP (the metrics keywords fetch the text).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


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
