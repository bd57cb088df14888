#!/usr/bin/env python3
"""Archive the outputs of a plain ``robot suites/`` run, as the run wrapper would have written them.

The library starts this when robot closes (``hami_e2e/core/plain_run.py``); by hand:

    .venv/bin/python tools/archive_plain_run.py --output output.xml --log log.html --report report.html \\
        [--release 2.10.0] [--results-root results] -- suites/

It makes ``<results root>/<release>/<UTC timestamp>/``, moves output.xml there, writes report.html, log.html and
xunit.xml from it with rebot (the wrapper's statistics options), removes robot's own log.html and report.html from
where they were, adds the keyword docs, the test catalogue and run.json (robot's arguments: ``run_suites.py
--rerun-failed`` works on the folder), and rebuilds index.html and history.html. Exit code 0 when archived.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from datetime import timezone
from pathlib import Path

import archive
from index_page import write_index
from release import UNKNOWN, safe_folder_name
from robot_args import DEFAULT_RESULTS_ROOT, KNOWN_BUG_TAGS, UsageError, parse_robot_options
from run_suites import _suite_commit
from suite_docs import write_libdocs, write_testdoc

#: What rebot gets besides the outputs: the wrapper's tag statistics (no row per test ID).
REBOT_OPTIONS = ("--tagstatexclude", "HAMI-E2E-*", "--tagstatexclude", "HOST-*")


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    output = Path(args.output).resolve()
    if not output.is_file():
        print(f"[ archive ] {output} does not exist: nothing to archive.", file=sys.stderr)
        return 2
    release = safe_folder_name(args.release) if args.release else UNKNOWN
    root = Path(args.results_root).resolve()
    run_dir = archive.new_run_dir(root, release)
    print(f"[ archive ] Archiving this run into {run_dir}", flush=True)
    shutil.move(str(output), run_dir / "output.xml")
    rc = _rebot(run_dir)
    for kind in ("log", "report", "xunit"):
        path = getattr(args, kind)
        if path and Path(path).resolve().parent != run_dir:
            Path(path).unlink(missing_ok=True)  # robot's copy; the archive has the one rebot wrote
    archive.write_run_record(run_dir, _record(run_dir, release, args, rc))
    try:
        options, paths = parse_robot_options(args.robot_argv)
    except UsageError:
        options, paths = {}, []
    for note in write_libdocs(run_dir):
        print(f"[ archive ] {note}")
    if paths:
        title = f"HAMi E2E tests, release {release}, run {run_dir.name}"
        print(f"[ archive ] {write_testdoc(run_dir, [str(Path(args.cwd, p)) for p in paths], options, title)}")
    print(f"[ archive ] Index: {write_index(root)}")
    print(f"[ archive ] Report: {run_dir / 'report.html'}", flush=True)
    return 0


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="robot's output.xml")
    parser.add_argument("--log", help="robot's log.html (removed once the archive has its own)")
    parser.add_argument("--report", help="robot's report.html (removed likewise)")
    parser.add_argument("--xunit", help="robot's xunit.xml, when it wrote one (removed likewise)")
    parser.add_argument("--release", default="", help="the release folder (HAMI_CHART_VERSION of the run)")
    parser.add_argument("--results-root", default=str(DEFAULT_RESULTS_ROOT), help="the archive root")
    parser.add_argument("--cwd", default=".", help="where robot ran (its relative paths start there)")
    parser.add_argument("robot_argv", nargs="*", help="robot's own arguments, after --")
    return parser.parse_args(argv)


def _rebot(run_dir: Path) -> int:
    """report.html, log.html and xunit.xml from the archived output.xml; rebot's exit code is the failed count."""
    command = [
        sys.executable,
        "-m",
        "robot.rebot",
        "--outputdir",
        str(run_dir),
        "--output",
        "NONE",
        "--log",
        "log.html",
        "--report",
        "report.html",
        "--xunit",
        "xunit.xml",
        *REBOT_OPTIONS,
        "--console",
        "none",
        str(run_dir / "output.xml"),
    ]
    return subprocess.run(command, check=False).returncode


def _record(run_dir: Path, release: str, args: argparse.Namespace, rc: int) -> dict:
    """run.json as the wrapper writes it, with the run's own start and end from output.xml."""
    from robot.api import ExecutionResult

    suite = ExecutionResult(str(run_dir / "output.xml"), include_keywords=False).suite
    started, finished = suite.start_time, suite.end_time
    return {
        "release": release,
        "timestamp": run_dir.name,
        "started": started.astimezone(timezone.utc).isoformat(timespec="milliseconds") if started else None,
        "finished": finished.astimezone(timezone.utc).isoformat(timespec="milliseconds") if finished else None,
        "runner": "robot (plain run, archived at its end)",
        "cwd": str(Path(args.cwd).resolve()),
        "robot_argv": list(args.robot_argv),
        "pabot_args": [],
        "serial_tags": [],
        "suite_commit": _suite_commit(),
        "skip_on_failure": [KNOWN_BUG_TAGS],
        "reruns": [],
        "rc": rc,
    }


if __name__ == "__main__":
    sys.exit(main())
