#!/usr/bin/env python3
"""Run the hami-e2e suites and archive the run: ``results/<release>/<UTC timestamp>/`` plus ``results/index.html``.

    .venv/bin/python tools/run_suites.py [wrapper options] [robot options] [paths]
    .venv/bin/python tools/run_suites.py --include smoke
    .venv/bin/python tools/run_suites.py --pabot 4 --variablefile variables/lab.yaml
    .venv/bin/python tools/run_suites.py --rerun-failed
    .venv/bin/python tools/run_suites.py --strict-known-bugs   # known-bug:* failures count as FAIL
    .venv/bin/python tools/run_suites.py --matrix variables/matrix_sandbox.yaml   # once per matrix cell

``--help`` lists the wrapper options. The exit code is robot's (the number of failed tests, 252 for bad
options or data); after ``--rerun-failed`` it is that of the merged result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import archive
import matrix
import runners
from index_page import write_index
from release import release_name
from robot_args import HELP, KNOWN_BUG_TAGS, REPO_ROOT, Invocation, UsageError, parse_command_line
from suite_docs import LIBRARIES_DIR, write_libdocs, write_testdoc


def main(argv: list[str] | None = None) -> int:
    try:
        inv = parse_command_line(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        print(f"[ ERROR ] {error}\n\nTry --help for usage.", file=sys.stderr)
        return runners.RC_DATA_ERROR
    if inv.help:
        print(HELP)
        return 0
    if inv.rerun_failed:
        return rerun(inv)
    if inv.matrix:
        try:
            return matrix.run_matrix(inv.matrix, sys.argv[1:] if argv is None else argv, inv.results_root,
                                     lambda cell_argv: run(parse_command_line(cell_argv)))
        except UsageError as error:
            print(f"[ ERROR ] {error}", file=sys.stderr)
            return runners.RC_DATA_ERROR
    return run(inv)


def run(inv: Invocation) -> int:
    release = release_name(inv.release, inv.variable_files, inv.variables)
    run_dir = archive.new_run_dir(inv.results_root, release)
    record = {
        "release": release,
        "timestamp": run_dir.name,
        "started": _now(),
        "runner": f"pabot x{inv.pabot}" if inv.pabot else "robot",
        "cwd": os.getcwd(),
        "robot_argv": inv.robot_argv,
        "pabot_args": inv.pabot_args,
        "serial_tags": inv.effective_serial_tags if inv.pabot else [],
        "suite_commit": _suite_commit(),
        "skip_on_failure": [] if inv.strict_known_bugs else [KNOWN_BUG_TAGS],
        "reruns": [],
    }
    archive.write_run_record(run_dir, record)
    print(f"[ run_suites ] Release {release}; archiving into {run_dir}", flush=True)
    extra = _common_args(record)
    if inv.pabot:
        rc = runners.run_pabot(run_dir, inv.pabot, inv.pabot_split, inv.effective_serial_tags, inv.pabot_args,
                               extra, inv.robot_argv)
    else:
        rc = runners.run_robot(run_dir, extra, inv.robot_argv)
    record.update(finished=_now(), rc=rc)
    archive.write_run_record(run_dir, record)
    if rc == runners.RC_DATA_ERROR and not (run_dir / "output.xml").is_file():
        archive.discard_run_dir(run_dir)
        print(f"[ run_suites ] Robot ran nothing (rc {rc}, see its error above): nothing archived.")
        return rc
    if inv.docs:
        for note in write_libdocs(run_dir):
            print(f"[ run_suites ] {note}")
        title = f"hami-e2e tests, release {release}, run {run_dir.name}"
        print(f"[ run_suites ] {write_testdoc(run_dir, inv.paths, inv.robot_options, title)}")
    return _finish(inv, run_dir, rc)


def rerun(inv: Invocation) -> int:
    """Rerun the failed tests of the last run (or ``--run-dir``) into the same folder and merge them."""
    run_dir = inv.run_dir or archive.latest_run_dir(inv.results_root)
    record = archive.read_run_record(run_dir) if run_dir else {}
    if not run_dir or not (run_dir / "output.xml").is_file() or not record:
        where = run_dir or inv.results_root
        print(f"[ ERROR ] No archived run with output.xml and run.json to rerun in {where}.", file=sys.stderr)
        return runners.RC_DATA_ERROR
    root = run_dir.parents[1]
    failed = archive.summarize(run_dir, root).failed
    if failed == 0:
        print(f"[ run_suites ] No failed tests in {run_dir}: nothing to rerun.")
        print(run_dir)
        return 0
    if inv.pabot:
        print("[ run_suites ] --pabot ignored: failed tests are rerun serially with robot.")
    original = run_dir / "original-output.xml"
    if not original.exists():
        shutil.copy2(run_dir / "output.xml", original)
    number = len(record.setdefault("reruns", [])) + 1
    rerun_name = f"rerun-{number}.xml"
    print(f"[ run_suites ] Rerunning {failed} failed test(s) of {run_dir} (rerun {number})", flush=True)
    started = _now()
    rc = runners.rerun_failed(run_dir, rerun_name, _common_args(record, inv.strict_known_bugs) + inv.robot_argv,
                              record["robot_argv"], record.get("cwd"))
    entry = {"started": started, "finished": _now(), "output": rerun_name, "robot_argv": inv.robot_argv, "rc": rc}
    if (run_dir / rerun_name).is_file():
        rc = runners.merge(run_dir, [run_dir / "output.xml", run_dir / rerun_name])
        entry["merged_rc"] = rc
    else:
        print(f"[ ERROR ] The rerun wrote no {rerun_name}; output.xml is left as it was.", file=sys.stderr)
    record["reruns"].append(entry)
    record["rc"] = rc
    archive.write_run_record(run_dir, record)
    return _finish(inv, run_dir, rc, root=root)


def _finish(inv: Invocation, run_dir: Path, rc: int, root: Path | None = None) -> int:
    index = write_index(root or inv.results_root)
    print(f"[ run_suites ] Index: {index}")
    print(f"[ run_suites ] Exit code {rc}. Run folder:")
    print(run_dir)
    return rc


def _common_args(record: dict, strict_known_bugs: bool = False) -> list[str]:
    """Options every robot pass gets: ``libraries/`` on the module search path (so suites can write
    ``Library    HamiLibrary``), the suite's git commit as metadata (the suites themselves
    record cluster, HAMi and driver versions) and the run's ``--skiponfailure`` patterns (a
    failing ``known-bug:<issue>`` test is a SKIP with its failure message), unless ``strict_known_bugs``."""
    args = ["--pythonpath", str(LIBRARIES_DIR),
            # One statistics row per test ID would bury the feature and hardware tags testers filter by.
            "--tagstatexclude", "HAMI-E2E-*", "--tagstatexclude", "HOST-*"]
    if record.get("suite_commit"):
        args += ["--metadata", f"Suite revision:{record['suite_commit']}"]
    if not strict_known_bugs:
        for pattern in record.get("skip_on_failure", []):  # runs archived before this option: none
            args += ["--skiponfailure", pattern]
    return args


def _suite_commit() -> str:
    """The suite's git commit, with ``-dirty`` when tracked files have local changes; empty outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True,
                              timeout=20, check=True).stdout.strip()
    try:
        sha = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{sha}-dirty" if dirty else sha


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


if __name__ == "__main__":
    sys.exit(main())
