"""``results/history.html``: every test's outcome across the last archived runs, grouped by release.

One row per test, keyed by its stable ID tag (``HAMI-E2E-###`` / ``HOST-###``), else by its long name; one
column per run, newest first within each release. A test is marked flaky when it both passed and failed
among the shown runs of one release. The statuses come from each run's summary.json (see archive.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from archive import RunSummary
from pages import document, write_page

PAGE = "history.html"
MAX_RUNS = 30
LETTERS = {"PASS": "P", "FAIL": "F", "SKIP": "S", "NOT RUN": "N"}

CSS = """
table.history{width:auto;font-size:.85rem}table.history th,table.history td{padding:.2rem .35rem}
th.test{position:sticky;left:0;background:#f3f6f9;font-weight:400;min-width:16rem;max-width:28rem}
th.test code{font-weight:600}th.run{font-weight:400;font-size:.75rem;text-align:center;white-space:nowrap}
th.release{text-align:center;border-left:2px solid #d6dde5}.first{border-left:2px solid #d6dde5}
td.c{text-align:center;font-weight:700;color:#fff;min-width:1.2rem}td.c.none{color:#8a96a3;background:none}
td.c.NOT_RUN{background:#6b7785}span.flaky{background:#d4a017;color:#1d2733;padding:0 .4rem;border-radius:.6rem;
font-weight:600;font-size:.78rem;white-space:nowrap}small{color:#5b6773}
@media (prefers-color-scheme:dark){th.test{background:#222a33}}
"""


@dataclass
class HistoryRow:
    """One row: a test's outcome per shown run (by run path) and its display names from its newest run."""

    key: str
    stable_id: str
    name: str
    longname: str
    results: dict = field(default_factory=dict)  # run path -> {"status", "message"}

    def count(self, status: str) -> int:
        return sum(1 for result in self.results.values() if result["status"] == status)

    def flaky_releases(self, runs: list[RunSummary]) -> list[str]:
        """Releases in which this test both passed and failed among the shown runs."""
        seen: dict[str, set[str]] = {}
        for run in runs:
            if run.path in self.results:
                seen.setdefault(run.release, set()).add(self.results[run.path]["status"])
        return [release for release, statuses in seen.items() if {"PASS", "FAIL"} <= statuses]


def write_history(root: Path, runs: list[RunSummary], now: datetime | None = None) -> Path:
    """Write ``root/history.html`` from ``runs`` (newest first, as `archive.summaries` returns them)."""
    return write_page(root, PAGE, render(runs, now))


def shown_runs(runs: list[RunSummary]) -> list[RunSummary]:
    """The newest `MAX_RUNS` runs, grouped by release (releases ordered by their newest run), newest first."""
    groups: dict[str, list[RunSummary]] = {}
    for run in runs[:MAX_RUNS]:
        groups.setdefault(run.release, []).append(run)
    return [run for group in groups.values() for run in group]


def histories(runs: list[RunSummary]) -> list[HistoryRow]:
    """One `HistoryRow` per test seen in ``runs``, IDs first in numeric order, then by long name."""
    rows: dict[str, HistoryRow] = {}
    for run in runs:  # newest first: a test's names come from the newest run that has it
        for test in run.tests:
            key = test.get("id") or test.get("longname") or test.get("name") or "?"
            row = rows.setdefault(key, HistoryRow(key, test.get("id", ""), test.get("name", ""),
                                                   test.get("longname", "")))
            if run.path in row.results:  # the same ID tag twice in one run: keep the first, say so
                row.results[run.path]["message"] += f"\n(ID {key} is also on {test.get('longname', '')})"
                continue
            row.results[run.path] = {"status": test.get("status", ""), "message": test.get("message", "")}
    return sorted(rows.values(), key=_order)


def _order(row: HistoryRow) -> tuple:
    if row.stable_id:
        prefix, _, number = row.stable_id.rpartition("-")
        return 0, prefix, int(number), ""
    return 1, "", 0, row.key.casefold()


def render(runs: list[RunSummary], now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    shown = shown_runs(runs)
    rows = histories(shown)
    flaky = sum(1 for row in rows if row.flaky_releases(shown))
    releases = list(dict.fromkeys(run.release for run in shown))
    body = [
        "<h1>hami-e2e per-test history</h1>",
        f'<p class="meta">{len(rows)} test(s) over the last {len(shown)} of {len(runs)} run(s) in '
        f"{len(releases)} release(s), newest first; {flaky} flaky. "
        f"Generated {now.strftime('%Y-%m-%d %H:%M:%S')} UTC. <a href=\"index.html\">Run archive</a></p>",
        '<p class="meta">P pass, F fail, S skip (known bugs that failed are skipped with their failure message), '
        "· not in that run; hover a cell for its message. <b>flaky</b>: passed and failed among the shown runs "
        "of one release.</p>",
    ]
    if rows:
        body.append(_table(shown, rows))
    else:
        body.append("<p>No test results archived yet.</p>")
    return document("hami-e2e per-test history", CSS, body)


def _table(runs: list[RunSummary], rows: list[HistoryRow]) -> str:
    firsts = {run.path for i, run in enumerate(runs) if i == 0 or runs[i - 1].release != run.release}
    spans: dict[str, int] = {}
    for run in runs:
        spans[run.release] = spans.get(run.release, 0) + 1
    release_cells = "".join(f'<th class="release" colspan="{n}">{escape(release)}</th>'
                            for release, n in spans.items())
    run_cells = "".join(_run_header(run, run.path in firsts) for run in runs)
    head = (
        '<thead><tr><th rowspan="2">Test</th><th class="num" rowspan="2">Pass</th>'
        '<th class="num" rowspan="2">Fail</th><th class="num" rowspan="2">Skip</th>'
        f'<th rowspan="2">Flaky</th>{release_cells}</tr>\n<tr>{run_cells}</tr></thead>'
    )
    body = "\n".join(_row(row, runs, firsts) for row in rows)
    return f'<table class="history">\n{head}\n<tbody>\n{body}\n</tbody>\n</table>'


def _run_header(run: RunSummary, first: bool) -> str:
    started = run.started.strftime("%m-%d<br>%H:%M") if run.started else escape(run.timestamp)
    title = f"{run.release} {run.timestamp}: {run.status}" + (f" ({run.error})" if run.error else "")
    target = run.links.get("log") or run.links.get("report")
    label = f'<a href="{escape(run.path)}/{escape(target)}">{started}</a>' if target else started
    cls = "run first" if first else "run"
    return f'<th class="{cls}" data-run="{escape(run.path)}" title="{escape(title)}">{label}</th>'


def _row(row: HistoryRow, runs: list[RunSummary], firsts: set[str]) -> str:
    label = escape(row.name or row.key)
    if row.stable_id:
        label = f"<code>{escape(row.stable_id)}</code> {label}"
    flaky = row.flaky_releases(runs)
    mark = (f'<span class="flaky" title="passed and failed in release {escape(", ".join(flaky))}">flaky</span>'
            if flaky else "")
    cells = [
        f'<th class="test" title="{escape(row.longname or row.key)}">{label}</th>',
        f'<td class="num">{row.count("PASS")}</td>',
        f'<td class="num">{row.count("FAIL")}</td>',
        f'<td class="num">{row.count("SKIP")}</td>',
        f"<td>{mark}</td>",
    ]
    cells += [_cell(row.results.get(run.path), run.path in firsts) for run in runs]
    return f'<tr data-test="{escape(row.key)}">' + "".join(cells) + "</tr>"


def _cell(result: dict | None, first: bool) -> str:
    edge = " first" if first else ""
    if result is None:
        return f'<td class="c none{edge}" title="not in this run">·</td>'
    status = result["status"]
    css = re.sub(r"\W", "_", status)
    letter = LETTERS.get(status, status[:1] or "?")
    title = result["message"] or status
    return f'<td class="c {escape(css)}{edge}" title="{escape(title)}">{escape(letter)}</td>'
