"""What the archive's static pages share: the base style, the HTML shell and an atomic write."""

from __future__ import annotations

import os
import tempfile
from html import escape
from pathlib import Path

BASE_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem;color:#1d2733;background:#fff}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:2rem 0 .5rem;border-bottom:2px solid #d6dde5}
p.meta{color:#5b6773;margin:0 0 1rem}table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e3e8ee;vertical-align:top}
th{background:#f3f6f9;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.PASS{background:#2e8540}.FAIL{background:#c62828}.SKIP{background:#8a6d00}.missing,.broken{background:#6b7785}
a{color:#0b5cad}
@media (prefers-color-scheme:dark){body{background:#15191e;color:#dde3ea}th{background:#222a33}
th,td{border-color:#2c3540}a{color:#7db4f0}h2{border-color:#2c3540}}
"""


def document(title: str, css: str, body: list[str]) -> str:
    """A self-contained page: no scripts, no external assets; ``body`` is already escaped HTML."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n"
        f"<style>{BASE_CSS}{css}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def write_page(root: Path, name: str, html: str) -> Path:
    """Write ``root/name`` atomically (a reader never sees half a page), readable by everyone."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=target.suffix, dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(html)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
