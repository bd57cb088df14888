"""The run archive: ``<root>/<release>/<UTC timestamp>/`` folders, what each run recorded, and their summaries.

Layout of one run folder::

    output.xml  log.html  report.html  xunit.xml       robot's outputs (merged after a rerun)
    libdoc.html  HostLibrary.html  testdoc.html       keyword and test docs of that run
    RequestsLibrary.html  KubeLibrary.html            the keywords of the libraries testers use beside ours
    run.json                                          how the run was started (for --rerun-failed)
    summary.json                                      counts and per-test statuses cached from output.xml
                                                      (rebuilt when output.xml changes)
    original-output.xml  rerun-N.xml                  only after --rerun-failed
    parallel.xml  serial.xml  pabot_results/           only after a --pabot run
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
RUN_DIR_PATTERN = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
SUMMARY_VERSION = 2  # "tests" was added to version 2 without a bump: a cache without it is re-read once
STABLE_ID = re.compile(r"^(HAMI-E2E|HOST)-\d+$", re.IGNORECASE)  # a test's ID tag, kept across renames
MESSAGE_LIMIT = 1000  # characters of a test's failure or skip message kept in summary.json
LINKS = (
    ("report", "report.html"),
    ("log", "log.html"),
    ("xunit", "xunit.xml"),
    ("libdoc", "libdoc.html"),
    ("HostLibrary", "HostLibrary.html"),
    ("Requests", "RequestsLibrary.html"),
    ("Kube", "KubeLibrary.html"),
    ("testdoc", "testdoc.html"),
)


def utc_timestamp(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime(TIMESTAMP_FORMAT)


def new_run_dir(root: Path, release: str, now: datetime | None = None) -> Path:
    """Create ``root/release/<UTC timestamp>/``; a second run in the same second gets ``-1``, ``-2`` ..."""
    base = root / release
    base.mkdir(parents=True, exist_ok=True)
    stamp = utc_timestamp(now)
    for suffix in ["", *(f"-{n}" for n in range(1, 1000))]:
        candidate = base / f"{stamp}{suffix}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"Too many runs in {base} at {stamp}")


def discard_run_dir(run_dir: Path) -> None:
    """Remove a run folder that holds no results (robot refused to start), and its release folder if empty."""
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        run_dir.parent.rmdir()
    except OSError:
        pass  # other runs of that release are still there


def run_dirs(root: Path) -> list[Path]:
    """Every archived run folder under ``root``, newest first (by timestamp, then release)."""
    if not root.is_dir():
        return []
    found = [run for release in root.iterdir() if release.is_dir()
             for run in release.iterdir() if run.is_dir() and RUN_DIR_PATTERN.match(run.name)]
    return sorted(found, key=lambda run: (_sort_key(run.name), run.parent.name), reverse=True)


def latest_run_dir(root: Path) -> Path | None:
    runs = run_dirs(root)
    return runs[0] if runs else None


def _sort_key(name: str) -> tuple[str, int]:
    stamp, _, counter = name.partition("-")
    return stamp, int(counter or 0)


def write_run_record(run_dir: Path, record: dict) -> None:
    (run_dir / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def read_run_record(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@dataclass
class RunSummary:
    """What the index shows about one run."""

    release: str
    timestamp: str
    path: str  # relative to the archive root, with forward slashes
    target: str = ""
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    elapsed_s: float = 0.0
    status: str = "missing"  # PASS, FAIL, SKIP, missing (no output.xml) or broken (unreadable output.xml)
    error: str = ""
    runner: str = ""
    reruns: int = 0
    metadata: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)
    # One dict per test: id (stable ID tag or ""), name, longname, status, message (see `_test_record`).
    tests: list = field(default_factory=list, repr=False)

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped

    @property
    def started(self) -> datetime | None:
        try:
            return datetime.strptime(self.timestamp.split("-")[0], TIMESTAMP_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            return None


def summarize(run_dir: Path, root: Path) -> RunSummary:
    """Counts, target, elapsed time and per-test statuses of one run, from its output.xml (cached in
    summary.json)."""
    record = read_run_record(run_dir)
    summary = RunSummary(
        release=run_dir.parent.name,
        timestamp=run_dir.name,
        path=run_dir.relative_to(root).as_posix(),
        runner=record.get("runner", ""),
        reruns=len(record.get("reruns", [])),
    )
    summary.links = {label: name for label, name in LINKS if (run_dir / name).is_file()}
    output = run_dir / "output.xml"
    if not output.is_file():
        summary.error = "no output.xml"
        return summary
    stamp = _file_stamp(output)
    cached = _read_cache(run_dir, stamp)
    counts, tests = cached if cached is not None else _read_output(output)
    if cached is None:
        _write_cache(run_dir, stamp, counts, tests)
    for name, value in counts.items():
        setattr(summary, name, value)
    summary.tests = tests
    wall = _wall_seconds(record)
    if wall is not None:  # merged outputs (pabot passes, reruns) lose the run's own start and end times
        summary.elapsed_s = wall
    return summary


def _wall_seconds(record: dict) -> float | None:
    try:
        started = datetime.fromisoformat(record["started"])
        finished = datetime.fromisoformat(record["finished"])
    except (KeyError, TypeError, ValueError):
        return None
    return max((finished - started).total_seconds(), 0.0)


def _read_output(output: Path) -> tuple[dict, list[dict]]:
    """The run's counts and its tests' records, from one parse of output.xml."""
    from robot.api import ExecutionResult

    try:
        result = ExecutionResult(str(output), include_keywords=False)
    except Exception as error:  # noqa: BLE001 - an interrupted run leaves a broken output.xml
        return {"status": "broken", "error": f"unreadable output.xml: {error}"}, []
    stats = result.statistics.total
    metadata = {str(name): str(value) for name, value in result.suite.metadata.items()}
    tests = [_test_record(test) for test in result.suite.all_tests]
    return {
        "target": _find_metadata(result.suite, "Target"),
        "passed": stats.passed,
        "failed": stats.failed,
        "skipped": stats.skipped,
        "elapsed_s": round(result.suite.elapsed_time.total_seconds(), 3),
        "status": result.suite.status,
        "metadata": metadata,
    }, tests


def _test_record(test) -> dict:
    """What the history page needs of one test: its stable ID tag (first one, upper case), names, outcome."""
    stable = next((str(tag).upper() for tag in test.tags if STABLE_ID.match(str(tag))), "")
    message = test.message if len(test.message) <= MESSAGE_LIMIT else test.message[:MESSAGE_LIMIT - 1] + "\u2026"
    return {"id": stable, "name": test.name, "longname": test.full_name, "status": test.status, "message": message}


def _find_metadata(suite, name: str) -> str:
    """``name`` from the top suite's metadata, else from the first child suite that has it (breadth first)."""
    queue = [suite]
    while queue:
        current = queue.pop(0)
        if name in current.metadata:  # robot metadata names are case-, space- and underscore-insensitive
            return str(current.metadata[name])
        queue.extend(current.suites)
    return ""


def _file_stamp(path: Path) -> list:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _read_cache(run_dir: Path, stamp: list) -> tuple[dict, list[dict]] | None:
    """(counts, tests) from summary.json, or None when it is missing, stale, or older than per-test data."""
    try:
        data = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != SUMMARY_VERSION or data.get("output_stamp") != stamp:
        return None
    counts, tests = data.get("counts"), data.get("tests")
    if not isinstance(counts, dict) or not isinstance(tests, list):
        return None
    return counts, tests


def _write_cache(run_dir: Path, stamp: list, counts: dict, tests: list[dict]) -> None:
    data = {"version": SUMMARY_VERSION, "output_stamp": stamp, "counts": counts, "tests": tests}
    try:
        (run_dir / SUMMARY_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError:
        pass  # a read-only archive still gets an index, just without the cache


def summaries(root: Path) -> list[RunSummary]:
    return [summarize(run, root) for run in run_dirs(root)]


def summary_dict(summary: RunSummary) -> dict:
    """The run's summary without its per-test records."""
    data = asdict(summary)
    del data["tests"]
    return data | {"total": summary.total}
