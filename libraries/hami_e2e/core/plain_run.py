"""What a plain ``robot suites/`` gets that the run wrapper (``tools/run_suites.py``) passes to robot as options.

Robot Framework 7.5 reads no configuration file: no ``[tool.robot]`` in pyproject.toml, no ``robot.toml``
(robotframework issue 5337 is open), so the defaults of the card's command come from the library, which every
cluster suite imports. A run is *plain* when robot writes its outputs into the current directory (no
``--outputdir``), is no dry run, and ``HAMI_E2E_ARCHIVE`` is not ``off``. The wrapper, pabot's workers, the mutation
harness, the GPU twin and the tests all name an output folder: their runs stay exactly as robot makes them.

In a plain run:

* a failing test tagged ``known-bug:*`` is reported as SKIP with its failure message, in robot's own words (the
  wrapper's ``--skiponfailure known-bug:*``);
* once robot has written output.xml, log.html and report.html, ``tools/archive_plain_run.py`` (same Python) moves
  them into ``results/<release>/<UTC timestamp>/``, adds xunit.xml, the keyword docs and the test catalogue, and
  rebuilds results/index.html and history.html. The release is ``HAMI_CHART_VERSION`` as the run saw it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from robot.api import logger
from robot.libraries.BuiltIn import BuiltIn
from robot.output import LOGGER
from robot.output.loggerapi import LoggerApi

REPO = Path(__file__).resolve().parents[3]
ARCHIVE_TOOL = REPO / "tools" / "archive_plain_run.py"
KNOWN_BUG_TAGS = "known-bug:*"
#: ``HAMI_E2E_ARCHIVE=off`` (or 0, no, false) leaves a plain run's outputs where robot wrote them.
SWITCH = "HAMI_E2E_ARCHIVE"
#: Where the archive is (default: results/ of this checkout).
RESULTS_ROOT = "HAMI_E2E_RESULTS_ROOT"


class PlainRunListener:
    """Library listener (API v3): known bugs as SKIP in a plain run; registers the archiver when it is one."""

    ROBOT_LISTENER_API_VERSION = 3

    def __init__(self) -> None:
        self.active = is_plain_run()
        if self.active and RunArchiver.current is None:  # one archiver per run, however often the library is made
            release = str(BuiltIn().get_variable_value("${HAMI_CHART_VERSION}", "") or "")
            RunArchiver.current = RunArchiver(release)
            LOGGER.register_logger(RunArchiver.current)

    def end_test(self, data: Any, result: Any) -> None:
        if self.active and result.failed and result.tags.match(KNOWN_BUG_TAGS):
            result.message = (
                f"Failed test skipped using '{KNOWN_BUG_TAGS}' tag pattern.\n\nOriginal failure:\n{result.message}"
            )
            result.status = "SKIP"


def is_plain_run() -> bool:
    """Whether this robot run is a plain one (see the module documentation)."""
    builtin = BuiltIn()
    if not builtin.robot_running or builtin.dry_run_active:
        return False
    if os.environ.get(SWITCH, "").strip().lower() in ("0", "off", "no", "false"):
        return False
    if str(builtin.get_variable_value("${OUTPUT_FILE}", "NONE")).upper() == "NONE":
        return False
    output_dir = Path(str(builtin.get_variable_value("${OUTPUT_DIR}", ".")))
    return output_dir.resolve() == Path.cwd().resolve()


class RunArchiver(LoggerApi):
    """Registered with robot's logger: learns where robot wrote its outputs and archives them when robot closes
    (after log.html and report.html exist)."""

    #: The archiver of the run in progress (robot closes its logger, and forgets it, when the run ends).
    current: RunArchiver | None = None

    def __init__(self, release: str) -> None:
        self.release = release
        self.files: dict[str, Path] = {}
        self.argv = sys.argv[1:]
        self.cwd = os.getcwd()

    def output_file(self, path: Path) -> None:
        self.files["output"] = Path(path)

    def log_file(self, path: Path) -> None:
        self.files["log"] = Path(path)

    def report_file(self, path: Path) -> None:
        self.files["report"] = Path(path)

    def xunit_file(self, path: Path) -> None:
        self.files["xunit"] = Path(path)

    def close(self) -> None:
        RunArchiver.current = None
        if "output" not in self.files:
            return
        if not ARCHIVE_TOOL.is_file():
            logger.console(f"[ archive ] {ARCHIVE_TOOL} is missing: outputs left in {self.cwd}")
            return
        command = [sys.executable, str(ARCHIVE_TOOL), "--release", self.release, "--cwd", self.cwd]
        for kind, path in self.files.items():
            command += [f"--{kind}", str(path)]
        if os.environ.get(RESULTS_ROOT):
            command += ["--results-root", os.environ[RESULTS_ROOT]]
        command += ["--", *self.argv]
        sys.stdout.flush()
        done = subprocess.run(command, cwd=self.cwd, check=False)
        if done.returncode != 0:
            logger.console(f"[ archive ] archiving failed (rc {done.returncode}): outputs left in {self.cwd}")
