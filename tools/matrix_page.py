"""The compatibility matrix's pages: ``<results>/matrix/<name>/<stamp>/index.html`` (Kubernetes versions x
topologies, each cell's pass/fail/skip linked to its report, and the tests whose outcome differs between cells) and
the list of matrix runs the run index shows."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

import archive
from pages import document, write_page

MATRIX_JSON = "matrix.json"
LETTERS = {"PASS": "P", "FAIL": "F", "SKIP": "S", "NOT RUN": "N"}
CSS = """
.badge{display:inline-block;padding:.05rem .5rem;border-radius:.7rem;font-weight:600;font-size:.8rem;color:#fff}
table.grid td{min-width:11rem}table.tests{width:auto;font-size:.85rem}
table.tests td.c{text-align:center;font-weight:700;color:#fff;min-width:1.4rem}small{color:#5b6773}
td.err{color:#c62828}a{margin-right:.4rem}
"""


def write_matrix_page(folder: Path, results_root: Path, record: dict) -> Path:
    """Write ``folder/index.html`` for the matrix run ``record`` (as matrix.json holds it)."""
    up = "../" * len(folder.relative_to(results_root).parts)
    summaries = {cell["name"]: _summary(results_root, cell) for cell in record["cells"]}
    versions = list(dict.fromkeys(cell["kubernetes"] for cell in record["cells"]))
    labels = list(dict.fromkeys(cell["label"] for cell in record["cells"]))
    by_key = {(cell["kubernetes"], cell["label"]): cell for cell in record["cells"]}
    body = [
        f"<h1>Compatibility matrix {escape(record['name'])}</h1>",
        f'<p class="meta">{len(record["cells"])} cell(s) from <code>{escape(record["file"])}</code>, started '
        f"{escape(record['started'][:19].replace('T', ' '))} UTC"
        + (f", finished {escape(record['finished'][:19].replace('T', ' '))} UTC" if record.get("finished") else "")
        + (f"; robot options <code>{escape(' '.join(record['argv']))}</code>" if record.get("argv") else "")
        + ".</p>",
        f'<p><a href="report.html">Combined report</a> <a href="log.html">combined log</a> (every cell, rebot) · '
        f'<a href="{up}index.html">run index</a> · <a href="{MATRIX_JSON}">matrix.json</a></p>',
        "<table class=grid><thead><tr><th>Topology \\ Kubernetes</th>"
        + "".join(f"<th>{escape(version)}{_server_version(version, record, summaries)}</th>" for version in versions)
        + "</tr></thead><tbody>",
    ]
    for label in labels:
        first = next(cell for cell in record["cells"] if cell["label"] == label)
        files = " ".join(f"<code>{escape(f)}</code>" for f in [first["topology"], *first["variables"]])
        row = [f"<th>{escape(label)}<br><small>{files}{_gpus(label, record, summaries)}</small></th>"]
        for version in versions:
            cell = by_key.get((version, label))
            row.append(_cell(cell, summaries.get(cell["name"]) if cell else None, up))
        body.append("<tr>" + "".join(row) + "</tr>")
    body.append("</tbody></table>")
    body += _differences(record["cells"], summaries)
    return write_page(folder, "index.html", document(f"Compatibility matrix {record['name']}", CSS, body))


def _summary(results_root: Path, cell: dict) -> archive.RunSummary | None:
    run = results_root / cell["run_path"] if cell.get("run_path") else None
    return archive.summarize(run, results_root) if run and run.is_dir() else None


def _server_version(version: str, record: dict, summaries: dict) -> str:
    """The server version a cell of this minor reported (report metadata ``Kubernetes``)."""
    for cell in record["cells"]:
        summary = summaries.get(cell["name"])
        if cell["kubernetes"] == version and summary and summary.metadata.get("Kubernetes"):
            return f"<br><small>{escape(summary.metadata['Kubernetes'])}</small>"
    return ""


def _gpus(label: str, record: dict, summaries: dict) -> str:
    """GPU models, driver and CUDA as a cell of this topology recorded them (report metadata)."""
    for cell in record["cells"]:
        summary = summaries.get(cell["name"])
        if cell["label"] == label and summary and summary.metadata.get("GPU models"):
            meta = summary.metadata
            return "".join(f"<br>{escape(name)}: {escape(meta[name])}" for name in ("GPU models", "Driver", "CUDA")
                           if meta.get(name))
    return ""


def _cell(cell: dict | None, summary: archive.RunSummary | None, up: str) -> str:
    if cell is None:
        return "<td>–</td>"
    if cell.get("error"):
        return f'<td class="err">{escape(cell["error"])}<br><small>sandbox up {cell["up_s"]:.0f} s</small></td>'
    if summary is None:
        return f"<td>no run archived (robot exit {cell.get('rc')})</td>"
    links = " ".join(f'<a href="{up}{escape(summary.path)}/{escape(name)}">{escape(label)}</a>'
                     for label, name in summary.links.items() if label in ("report", "log"))
    return (f'<td><span class="badge {escape(summary.status)}">{escape(summary.status)}</span> '
            f"{summary.passed} pass, {summary.failed} fail, {summary.skipped} skip<br>"
            f"<small>suite {_minutes(cell['suite_s'])}, sandbox up {_minutes(cell['up_s'])}</small><br>{links}</td>")


def _differences(cells: list[dict], summaries: dict) -> list[str]:
    """The tests whose outcome is not the same in every cell that ran (the version- or GPU-specific ones)."""
    ran = [cell for cell in cells if summaries.get(cell["name"])]
    outcomes: dict[str, dict[str, dict]] = {}
    names: dict[str, str] = {}
    for cell in ran:
        for test in summaries[cell["name"]].tests:
            key = test["id"] or test["longname"]
            outcomes.setdefault(key, {})[cell["name"]] = test
            names.setdefault(key, test["name"])
    differing = [key for key, by_cell in outcomes.items()
                 if len({test["status"] for test in by_cell.values()}) > 1 or len(by_cell) != len(ran)]
    if not ran:
        return []
    if not differing:
        return [f"<h2>Tests by cell</h2><p>Every one of the {len(outcomes)} tests has the same outcome in every "
                "cell.</p>"]
    header = "".join(f"<th>{escape(cell['name'])}</th>" for cell in ran)
    rows = []
    for key in sorted(differing):
        row = [f"<th><code>{escape(key)}</code> {escape(names[key])}</th>"]
        for cell in ran:
            test = outcomes[key].get(cell["name"])
            if test is None:
                row.append('<td class="c">–</td>')
                continue
            status = test["status"]
            row.append(f'<td class="c {escape(status.replace(" ", "_"))}" title="{escape(test["message"])}">'
                       f"{LETTERS.get(status, '?')}</td>")
        rows.append("<tr>" + "".join(row) + "</tr>")
    return [f"<h2>Tests whose outcome differs between cells ({len(differing)} of {len(outcomes)})</h2>",
            "<p>Hover a cell for the test's message.</p>",
            f'<table class="tests"><thead><tr><th>Test</th>{header}</tr></thead><tbody>{"".join(rows)}'
            "</tbody></table>"]


def _minutes(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds or 0)), 60)
    return f"{minutes}:{secs:02d}"


def matrix_runs(results_root: Path) -> list[tuple[Path, dict]]:
    """Every matrix run under ``<results>/matrix/``, newest first: (its folder, its matrix.json)."""
    found = []
    for path in (results_root / "matrix").glob(f"*/*/{MATRIX_JSON}"):
        try:
            found.append((path.parent, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda item: item[1].get("started", ""), reverse=True)


def index_section(results_root: Path) -> str:
    """The run index's list of matrix runs (empty when there is none)."""
    runs = matrix_runs(results_root)
    if not runs:
        return ""
    items = []
    for folder, record in runs:
        cells = record.get("cells", [])
        failing = sum(1 for cell in cells if cell.get("error") or cell.get("rc"))
        items.append(f'<li><a href="{escape(folder.relative_to(results_root).as_posix())}/index.html">'
                     f"{escape(record.get('name', '?'))}</a> started {escape(record.get('started', '')[:19])} UTC: "
                     f"{len(cells)} cell(s), {failing} not passing</li>")
    return "<h2>Compatibility matrices</h2>\n<ul>" + "".join(items) + "</ul>"
