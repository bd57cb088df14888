"""``results/index.html``: one static, self-contained page listing every archived run, grouped by release."""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from pathlib import Path

import history_page
import matrix_page
import trend_chart
from archive import RunSummary, summaries
from pages import document, write_page

CSS = """
.badge{display:inline-block;padding:.05rem .5rem;border-radius:.7rem;font-weight:600;font-size:.8rem;color:#fff}
.bar{display:flex;height:.5rem;width:8rem;background:#e3e8ee;border-radius:.25rem;overflow:hidden;margin-top:.2rem}
.bar span{display:block}.bar .p{background:#2e8540}.bar .f{background:#c62828}.bar .s{background:#d4a017}
td.links a{margin-right:.5rem}details summary{cursor:pointer;color:#5b6773}
dl{margin:.3rem 0 0;display:grid;grid-template-columns:max-content auto;gap:0 .8rem}dt{color:#5b6773}dd{margin:0}
"""


def write_index(root: Path) -> Path:
    """Rebuild ``root/index.html`` and ``root/history.html`` from every run folder under ``root``; each is
    written atomically."""
    runs = summaries(root)
    history_page.write_history(root, runs)
    trend = trend_chart.trend_section(root, runs)
    return write_page(root, "index.html", render(runs, matrices=matrix_page.index_section(root), trend=trend))


def render(runs: list[RunSummary], now: datetime | None = None, matrices: str = "", trend: str = "") -> str:
    """The index page; ``matrices`` is the list of compatibility matrix runs (``matrix_page.index_section``),
    ``trend`` the trend picture (``trend_chart.trend_section``)."""
    now = now or datetime.now(timezone.utc)
    groups: dict[str, list[RunSummary]] = {}
    for run in runs:  # already newest first, so releases come out ordered by their newest run
        groups.setdefault(run.release, []).append(run)
    body = [
        "<h1>hami-e2e run archive</h1>",
        f'<p class="meta">{len(runs)} run(s) in {len(groups)} release(s), newest first. '
        f"Generated {now.strftime('%Y-%m-%d %H:%M:%S')} UTC.</p>",
        f'<p><a href="{history_page.PAGE}">Per-test history</a>: every test across the last '
        f"{history_page.MAX_RUNS} runs, with flaky tests marked.</p>",
    ]
    if trend:
        body.append(trend)
    if groups:
        body.append("<nav>Releases: " + " · ".join(
            f'<a href="#release-{escape(name)}">{escape(name)}</a>' for name in groups) + "</nav>")
    else:
        body.append("<p>No runs archived yet. Start one with <code>.venv/bin/python tools/run_suites.py</code>.</p>")
    if matrices:
        body.append(matrices)
    for release, release_runs in groups.items():
        body.append(_release_section(release, release_runs))
    return document("hami-e2e run archive", CSS + trend_chart.CSS, body)


def _release_section(release: str, runs: list[RunSummary]) -> str:
    failing = sum(1 for run in runs if run.status != "PASS")
    rows = "\n".join(_row(run) for run in runs)
    return (
        f'<section id="release-{escape(release)}">\n'
        f"<h2>Release {escape(release)} <small>({len(runs)} run(s), {failing} not passing)</small></h2>\n"
        '<table>\n<thead><tr><th>Started (UTC)</th><th>Target</th><th>Status</th>'
        '<th class="num">Pass</th><th class="num">Fail</th><th class="num">Skip</th><th class="num">Total</th>'
        "<th>Elapsed</th><th>Runner</th><th>Files</th></tr></thead>\n"
        f"<tbody>\n{rows}\n</tbody>\n</table>\n</section>"
    )


def _row(run: RunSummary) -> str:
    started = run.started.strftime("%Y-%m-%d %H:%M:%S") if run.started else run.timestamp
    status = f'<span class="badge {escape(run.status)}">{escape(run.status)}</span>'
    if run.error:
        status += f"<br><small>{escape(run.error)}</small>"
    elif run.total:
        status += _bar(run)
    links = " ".join(f'<a href="{escape(run.path)}/{escape(name)}">{escape(label)}</a>'
                     for label, name in run.links.items()) or "–"
    runner = escape(run.runner or "–") + (f"<br><small>{run.reruns} rerun(s) merged</small>" if run.reruns else "")
    cells = [
        f'<td title="{escape(run.path)}">{escape(started)}<br><small>{escape(run.timestamp)}</small>'
        f"{_metadata(run)}</td>",
        f"<td>{escape(run.target) or '–'}</td>",
        f"<td>{status}</td>",
        f'<td class="num">{run.passed}</td>',
        f'<td class="num">{run.failed}</td>',
        f'<td class="num">{run.skipped}</td>',
        f'<td class="num">{run.total}</td>',
        f"<td>{_elapsed(run.elapsed_s)}</td>",
        f"<td>{runner}</td>",
        f'<td class="links">{links}</td>',
    ]
    return f'<tr id="run-{escape(run.release)}-{escape(run.timestamp)}">' + "".join(cells) + "</tr>"


def _bar(run: RunSummary) -> str:
    parts = [("p", run.passed), ("f", run.failed), ("s", run.skipped)]
    spans = "".join(f'<span class="{cls}" style="width:{100 * n / run.total:.1f}%"></span>' for cls, n in parts if n)
    return f'<div class="bar" title="{run.passed} passed, {run.failed} failed, {run.skipped} skipped">{spans}</div>'


def _metadata(run: RunSummary) -> str:
    if not run.metadata:
        return ""
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in run.metadata.items())
    return f"<details><summary>metadata</summary><dl>{items}</dl></details>"


def _elapsed(seconds: float) -> str:
    if not seconds:
        return "–"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
