"""The index's trend picture: pass, fail and skip counts and the wall time of the archived runs, grouped by release,
drawn at archive time by matplotlib as a static SVG (no server, no script). Each run's bar links to its report and
names the run when the pointer rests on it.

The picture is written to ``<root>/trend.svg`` and put inline into index.html (so its links work there too).
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html import escape
from pathlib import Path

from archive import RunSummary
from pages import write_page

FILE = "trend.svg"
MAX_RELEASES = 8  # the releases with the newest runs
MAX_RUNS = 20  # newest runs per release
COLORS = {"passed": "#2e8540", "failed": "#c62828", "skipped": "#d4a017", "wall": "#1d2733", "none": "#6b7785"}
SVG_NS = "http://www.w3.org/2000/svg"
CSS = """
figure.trend{margin:1rem 0 1.5rem}figure.trend svg{max-width:100%;height:auto;background:#fff;border-radius:.3rem}
figure.trend figcaption{color:#5b6773;font-size:.85rem}
"""


@dataclass
class _Bar:
    run: RunSummary
    x: float


def trend_section(root: Path, runs: list[RunSummary]) -> str:
    """Draw the picture of ``runs`` (newest first, as `archive.summaries` gives them) into ``root/trend.svg`` and
    return the index's section with it inline; empty when there is no run."""
    groups = _groups(runs)
    if not groups:
        return ""
    svg = draw(groups)
    write_page(root, FILE, svg)
    shown = sum(len(g) for g in groups.values())
    left_out = len(runs) - shown
    caption = (
        f"Pass, fail and skip counts (bars) and wall time (line) of the newest {shown} run(s), grouped by release, "
        "oldest on the left; a bar opens that run's report."
        + (f" {left_out} older run(s) or release(s) are not drawn." if left_out else "")
    )
    body = svg[svg.index("<svg") :]
    return f'<figure class="trend" id="trend">{body}<figcaption>{escape(caption)}</figcaption></figure>'


def _groups(runs: list[RunSummary]) -> dict[str, list[RunSummary]]:
    """Release → its newest runs, oldest first; the releases with the newest runs, the newest release last."""
    groups: dict[str, list[RunSummary]] = {}
    for run in runs:  # newest first
        if run.release not in groups and len(groups) == MAX_RELEASES:
            continue
        group = groups.setdefault(run.release, [])
        if len(group) < MAX_RUNS:
            group.append(run)
    return {release: list(reversed(group)) for release, group in reversed(list(groups.items()))}


def draw(groups: dict[str, list[RunSummary]]) -> str:
    """The SVG text: stacked pass/fail/skip bars per run, wall time in minutes on the right-hand axis."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    bars, centers, x = [], [], 0.0
    for group in groups.values():
        first = x
        for run in group:
            bars.append(_Bar(run, x))
            x += 1
        centers.append((first + x - 1) / 2)
        x += 1  # a gap between releases
    with matplotlib.rc_context(
        {"svg.fonttype": "none", "svg.hashsalt": "hami-e2e", "font.size": 8, "font.family": "sans-serif"}
    ):
        width = min(16.0, max(6.5, 1.6 + 0.24 * len(bars) + 0.25 * len(groups)))
        figure = Figure(figsize=(width, 3.0), layout="constrained")
        counts = figure.add_subplot()
        walls = counts.twinx()
        stub = max([b.run.total for b in bars] + [10]) * 0.04
        for index, bar in enumerate(bars):
            _draw_run(counts, bar, index, stub)
        for group in _runs_by_group(bars):
            minutes = [(b.x, b.run.elapsed_s / 60) for b in group if b.run.elapsed_s]
            if minutes:
                walls.plot(*zip(*minutes, strict=True), color=COLORS["wall"], marker="o", markersize=3, linewidth=1)
        counts.set_xticks(centers, [_short(name) for name in groups], rotation=20 if len(groups) > 4 else 0)
        counts.set_xlim(-0.8, x - 0.2)
        counts.set_ylabel("tests")
        walls.set_ylabel("wall time (min)")
        walls.set_ylim(bottom=0)
        counts.spines[["top"]].set_visible(False)
        walls.spines[["top"]].set_visible(False)
        handles = [matplotlib.patches.Patch(color=COLORS[k], label=k) for k in ("passed", "failed", "skipped")] + [
            matplotlib.lines.Line2D([], [], color=COLORS["wall"], marker="o", markersize=3, label="wall time")
        ]
        counts.legend(handles=handles, loc="upper left", ncols=4, frameon=False, bbox_to_anchor=(0, 1.14))
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return _with_titles(buffer.getvalue(), bars)


def _draw_run(axes, bar: _Bar, index: int, stub: float) -> None:
    """The run's stacked bar; a run without results is a short grey stub of height ``stub``."""
    run = bar.run
    url = f"{run.path}/{run.links['report']}" if "report" in run.links else f"{run.path}/"
    if not run.total:  # no output.xml, or an unreadable one
        patch = axes.bar(bar.x, stub, width=0.8, color=COLORS["none"], hatch="//")[0]
        patch.set_url(url)
        patch.set_gid(f"trend-run-{index}")
        return
    bottom = 0
    for kind in ("passed", "failed", "skipped"):
        value = getattr(run, kind)
        if value:
            patch = axes.bar(bar.x, value, bottom=bottom, width=0.8, color=COLORS[kind])[0]
            patch.set_url(url)
            patch.set_gid(f"trend-run-{index}-{kind}")
            bottom += value


def _runs_by_group(bars: list[_Bar]) -> list[list[_Bar]]:
    groups: list[list[_Bar]] = []
    for bar in bars:
        if not groups or groups[-1][-1].run.release != bar.run.release:
            groups.append([])
        groups[-1].append(bar)
    return groups


def _short(release: str) -> str:
    return release if len(release) <= 24 else release[:23] + "…"


def _with_titles(svg: str, bars: list[_Bar]) -> str:
    """Give every bar a ``<title>`` (the pointer's tooltip): release, start, counts and wall time of its run."""
    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")
    tree = ET.fromstring(svg)
    titles = {f"trend-run-{i}": _title(bar.run) for i, bar in enumerate(bars)}
    for group in tree.iter(f"{{{SVG_NS}}}g"):
        gid = group.get("id", "")
        key = gid.rsplit("-", 1)[0] if gid.count("-") == 3 else gid
        if key in titles:
            title = ET.Element(f"{{{SVG_NS}}}title")
            title.text = titles[key]
            group.insert(0, title)
    return '<?xml version="1.0" encoding="utf-8" standalone="no"?>\n' + ET.tostring(tree, encoding="unicode")


def _title(run: RunSummary) -> str:
    started = run.started.strftime("%Y-%m-%d %H:%M UTC") if run.started else run.timestamp
    if not run.total:
        return f"{run.release}, {started}: no test results ({run.status})"
    minutes, seconds = divmod(round(run.elapsed_s), 60)
    return (
        f"{run.release}, {started}: {run.passed} passed, {run.failed} failed, {run.skipped} skipped "
        f"in {minutes}:{seconds:02d} ({run.status})"
    )
